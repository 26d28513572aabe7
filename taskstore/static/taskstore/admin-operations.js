/**
 * The admin's live workers list and queues view.
 *
 * Draws the table from the data the page came with, then follows the staff feed through
 * taskclient.js's FeedClient: each `worker.update` / `queue.update` frame with a newer version
 * redraws it, without a reload. The feed has no replay, so after each (re)connect the page asks
 * the REST API (/api/ops/workers/ or /api/ops/queues/) again. Purge asks to confirm first.
 */
import {FeedClient} from "./taskclient.js";
import {OperationsModel, control, fetchJson, renderQueues, renderWorkers} from "./operations.js";

const config = JSON.parse(document.getElementById("taskstore-operations-config").textContent);
const table = document.getElementById("ops-table");
const empty = document.getElementById("ops-empty");
const message = document.getElementById("ops-message");
const status = document.getElementById("taskstore-live-status");
const model = new OperationsModel({[config.kind]: config[config.kind]});

function say(text) {
  message.hidden = !text;
  message.textContent = text || "";
}

async function purge(queue) {
  try {
    const done = await control(config.actions_url, {action: "purge", queue}, `Delete every message waiting in queue ${queue}? This cannot be undone.`);
    if (done) say("");
  } catch (error) {
    say(`Purge failed: ${error.message}`);
  }
}

function render() {
  const items = config.kind === "workers" ? model.workers : model.queues;
  if (config.kind === "workers") renderWorkers(table.tBodies[0], items);
  else renderQueues(table.tBodies[0], items, purge);
  empty.hidden = items.size > 0;
  table.hidden = items.size === 0;
}

const LABELS = {
  connecting: "Connecting to the live feed…",
  open: "Live: changes appear as they happen",
  reconnecting: "Live feed lost: reconnecting…",
  closed: "Not live: reload the page to try again",
};

render();
const feed = new FeedClient({url: config.feed_url});
feed.addEventListener("frame", (event) => {
  if (model.apply(event.detail)) render();
});
feed.addEventListener("statechange", async (event) => {
  status.dataset.state = event.detail.state;
  status.querySelector(".label").textContent = LABELS[event.detail.state] ?? event.detail.state;
  if (event.detail.state !== "open") return;
  try {
    model.load(await fetchJson(config.data_url));
    render();
  } catch (error) {
    console.warn("admin-operations: could not catch up", error);
  }
});
