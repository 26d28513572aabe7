/**
 * The live task list in the admin.
 *
 * Follows the feed (staff see every task) through taskclient.js's FeedClient, the one socket
 * client of the app, and, without reloading:
 *   - changes the cells of a row as its task moves (cells marked `data-field`; the state cell
 *     carries the row's `data-task-id` and `data-version`);
 *   - adds a task it has no row for at the top, when the list is the default one (no filter,
 *     search, sort or page), with the row's data from the admin's `live/` URL.
 * The feed has no replay, so after each (re)connect the script asks `live/` for the rows it shows
 * and for tasks newer than its newest. Reconnecting (backoff, jitter, pings) and the final close
 * codes 4401/4403 are FeedClient's.
 *
 * The page's JSON config (taskstore/admin.py) names the feed's path, from
 * TASKSTORE_WEBSOCKET_PREFIX. Everything from a task is shown with textContent.
 */

// Beside this file in the app's static files, so the import holds under any STATIC_URL.
import {FeedClient} from "./taskclient.js";

const config = JSON.parse(document.getElementById("taskstore-live-config").textContent);
const table = document.querySelector("table[data-taskstore-live]");
const body = table.tBodies[0];
const status = document.getElementById("taskstore-live-status");

/** @type {Map<string, HTMLTableRowElement>} task id → its row */
const rows = new Map();

for (const marker of body.querySelectorAll("[data-task-id]")) {
  const row = marker.closest("tr");
  row.dataset.taskId = marker.dataset.taskId;
  row.dataset.version = marker.dataset.version;
  rows.set(marker.dataset.taskId, row);
}
for (const time of table.querySelectorAll("time[datetime]")) setTime(time, time.dateTime);

/** @param {HTMLTimeElement} element @param {?string} iso */
function setTime(element, iso) {
  if (!iso) {
    element.removeAttribute("datetime");
    element.textContent = "-";
    return;
  }
  element.dateTime = iso;
  element.textContent = new Date(iso).toLocaleString();
}

function progressText(progress) {
  return progress && "current" in progress && "total" in progress ? `${progress.current}/${progress.total}` : "";
}

/** Write one marked element from a task document. */
function fill(element, doc) {
  switch (element.dataset.field) {
    case "state":
      element.textContent = doc.state;
      element.dataset.state = doc.state;
      element.dataset.version = String(doc.version);
      break;
    case "version":
      element.textContent = String(doc.version);
      break;
    case "progress":
      element.textContent = progressText(doc.progress);
      break;
    case "worker":
      element.textContent = doc.worker || "-";
      break;
    case "date_created":
    case "date_done":
      setTime(element, doc[element.dataset.field]);
      break;
  }
}

function flash(row) {
  row.classList.remove("taskstore-changed");
  // Reading a layout property restarts the animation for a row that changes again.
  void row.offsetWidth;
  row.classList.add("taskstore-changed");
}

/** Show a newer version of a row's task; older and repeated versions change nothing. */
function update(row, doc) {
  if (doc.version <= Number(row.dataset.version)) return;
  row.dataset.version = String(doc.version);
  for (const element of row.querySelectorAll("[data-field]")) fill(element, doc);
  flash(row);
}

function element(tag, properties = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, properties);
  node.append(...children);
  return node;
}

function marked(tag, field, doc) {
  const node = element(tag);
  node.dataset.field = field;
  fill(node, doc);
  return node;
}

/** Cells by list_display column (the names in taskstore/admin.py). */
const CELLS = {
  action_checkbox: (task) => {
    const box = element("input", {type: "checkbox", name: "_selected_action", value: task.task_id, className: "action-select"});
    box.setAttribute("aria-label", `Select this object for an action - ${task.task_id}`);
    return element("td", {className: "action-checkbox"}, [box]);
  },
  task_id: (task) => element("th", {className: "field-task_id"}, [element("a", {href: task.change_url, textContent: task.task_id})]),
  task_name: (task) => element("td", {className: "field-task_name", textContent: task.task_name || "-"}),
  state_cell: (task) => {
    const span = marked("span", "state", task);
    span.className = "taskstore-state";
    span.dataset.taskId = task.task_id;
    return element("td", {className: "field-state_cell"}, [span]);
  },
  version_cell: (task) => element("td", {className: "field-version_cell"}, [marked("span", "version", task)]),
  progress_cell: (task) => element("td", {className: "field-progress_cell"}, [marked("span", "progress", task)]),
  owner: (task) => element("td", {className: "field-owner", textContent: task.owner || "-"}),
  worker_cell: (task) => element("td", {className: "field-worker_cell"}, [marked("span", "worker", task)]),
  created_cell: (task) => element("td", {className: "field-created_cell"}, [marked("time", "date_created", task)]),
  done_cell: (task) => element("td", {className: "field-done_cell"}, [marked("time", "date_done", task)]),
};

/** Show a task from `live/`: update its row, or add one at the top. */
function show(task) {
  const row = rows.get(task.task_id);
  if (row) {
    update(row, task);
    return;
  }
  if (!config.insert) return;
  const added = element(
    "tr",
    {},
    config.columns.map((column) => (CELLS[column] || (() => element("td")))(task)),
  );
  added.dataset.taskId = task.task_id;
  added.dataset.version = String(task.version);
  rows.set(task.task_id, added);
  body.prepend(added);
  flash(added);
}

/** Ask `live/` for tasks by id and/or newer than a date. */
async function fetchTasks({ids = [], newerThan = null}) {
  const url = new URL(config.live_url, location.href);
  for (const id of ids) url.searchParams.append("id", id);
  if (newerThan) url.searchParams.set("newer_than", newerThan);
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${url.pathname} answered ${response.status}`);
  return (await response.json()).tasks;
}

// Documents for tasks that have no row yet, waiting for their row to be fetched.
const waiting = new Map();
let fetching = false;
let fetchTimer = null;

/** A document from the feed. */
function receive(doc) {
  const row = rows.get(doc.task_id);
  if (row) {
    update(row, doc);
    return;
  }
  if (!config.insert) return;
  const held = waiting.get(doc.task_id);
  if (!held || doc.version > held.version) waiting.set(doc.task_id, doc);
  // Gather the new tasks of a burst into one request.
  fetchTimer ??= setTimeout(fetchWaiting, 100);
}

async function fetchWaiting() {
  fetchTimer = null;
  if (fetching) {
    fetchTimer = setTimeout(fetchWaiting, 100);
    return;
  }
  const ids = [...waiting.keys()].filter((id) => !rows.has(id)).slice(0, 100);
  fetching = true;
  try {
    if (ids.length) for (const task of (await fetchTasks({ids})).reverse()) show(task);
  } catch (error) {
    console.warn("admin-live: could not fetch new rows", error);
  } finally {
    fetching = false;
  }
  for (const id of ids) {
    const doc = waiting.get(id);
    waiting.delete(id);
    // A document that came while the row was on its way may be newer than the row.
    const row = rows.get(id);
    if (row && doc) update(row, doc);
  }
  if (waiting.size) fetchTimer ??= setTimeout(fetchWaiting, 100);
}

/** After a (re)connect: what changed while the feed was not listening. */
async function catchUp() {
  const times = [...body.querySelectorAll("time[data-field=date_created][datetime]")].map((t) => t.dateTime);
  const newest = times.sort().at(-1) ?? config.rendered_at;
  try {
    const tasks = await fetchTasks({ids: [...rows.keys()].slice(0, 100), newerThan: config.insert ? newest : null});
    for (const task of tasks.reverse()) show(task);
  } catch (error) {
    console.warn("admin-live: could not catch up", error);
  }
}

const LABELS = {
  connecting: "Connecting to the live feed…",
  open: "Live: changes appear as they happen",
  reconnecting: "Live feed lost: reconnecting…",
  closed: "Not live: reload the page to try again",
};

function setStatus(state) {
  status.dataset.state = state;
  status.querySelector(".label").textContent = LABELS[state] ?? state;
}

const feed = new FeedClient({url: config.feed_url, onUpdate: receive});
setStatus(feed.state);
feed.addEventListener("statechange", (event) => {
  setStatus(event.detail.state);
  // What changed while the feed was not listening (or before it first opened) is not replayed.
  if (event.detail.state === "open") catchUp();
});
