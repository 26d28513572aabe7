/**
 * The demo page: each form sends an example task through the REST API, and each run's card
 * follows the task over one shared TaskClient socket.
 */
// The taskstore app's client: every app's static files share STATIC_URL, so a relative import finds it.
import {ERROR_STATES, TaskClient, TaskError} from "../taskstore/taskclient.js";
import {showTransport} from "./transport.js";

const launchers = document.getElementById("launchers");
const runs = document.getElementById("runs");
const template = document.getElementById("run-template");
const submitError = document.getElementById("submit-error");

const client = new TaskClient({url: launchers.dataset.wsUrl, apiUrl: launchers.dataset.apiUrl});
showTransport(client, document.getElementById("transport"));

/** The CSRF token Django set in the `csrftoken` cookie (the view makes sure it is there). */
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** A field's value as JSON if it parses, else as the text typed: `2` is a number, `hi` text. */
function argument(input) {
  if (input.type === "number") return Number(input.value);
  if (!("json" in input.dataset)) return input.value;
  try {
    return JSON.parse(input.value);
  } catch {
    return input.value;
  }
}

/**
 * Send a task; returns the server's `{task_id, token}`.
 * @param {string} task
 * @param {Array} args
 */
async function submit(task, args) {
  const response = await fetch(launchers.dataset.apiUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken()},
    body: JSON.stringify({task, args, kwargs: {}}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status !== 202) {
    throw new Error(body.error || body.detail || `The server answered ${response.status}.`);
  }
  return body;
}

/** `ValueError: boom` for a document's error. */
function describe(error) {
  return error ? `${error.type}: ${error.message}` : "";
}

/** Text for a call like `add(2, "x")`. */
function callText(task, args) {
  return `${task.split(".").pop()}(${args.map((a) => JSON.stringify(a)).join(", ")})`;
}

/** Shows one run's document in its card. Only textContent: the data came from a task. */
class RunCard {
  constructor(call) {
    this.root = template.content.firstElementChild.cloneNode(true);
    this.fields = Object.fromEntries(
      [...this.root.querySelectorAll("[data-field]")].map((el) => [el.dataset.field, el]),
    );
    this.fields.call.textContent = call;
    this.fields.progress.setAttribute("aria-label", `Progress of ${call}`);
    runs.prepend(this.root);
    document.getElementById("runs-empty").hidden = true;
  }

  /** @param {import("../taskstore/taskclient.js").TaskDocument} doc */
  render(doc) {
    const {root, fields} = this;
    root.dataset.taskId = doc.task_id;
    root.dataset.state = doc.state;
    fields["task-id"].textContent = doc.task_id;
    fields.state.textContent = doc.state;
    fields.version.textContent = String(doc.version);
    fields.attempt.textContent = doc.retries ? `· attempt ${doc.retries + 1}` : "";
    const bar = fields.progress;
    if (doc.progress && doc.progress.total > 0) {
      bar.max = doc.progress.total;
      bar.value = Math.min(doc.progress.current, doc.progress.total);
    }
    const outcome = {label: "", result: "", error: ""};
    if (doc.state === "SUCCESS") {
      // Tasks without progress go from "busy" to full; progress tasks are full already.
      if (!bar.hasAttribute("value")) bar.max = 1;
      bar.value = bar.max;
      outcome.label = "Result:";
      outcome.result = doc.result_truncated ? "(too large to show)" : JSON.stringify(doc.result);
    } else if (ERROR_STATES.includes(doc.state)) {
      // Stop a "busy" bar: nothing more will happen.
      if (!bar.hasAttribute("value")) bar.value = 0;
      outcome.label = "Error:";
      outcome.error = describe(doc.error) || doc.state;
    } else if (doc.state === "RETRY" && doc.error) {
      outcome.label = "Retrying after:";
      outcome.error = describe(doc.error);
    }
    fields["outcome-label"].textContent = outcome.label;
    fields.result.textContent = outcome.result;
    fields.error.textContent = outcome.error;
    const measured = bar.hasAttribute("value") && !ERROR_STATES.includes(doc.state);
    fields.percent.textContent = measured ? `${Math.round((100 * bar.value) / bar.max)}%` : "";
    if (doc.date_started && doc.date_done) {
      const seconds = (Date.parse(doc.date_done) - Date.parse(doc.date_started)) / 1000;
      fields.duration.textContent = `· took ${seconds.toFixed(2)} s`;
    }
  }

  /** @param {string} message */
  fail(message) {
    this.root.dataset.state = "ERROR";
    this.fields.state.textContent = "ERROR";
    this.fields["outcome-label"].textContent = "Error:";
    this.fields.error.textContent = message;
  }
}

launchers.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const task = form.dataset.task;
  const inputs = [...form.querySelectorAll("[data-arg]")].sort((a, b) => a.dataset.arg - b.dataset.arg);
  const args = inputs.map(argument);
  submitError.hidden = true;
  let sent;
  try {
    sent = await submit(task, args);
  } catch (error) {
    submitError.textContent = `Could not start ${callText(task, args)}: ${error.message}`;
    submitError.hidden = false;
    return;
  }
  const card = new RunCard(callText(task, args));
  try {
    card.render(await client.result(sent.task_id, {token: sent.token, onUpdate: (doc) => card.render(doc)}));
  } catch (error) {
    if (error instanceof TaskError) card.render(error.document);
    else card.fail(error.message);
  }
});
