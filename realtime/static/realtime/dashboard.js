/**
 * The staff dashboard: counts by state, tasks finished per minute over the last hour (an SVG
 * chart drawn here), the latest failures (each with Re-run), workers, queues (with Purge) and
 * task statistics with a runtime chart (taskstore's operations.js). The first data comes with
 * the page; then every transition on /ws/feed/ moves the numbers, and worker.update and
 * queue.update frames redraw workers and queues. The feed has no replay, so after each
 * (re)connect the page fetches the data again. Statistics are fetched again when tasks finish,
 * at most every STATS_EVERY ms.
 */
// The taskstore app's client: every app's static files share STATIC_URL, so a relative import finds it.
import {FeedClient, TERMINAL_STATES} from "../taskstore/taskclient.js";
import {OperationsModel, control, fetchJson, renderQueues, renderRuntimeChart, renderStatistics, renderWorkers} from "../taskstore/operations.js";
import {showTransport} from "./transport.js";

const root = document.getElementById("dashboard");
const STATE_ORDER = ["PENDING", "RECEIVED", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"];
const MINUTE = 60_000;
const WINDOW_MINUTES = 60;
const LATEST_FAILURES = 10;
const SVG = "http://www.w3.org/2000/svg";
const STATS_EVERY = 5000;

/**
 * @typedef {object} Model
 * @property {number} taken                       when the server took the data (ms)
 * @property {number} offset                      server clock minus this browser's, in ms
 * @property {Map<string, number>} counts          state → tasks
 * @property {Map<number, number>} perMinute       minute start (ms) → tasks finished
 * @property {Array<object>} failures              newest first
 * @property {Map<string, {state: string, version: number}>} tasks  tasks not yet ended
 */

/** @returns {Model} */
function load(data) {
  return {
    taken: Date.parse(data.now),
    offset: Date.parse(data.now) - Date.now(),
    counts: new Map(Object.entries(data.counts)),
    perMinute: new Map(Object.entries(data.finished_per_minute).map(([minute, n]) => [Date.parse(minute), n])),
    failures: data.failures,
    tasks: new Map(Object.entries(data.active).map(([id, [state, version]]) => [id, {state, version}])),
    operations: new OperationsModel({workers: data.workers, queues: data.queues}),
    statistics: data.statistics,
  };
}

let model = load(JSON.parse(document.getElementById("dashboard-data").textContent));

/** Django admin's `quote()` for a primary key in a URL. */
function adminQuote(id) {
  return id.replace(/[":/_#?;@&=+$,"[\]<>%\n\\]/g, (c) => `_${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

/** @param {import("../taskstore/taskclient.js").TaskDocument} doc */
function apply(doc) {
  replaying?.push({doc});
  const known = model.tasks.get(doc.task_id);
  if (known && doc.version <= known.version) return;
  if (!known && (doc.version > 1 || Date.parse(doc.date_created) <= model.taken)) {
    // The data already counts this task (it had ended, or was one of too many running): which
    // count to move from is unknown, so take the data afresh.
    resyncSoon();
    return;
  }
  if (known?.state !== doc.state) {
    if (known) model.counts.set(known.state, (model.counts.get(known.state) || 1) - 1);
    model.counts.set(doc.state, (model.counts.get(doc.state) || 0) + 1);
  }
  if (TERMINAL_STATES.includes(doc.state)) {
    statisticsSoon();
    model.tasks.delete(doc.task_id);
    if (doc.date_done) {
      const minute = Math.floor(Date.parse(doc.date_done) / MINUTE) * MINUTE;
      model.perMinute.set(minute, (model.perMinute.get(minute) || 0) + 1);
    }
    if (doc.state === "FAILURE") {
      model.failures.unshift({
        task_id: doc.task_id,
        task_name: doc.task_name,
        error: doc.error,
        date_done: doc.date_done,
        admin_url: `/admin/taskstore/taskrecord/${adminQuote(doc.task_id)}/change/`,
      });
      model.failures.length = Math.min(model.failures.length, LATEST_FAILURES);
    }
  } else {
    model.tasks.set(doc.task_id, {state: doc.state, version: doc.version});
  }
  render();
}

let resyncTimer = null;
function resyncSoon() {
  resyncTimer ??= setTimeout(resync, 1000);
}

/** What the feed delivered while a resync's request was out: the data may predate it. */
let replaying = null;

async function resync() {
  clearTimeout(resyncTimer);
  resyncTimer = null;
  const arrived = (replaying = []);
  try {
    const response = await fetch(root.dataset.dataUrl, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const data = await response.json();
    replaying = null;
    model = load(data);
    // Apply again what came meanwhile, except ends the data already counts (a task that ended
    // before it was taken); the rest is newer than the data, or caught by the version check.
    for (const {doc, frame} of arrived) {
      if (frame) model.operations.apply(frame);
      else if (!(TERMINAL_STATES.includes(doc.state) && Date.parse(doc.date_done) <= model.taken)) apply(doc);
    }
    render();
    if (windowSelect.value !== "1h") refreshStatistics();
  } catch (error) {
    console.warn("dashboard: could not refresh", error);
  } finally {
    if (replaying === arrived) replaying = null;
  }
}

function renderCounts() {
  const list = document.getElementById("counts");
  const rank = (state) => (STATE_ORDER.includes(state) ? STATE_ORDER.indexOf(state) : STATE_ORDER.length);
  // The main states always, others while they have tasks.
  const shown = new Set(["PENDING", "STARTED", "SUCCESS", "FAILURE"]);
  for (const [state, n] of model.counts) if (n > 0) shown.add(state);
  const states = [...shown].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  list.replaceChildren(
    ...states.map((state) => {
      const card = document.createElement("div");
      card.className = "card";
      card.dataset.state = state;
      const term = document.createElement("dt");
      term.textContent = state;
      const count = document.createElement("dd");
      count.dataset.count = "";
      count.textContent = String(model.counts.get(state) || 0);
      card.append(term, count);
      return card;
    }),
  );
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function renderChart() {
  const figure = document.getElementById("chart");
  const now = Date.now() + model.offset;
  const last = Math.floor(now / MINUTE) * MINUTE;
  const first = last - (WINDOW_MINUTES - 1) * MINUTE;
  for (const minute of model.perMinute.keys()) if (minute < first) model.perMinute.delete(minute);
  const bars = Array.from({length: WINDOW_MINUTES}, (_, i) => {
    const minute = first + i * MINUTE;
    return {minute, n: model.perMinute.get(minute) || 0};
  });
  const total = bars.reduce((sum, bar) => sum + bar.n, 0);
  const peak = Math.max(1, ...bars.map((bar) => bar.n));

  const width = 640, height = 180, left = 32, bottom = 22, top = 8;
  const plot = height - bottom - top;
  const step = (width - left) / WINDOW_MINUTES;
  const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true", focusable: "false"});
  chart.append(
    svg("line", {class: "axis", x1: left, y1: top + plot, x2: width, y2: top + plot}),
    svg("text", {x: left - 6, y: top + 10, "text-anchor": "end"}, String(peak)),
    svg("text", {x: left - 6, y: top + plot, "text-anchor": "end"}, "0"),
    svg("text", {x: left, y: height - 6}, "60 min ago"),
    svg("text", {x: left + (width - left) / 2, y: height - 6, "text-anchor": "middle"}, "30 min ago"),
    svg("text", {x: width, y: height - 6, "text-anchor": "end"}, "now"),
  );
  bars.forEach(({minute, n}, i) => {
    if (!n) return;
    const h = Math.max(2, (n / peak) * plot);
    const bar = svg("rect", {class: "bar", x: left + i * step + 1, y: top + plot - h, width: Math.max(1, step - 2), height: h, rx: 2});
    const time = new Date(minute).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    bar.append(svg("title", {}, `${time}: ${n} finished`));
    chart.append(bar);
  });
  figure.replaceChildren(chart);
  figure.dataset.total = String(total);
  figure.setAttribute(
    "aria-label",
    total ? `${total} tasks finished in the last hour, at most ${peak} in one minute.` : "No tasks finished in the last hour.",
  );
}

function renderFailures() {
  const table = document.getElementById("failures");
  document.getElementById("failures-empty").hidden = model.failures.length > 0;
  table.hidden = model.failures.length === 0;
  table.tBodies[0].replaceChildren(
    ...model.failures.map((failure) => {
      const row = document.createElement("tr");
      row.dataset.taskId = failure.task_id;
      const when = document.createElement("td");
      if (failure.date_done) {
        const time = document.createElement("time");
        time.dateTime = failure.date_done;
        time.textContent = new Date(failure.date_done).toLocaleString();
        when.append(time);
      }
      const task = document.createElement("td");
      const link = document.createElement("a");
      link.href = failure.admin_url;
      link.textContent = failure.task_name || failure.task_id;
      link.title = failure.task_id;
      task.append(link);
      const error = document.createElement("td");
      error.className = "error";
      error.textContent = failure.error ? `${failure.error.type}: ${failure.error.message}` : "";
      const rerun = document.createElement("button");
      rerun.type = "button";
      rerun.className = "ops-rerun";
      rerun.textContent = "Re-run";
      rerun.addEventListener("click", () =>
        act({action: "rerun", task_id: failure.task_id}, `Send ${failure.task_name || failure.task_id} again with the same arguments?`),
      );
      const controls = document.createElement("td");
      controls.append(rerun);
      row.append(when, task, error, controls);
      return row;
    }),
  );
}

const message = document.getElementById("ops-message");

/** Take a control action after the user confirms; say what went wrong, if anything. */
async function act(body, question) {
  try {
    await control(root.dataset.actionsUrl, body, question);
    message.hidden = true;
  } catch (error) {
    message.hidden = false;
    message.textContent = `${body.action} failed: ${error.message}`;
  }
}

function renderOperations() {
  const {workers, queues} = model.operations;
  renderWorkers(document.querySelector("#workers tbody"), workers);
  document.getElementById("workers").hidden = workers.size === 0;
  document.getElementById("workers-empty").hidden = workers.size > 0;
  renderQueues(document.querySelector("#queues tbody"), queues, (queue) =>
    act({action: "purge", queue}, `Delete every message waiting in queue ${queue}? This cannot be undone.`),
  );
  document.getElementById("queues").hidden = queues.size === 0;
  document.getElementById("queues-empty").hidden = queues.size > 0;
}

function renderStatisticsSection() {
  const rows = model.statistics;
  renderStatistics(document.querySelector("#statistics tbody"), rows);
  document.getElementById("statistics").hidden = rows.length === 0;
  document.getElementById("statistics-empty").hidden = rows.length > 0;
  renderRuntimeChart(document.getElementById("runtime-chart"), rows);
}

const windowSelect = document.getElementById("window");
let statsTimer = null;
let statsFetchedAt = 0;

function statisticsSoon() {
  statsTimer ??= setTimeout(refreshStatistics, Math.max(0, statsFetchedAt + STATS_EVERY - Date.now()));
}

async function refreshStatistics() {
  clearTimeout(statsTimer);
  statsTimer = null;
  statsFetchedAt = Date.now();
  try {
    const url = new URL(root.dataset.statsUrl, location.href);
    url.searchParams.set("window", windowSelect.value);
    model.statistics = (await fetchJson(url)).tasks;
    renderStatisticsSection();
  } catch (error) {
    console.warn("dashboard: could not refresh the statistics", error);
  }
}
windowSelect.addEventListener("change", refreshStatistics);

function render() {
  root.dataset.taken = new Date(model.taken).toISOString();  // the data's time, for a look in devtools
  renderCounts();
  renderChart();
  renderFailures();
  renderOperations();
  renderStatisticsSection();
}

render();
// The window slides even when nothing happens.
setInterval(renderChart, 30_000);

const feed = new FeedClient({url: root.dataset.feedUrl, onUpdate: apply});
feed.addEventListener("frame", (event) => {
  replaying?.push({frame: event.detail});
  if (model.operations.apply(event.detail)) renderOperations();
});
showTransport(feed, document.getElementById("transport"), {4401: "Not connected: log in as staff"});
feed.addEventListener("statechange", (event) => {
  // Whatever happened while the socket was down (or before it first opened) is not replayed.
  if (event.detail.state === "open") resync();
});
