/**
 * The operations console's pieces for the browser, shared by the admin's workers and queues
 * pages and any dashboard: a model that keeps the newest version of each worker and queue,
 * renderers for their tables, the statistics table and its runtime chart, and control actions
 * (asked to confirm, sent to the REST API with the CSRF token).
 *
 * Everything from the server is shown with textContent. No build step: an ES module beside
 * taskclient.js.
 *
 * @module operations
 */

const SVG = "http://www.w3.org/2000/svg";

/** The newest version of each worker and queue; older and repeated versions change nothing. */
export class OperationsModel {
  constructor({workers = [], queues = []} = {}) {
    /** @type {Map<string, object>} host name → worker document */
    this.workers = new Map();
    /** @type {Map<string, object>} queue name → queue document */
    this.queues = new Map();
    this.load({workers, queues});
  }

  /** Take data from the page or the REST API (after a (re)connect); newer versions only. */
  load({workers, queues}) {
    for (const w of workers || []) keep(this.workers, w.hostname, w);
    for (const q of queues || []) keep(this.queues, q.queue, q);
  }

  /**
   * Apply a feed frame; true when it changed what is shown.
   * @param {{type: string}} frame
   */
  apply(frame) {
    if (frame.type === "worker.update") return keep(this.workers, frame.hostname, frame);
    if (frame.type === "queue.update") return keep(this.queues, frame.queue, frame);
    return false;
  }
}

function keep(map, key, frame) {
  const held = map.get(key);
  if (held && held.version >= frame.version) return false;
  const {type, ...document} = frame;
  map.set(key, document);
  return true;
}

/** An element with properties and children. */
export function element(tag, properties = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, properties);
  node.append(...children);
  return node;
}

function time(iso) {
  if (!iso) return element("span", {textContent: "-"});
  const node = element("time", {dateTime: iso, textContent: new Date(iso).toLocaleTimeString()});
  node.title = new Date(iso).toLocaleString();
  return node;
}

function cell(text, field) {
  const td = element("td", {textContent: text ?? "-"});
  if (field) td.dataset.field = field;
  return td;
}

/** Fill a workers table body: one row per worker, online first. */
export function renderWorkers(tbody, workers) {
  const rank = {online: 0, lost: 1, offline: 2};
  const rows = [...workers.values()].sort(
    (a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3) || a.hostname.localeCompare(b.hostname),
  );
  tbody.replaceChildren(
    ...rows.map((w) => {
      const status = element("span", {className: "ops-status", textContent: w.status});
      status.dataset.status = w.status;
      const row = element("tr", {}, [
        element("th", {scope: "row", textContent: w.hostname}),
        element("td", {}, [status]),
        cell(String(w.running), "running"),
        cell(String(w.processed), "processed"),
        cell(String(w.succeeded), "succeeded"),
        cell(String(w.failed), "failed"),
        cell(`${w.pool || "?"} × ${w.concurrency ?? "?"}`),
        cell((w.queues || []).join(", ")),
        element("td", {}, [time(w.last_heartbeat)]),
        cell(w.software?.celery ? `celery ${w.software.celery}` : ""),
      ]);
      row.dataset.hostname = w.hostname;
      row.dataset.status = w.status;
      row.dataset.version = String(w.version);
      return row;
    }),
  );
}

/**
 * Fill a queues table body; with `onPurge`, each row gets a Purge button.
 * @param {?function(string): void} onPurge
 */
export function renderQueues(tbody, queues, onPurge = null) {
  const rows = [...queues.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  tbody.replaceChildren(
    ...rows.map((q) => {
      const depth = cell(q.depth === null ? "unknown" : String(q.depth), "depth");
      const row = element("tr", {}, [
        element("th", {scope: "row", textContent: q.queue}),
        depth,
        cell(q.broker || "-"),
        element("td", {}, [time(q.date_updated)]),
      ]);
      if (onPurge) {
        const button = element("button", {type: "button", className: "ops-purge", textContent: "Purge"});
        button.disabled = !q.depth;
        button.addEventListener("click", () => onPurge(q.queue));
        row.append(element("td", {}, [button]));
      }
      row.dataset.queue = q.queue;
      row.dataset.depth = q.depth === null ? "" : String(q.depth);
      return row;
    }),
  );
}

function seconds(value) {
  if (value === null || value === undefined) return "-";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

/** Fill a statistics table body from the rows of GET /api/ops/stats/. */
export function renderStatistics(tbody, rows) {
  tbody.replaceChildren(
    ...rows.map((r) => {
      const row = element("tr", {}, [
        element("th", {scope: "row", textContent: r.task_name || "(no name)"}),
        cell(String(r.count), "count"),
        cell(`${(r.failure_rate * 100).toFixed(1)} %`, "failure_rate"),
        cell(String(r.retries), "retries"),
        cell(seconds(r.runtime_p50), "runtime_p50"),
        cell(seconds(r.runtime_p95), "runtime_p95"),
        cell(seconds(r.wait_p50), "wait_p50"),
        cell(seconds(r.wait_p95), "wait_p95"),
      ]);
      row.dataset.taskName = r.task_name;
      return row;
    }),
  );
}

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A horizontal bar chart of runtime p50 (solid) and p95 (light) per task name, as SVG. */
export function renderRuntimeChart(figure, rows) {
  const shown = rows.filter((r) => r.runtime_p95 !== null).slice(0, 20);
  const width = 640, rowHeight = 22, left = 200, top = 4;
  const height = top + shown.length * rowHeight + 20;
  const peak = Math.max(0.001, ...shown.map((r) => r.runtime_p95));
  const scale = (v) => ((width - left - 10) * v) / peak;
  const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true", focusable: "false"});
  shown.forEach((r, i) => {
    const y = top + i * rowHeight;
    chart.append(
      svg("text", {x: left - 6, y: y + 15, "text-anchor": "end"}, r.task_name.length > 30 ? `…${r.task_name.slice(-29)}` : r.task_name),
      svg("rect", {class: "p95", x: left, y: y + 3, width: Math.max(1, scale(r.runtime_p95)), height: rowHeight - 6, rx: 2}),
      svg("rect", {class: "p50", x: left, y: y + 3, width: Math.max(1, scale(r.runtime_p50)), height: rowHeight - 6, rx: 2}),
    );
  });
  chart.append(
    svg("text", {x: left, y: height - 4}, "0"),
    svg("text", {x: width - 10, y: height - 4, "text-anchor": "end"}, `${seconds(peak)} (p50 solid, p95 light)`),
  );
  figure.replaceChildren(chart);
  figure.dataset.bars = String(shown.length);
  figure.setAttribute(
    "aria-label",
    shown.length ? `Runtime p50 and p95 of ${shown.length} task names; the slowest p95 is ${seconds(peak)}.` : "No finished tasks in the window.",
  );
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/**
 * Ask the user to confirm, then take a control action through the REST API.
 * Resolves to the action document, or null when the user said no; rejects with the server's
 * error message.
 * @param {string} url  the actions URL (/api/ops/actions/)
 * @param {{action: string, task_id?: string, queue?: string}} body
 * @param {string} question
 */
export async function control(url, body, question) {
  if (!globalThis.confirm(question)) return null;
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken()},
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
  return answer;
}

/** GET a JSON document from the operations API. */
export async function fetchJson(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}
