/**
 * Live Celery task results in the browser: an ES module, no build step, no dependencies.
 * Part of the taskstore app's static files, so `{% static "taskstore/taskclient.js" %}` names it
 * (`/static/taskstore/taskclient.js` with the default STATIC_URL).
 *
 *     import {TaskClient} from "/static/taskstore/taskclient.js";
 *
 *     const client = new TaskClient();                       // one socket to /ws/tasks/
 *     const doc = await client.result(taskId, {token, onUpdate});
 *     const stop = client.subscribe(taskId, (doc) => render(doc), {token});
 *     const stopGroup = client.subscribeGroup(groupId, (group) => render(group), {token});
 *     client.addEventListener("statechange", (e) => show(e.detail.state));
 *     client.close();
 *
 * Every subscription shares one WebSocket. When the socket drops, the client reconnects with
 * exponential backoff and jitter and subscribes again with `since` = the last version it holds,
 * so the server replays what was missed from the database. A listener sees each version of a
 * task once, in increasing order.
 *
 * The socket paths default to /ws/tasks/ and /ws/feed/; a project that routes them elsewhere
 * (TASKSTORE_WEBSOCKET_PREFIX) passes `url`, e.g. from `{% taskstore_socket "tasks" %}`.
 *
 * The documents are the task and group documents of docs/protocol.md. Anything in them came
 * from a task: render it with `textContent`, never `innerHTML`.
 *
 * @module taskclient
 */

/** Task states after which nothing more happens. */
export const TERMINAL_STATES = Object.freeze(["SUCCESS", "FAILURE", "REVOKED", "REJECTED"]);
/** Terminal states that reject {@link TaskClient#result}. */
export const ERROR_STATES = Object.freeze(["FAILURE", "REVOKED", "REJECTED"]);

/**
 * Close codes after which reconnecting cannot help: not logged in, not allowed.
 * (The server's convention is 4000 + the HTTP status.) Every other close is followed by a
 * reconnect that resumes each task with `since`: among them 4408, the server closing a socket
 * that stopped reading while its frames piled up (a tab in the background, a stalled network).
 */
const PERMANENT_CLOSE_CODES = new Set([4401, 4403]);
/** The server closed the socket because the client fell too far behind; resume with `since`. */
export const CLOSE_TOO_SLOW = 4408;

/**
 * @typedef {object} TaskDocument
 * @property {string} task_id
 * @property {string} task_name
 * @property {string} state
 * @property {number} version   1, 2, 3, … (0 for a task nothing has recorded yet)
 * @property {number} retries
 * @property {*} result          the return value on SUCCESS, else null
 * @property {boolean} result_truncated
 * @property {?{current: number, total: number}} progress
 * @property {?{type: string, message: string}} error
 * @property {?string} group_id
 * @property {?string} date_created
 * @property {?string} date_started
 * @property {?string} date_done
 */

/**
 * @typedef {object} ConnectionOptions
 * @property {number} [initialDelay=500]   ms before the first reconnect attempt (before jitter)
 * @property {number} [maxDelay=15000]     ms the backoff grows to at most
 * @property {number} [pingInterval=20000] ms between pings while the socket is quiet
 * @property {number} [pongTimeout=10000]  ms without any frame after a ping before the socket is
 *                                         taken for dead and replaced
 * @property {number} [rate=40]            frames per second the client sends at most; the server
 *                                         closes sockets that flood it
 * @property {number} [burst=80]           frames the client may send at once
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (for tests)
 */

/** The task ended in FAILURE, REVOKED or REJECTED; `document` says how. */
export class TaskError extends Error {
  /** @param {TaskDocument} document */
  constructor(document) {
    const error = document.error || {};
    const what = error.type ? `${error.type}: ${error.message ?? ""}` : document.state;
    super(`Task ${document.task_id} ended in ${document.state} (${what})`);
    this.name = "TaskError";
    /** @type {TaskDocument} */
    this.document = document;
    /** @type {string} */
    this.state = document.state;
  }
}

/** The server refused a subscription (e.g. `forbidden`) or the client was closed. */
export class SubscriptionError extends Error {
  /**
   * @param {string} code    the server's error code, or `closed`
   * @param {string} detail  a human-readable explanation
   */
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.name = "SubscriptionError";
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.detail = detail;
    /** @type {?TaskDocument} always null: there is no document to show */
    this.document = null;
  }
}

/**
 * A WebSocket URL from a path or URL: relative to the page, `wss:` under `https:`.
 * @param {string} url
 * @param {string} [base] defaults to the page's address
 * @returns {string}
 */
export function socketUrl(url, base = globalThis.location?.href) {
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

/**
 * One JSON WebSocket that stays connected: reconnects with backoff and jitter, pings, and
 * paces what it sends. Not exported: TaskClient and FeedClient are the interface.
 */
class Connection {
  /**
   * @param {string} url
   * @param {{onOpen: function(): void, onFrame: function(object): void,
   *          onState: function(string, ?CloseEvent): void}} handlers
   * @param {ConnectionOptions & {ping?: boolean}} options
   */
  constructor(url, handlers, options = {}) {
    this.url = socketUrl(url);
    this.handlers = handlers;
    this.options = {
      initialDelay: 500,
      maxDelay: 15000,
      pingInterval: 20000,
      pongTimeout: 10000,
      rate: 40,
      burst: 80,
      ping: true,
      WebSocket: globalThis.WebSocket,
      ...options,
    };
    /** @type {"connecting"|"open"|"reconnecting"|"closed"} */
    this.state = "connecting";
    this.attempt = 0;
    this.ws = null;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    this.pingSentAt = 0;
    this.outbox = [];
    this.tokens = this.options.burst;
    this.refilledAt = Date.now();
    this.flushTimer = null;
    this.onOnline = () => {
      // Only while waiting to retry: a connect already under way is left to finish.
      if (this.state === "reconnecting" && this.retryTimer !== null) this.connectNow();
    };
    globalThis.addEventListener?.("online", this.onOnline);
    this.open();
  }

  /** Open a new socket. */
  open() {
    this.retryTimer = null;
    const ws = new this.options.WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.outbox = [];
      this.lastFrameAt = Date.now();
      this.pingSentAt = 0;
      this.setState("open");
      if (this.options.ping) {
        this.pingTimer = setInterval(() => this.checkAlive(), Math.min(this.options.pingInterval, 5000));
      }
      this.handlers.onOpen();
    };
    ws.onmessage = (event) => {
      this.lastFrameAt = Date.now();
      this.pingSentAt = 0;
      // A frame proves the server accepted us: start the backoff afresh next time.
      this.attempt = 0;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn("taskclient: ignoring a frame that is not JSON");
        return;
      }
      if (frame && typeof frame === "object") this.handlers.onFrame(frame);
    };
    ws.onclose = (event) => this.dropped(event);
    // An error is always followed by close, which does the work.
    ws.onerror = () => {};
  }

  /**
   * The socket closed without us asking: reconnect later, unless the server said it is no use.
   * @param {?CloseEvent} event
   */
  dropped(event) {
    this.detach();
    if (this.state === "closed") return;
    if (event && PERMANENT_CLOSE_CODES.has(event.code)) {
      this.shutdown();
      this.handlers.onState("closed", event);
      return;
    }
    const base = Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** this.attempt);
    // "Equal jitter": half the delay fixed, half random, so a server restart is not met by every
    // client at the same instant.
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.setState("reconnecting", event);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** Skip the wait and reconnect at once (the browser came back online). */
  connectNow() {
    clearTimeout(this.retryTimer);
    this.open();
  }

  /** Ping when quiet; replace a socket that stopped answering (a half-open TCP connection). */
  checkAlive() {
    const now = Date.now();
    if (this.pingSentAt && now - this.pingSentAt > this.options.pongTimeout) {
      const ws = this.ws;
      // Waiting for the close handshake of a dead connection can take minutes: drop it now.
      this.dropped(null);
      ws?.close();
      return;
    }
    if (!this.pingSentAt && now - this.lastFrameAt >= this.options.pingInterval) {
      this.pingSentAt = now;
      this.send({type: "ping"});
    }
  }

  /**
   * Send a frame if the socket is open (paced to `rate`/`burst`); otherwise drop it: the owner
   * sends what it needs again from `onOpen`.
   * @param {object} frame
   */
  send(frame) {
    if (this.state !== "open") return;
    this.outbox.push(JSON.stringify(frame));
    this.flush();
  }

  flush() {
    const now = Date.now();
    const {rate, burst} = this.options;
    this.tokens = Math.min(burst, this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
    while (this.outbox.length && this.tokens >= 1 && this.ws?.readyState === 1) {
      this.ws.send(this.outbox.shift());
      this.tokens -= 1;
    }
    if (this.outbox.length && !this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.flush();
      }, Math.ceil(1000 / rate));
    }
  }

  /**
   * @param {"connecting"|"open"|"reconnecting"|"closed"} state
   * @param {?CloseEvent} [event]
   */
  setState(state, event = null) {
    if (this.state === state) return;
    this.state = state;
    this.handlers.onState(state, event);
  }

  /** Forget the current socket: no more events from it, no timers for it. */
  detach() {
    clearInterval(this.pingTimer);
    clearTimeout(this.flushTimer);
    this.pingTimer = this.flushTimer = null;
    this.outbox = [];
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    }
  }

  shutdown() {
    this.state = "closed";
    clearTimeout(this.retryTimer);
    globalThis.removeEventListener?.("online", this.onOnline);
  }

  /** Close for good. */
  close() {
    const ws = this.ws;
    this.detach();
    this.shutdown();
    this.ws = null;
    ws?.close(1000);
  }
}

/**
 * @callback UpdateListener
 * @param {TaskDocument} document
 * @returns {void}
 */

/**
 * @typedef {object} Subscription
 * @property {"task"|"group"} kind
 * @property {string} id
 * @property {?string} token
 * @property {?number} version   the last version delivered, null before the first
 * @property {?object} last      the last document delivered
 * @property {Set<{onUpdate: function(object): void, onError?: function(Error): void}>} listeners
 */

/**
 * Task and group subscriptions over one WebSocket (`/ws/tasks/`).
 *
 * Fires `statechange` events (`event.detail.state` is `connecting`, `open`, `reconnecting` or
 * `closed`) and `error` events for server error frames (`event.detail` is the frame).
 */
export class TaskClient extends EventTarget {
  /**
   * @param {ConnectionOptions & {url?: string, apiUrl?: string}} [options]
   *   `url`: the socket, default `/ws/tasks/` on this page's host;
   *   `apiUrl`: the REST tasks endpoint, default `/api/tasks/` (fetches a result too large to push)
   */
  constructor({url = "/ws/tasks/", apiUrl = "/api/tasks/", ...options} = {}) {
    super();
    this.apiUrl = apiUrl;
    /** @type {Map<string, Subscription>} */
    this.subscriptions = new Map();
    this.connection = new Connection(
      url,
      {
        onOpen: () => this.resubscribe(),
        onFrame: (frame) => this.receive(frame),
        onState: (state, event) => this.stateChanged(state, event),
      },
      options,
    );
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} the transport's state */
  get state() {
    return this.connection.state;
  }

  /**
   * Call `onUpdate` with the task's current document, then with every later one, once per
   * version, in order, across reconnects.
   * @param {string} taskId
   * @param {UpdateListener} onUpdate
   * @param {{token?: string, onError?: function(SubscriptionError): void}} [options]
   *   `token`: the capability returned on submit; `onError`: the server refused (e.g. forbidden)
   * @returns {function(): void} stops this listener (the socket unsubscribes after the last one)
   */
  subscribe(taskId, onUpdate, {token, onError} = {}) {
    return this.listen("task", taskId, onUpdate, token, onError);
  }

  /**
   * Like {@link TaskClient#subscribe} for a group: `onUpdate` gets group documents
   * (`{group_id, version, total, counts, completed, state, results}`).
   * @param {string} groupId
   * @param {function(object): void} onUpdate
   * @param {{token?: string, onError?: function(SubscriptionError): void}} [options]
   * @returns {function(): void}
   */
  subscribeGroup(groupId, onUpdate, {token, onError} = {}) {
    return this.listen("group", groupId, onUpdate, token, onError);
  }

  /**
   * Wait for a task to end.
   *
   * Resolves with the final document on SUCCESS (fetching the whole result over REST when it
   * was too large to push). Rejects with a {@link TaskError} (its `document` says how it ended)
   * on FAILURE, REVOKED or REJECTED, with a {@link SubscriptionError} if the server refuses the
   * subscription or the client is closed, and with the signal's reason if `signal` aborts.
   * @param {string} taskId
   * @param {{token?: string, onUpdate?: UpdateListener, signal?: AbortSignal}} [options]
   * @returns {Promise<TaskDocument>}
   */
  result(taskId, {token, onUpdate, signal} = {}) {
    return new Promise((resolve, reject) => {
      let stop = () => {};
      let settled = false;
      const settle = (fn, value) => {
        if (settled) return;
        settled = true;
        stop();
        signal?.removeEventListener("abort", onAbort);
        fn(value);
      };
      const onAbort = () => settle(reject, signal.reason);
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, {once: true});
      stop = this.subscribe(
        taskId,
        (doc) => {
          onUpdate?.(doc);
          if (doc.state === "SUCCESS") {
            this.complete(doc, token).then((full) => settle(resolve, full));
          } else if (ERROR_STATES.includes(doc.state)) {
            settle(reject, new TaskError(doc));
          }
        },
        {token, onError: (error) => settle(reject, error)},
      );
    });
  }

  /** Close the socket for good; pending {@link TaskClient#result} promises reject. */
  close() {
    this.connection.close();
    this.failAll(new SubscriptionError("closed", "the client was closed"));
    this.stateChanged("closed", null);
  }

  /** @private */
  listen(kind, id, onUpdate, token, onError) {
    if (typeof id !== "string" || !id) throw new TypeError(`${kind} id must be a non-empty string`);
    if (typeof onUpdate !== "function") throw new TypeError("onUpdate must be a function");
    if (this.state === "closed") throw new SubscriptionError("closed", "the client is closed");
    const key = `${kind}:${id}`;
    let sub = this.subscriptions.get(key);
    const listener = {onUpdate, onError};
    if (!sub) {
      sub = {kind, id, token: token || null, version: null, last: null, listeners: new Set()};
      this.subscriptions.set(key, sub);
      sub.listeners.add(listener);
      this.connection.send(this.subscribeFrame(sub));
    } else {
      sub.token ||= token || null;
      sub.listeners.add(listener);
      // A late listener starts from what the others already have, asynchronously like the rest.
      const last = sub.last;
      if (last) queueMicrotask(() => sub.listeners.has(listener) && call(listener.onUpdate, last));
    }
    return () => {
      if (!sub.listeners.delete(listener)) return;
      if (sub.listeners.size === 0 && this.subscriptions.get(key) === sub) {
        this.subscriptions.delete(key);
        this.connection.send({type: "unsubscribe", [`${kind}_id`]: id});
      }
    };
  }

  /** @private */
  subscribeFrame(sub) {
    const frame = {type: "subscribe", [`${sub.kind}_id`]: sub.id};
    if (sub.token) frame.token = sub.token;
    // Only tasks have versions the server can replay from.
    if (sub.kind === "task" && sub.version !== null) frame.since = sub.version;
    return frame;
  }

  /** @private */
  resubscribe() {
    for (const sub of this.subscriptions.values()) this.connection.send(this.subscribeFrame(sub));
  }

  /** @private */
  receive(frame) {
    const {type, ...document} = frame;
    if (type === "task.update" || type === "group.update") {
      const kind = type === "task.update" ? "task" : "group";
      const sub = this.subscriptions.get(`${kind}:${document[`${kind}_id`]}`);
      // Versions only grow: anything at or below what we hold is a replay or a duplicate.
      if (!sub || typeof document.version !== "number") return;
      if (sub.version !== null && document.version <= sub.version) return;
      sub.version = document.version;
      sub.last = document;
      for (const listener of [...sub.listeners]) call(listener.onUpdate, document);
    } else if (type === "error") {
      this.refused(frame);
    }
  }

  /** @private */
  refused(frame) {
    this.dispatchEvent(new CustomEvent("error", {detail: frame}));
    const kind = frame.group_id ? "group" : "task";
    const id = frame.group_id || frame.task_id;
    const sub = id && this.subscriptions.get(`${kind}:${id}`);
    if (!sub) {
      console.warn("taskclient: server error", frame.code, frame.detail);
      return;
    }
    // The server holds no subscription after refusing one: forget it, or it would be sent
    // again on every reconnect.
    this.subscriptions.delete(`${kind}:${id}`);
    const error = new SubscriptionError(frame.code, frame.detail || "refused by the server");
    for (const listener of sub.listeners) {
      if (listener.onError) call(listener.onError, error);
      else console.warn("taskclient:", error.message);
    }
  }

  /** @private */
  stateChanged(state, event) {
    if (state === "closed" && this.subscriptions.size) {
      const reason = event ? `the server closed the socket (${event.code})` : "the client was closed";
      this.failAll(new SubscriptionError("closed", reason));
    }
    this.dispatchEvent(new CustomEvent("statechange", {detail: {state, code: event?.code ?? null}}));
  }

  /** @private */
  failAll(error) {
    const subs = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const sub of subs) for (const listener of sub.listeners) if (listener.onError) call(listener.onError, error);
  }

  /**
   * A SUCCESS document whose result was too large to push, completed over REST.
   * @private
   */
  async complete(doc, token) {
    if (!doc.result_truncated) return doc;
    const url = new URL(`${encodeURIComponent(doc.task_id)}/`, new URL(this.apiUrl, globalThis.location?.href));
    if (token) url.searchParams.set("token", token);
    try {
      const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (response.ok) return await response.json();
    } catch (error) {
      console.warn("taskclient: could not fetch the full result", error);
    }
    // The task did succeed: answer with what was pushed (result null, result_truncated true).
    return doc;
  }
}

/**
 * Every transition of every task the user may see (`/ws/feed/`): staff see all, others their
 * own. Calls `onUpdate` once per version of each task, newer versions only.
 *
 * The feed has no replay: after a reconnect, fetch what you show again. `statechange` events
 * with `detail.state === "open"` say when. Anonymous users are closed out (state `closed`,
 * `detail.code` 4401).
 *
 * Frames of other types (on staff feeds: `worker.update`, `queue.update`, `action.recorded`)
 * come as `frame` events, `detail` the whole frame; `send(frame)` sends a client frame (staff:
 * `{"type": "control", …}`).
 */
export class FeedClient extends EventTarget {
  /**
   * @param {ConnectionOptions & {url?: string, onUpdate?: UpdateListener, remember?: number}} [options]
   *   `remember`: how many tasks' versions to keep for dropping duplicates (default 10000)
   */
  constructor({url = "/ws/feed/", onUpdate = () => {}, remember = 10000, ...options} = {}) {
    super();
    this.onUpdate = onUpdate;
    this.remember = remember;
    /** @type {Map<string, number>} task id → last version delivered, oldest first */
    this.versions = new Map();
    this.connection = new Connection(
      url,
      {
        onOpen: () => {},
        onFrame: (frame) => this.receive(frame),
        onState: (state, event) =>
          this.dispatchEvent(new CustomEvent("statechange", {detail: {state, code: event?.code ?? null}})),
      },
      options,
    );
  }

  /** @returns {"connecting"|"open"|"reconnecting"|"closed"} */
  get state() {
    return this.connection.state;
  }

  /** Close for good. */
  close() {
    this.connection.close();
    this.dispatchEvent(new CustomEvent("statechange", {detail: {state: "closed", code: null}}));
  }

  /** Send a client frame (paced like every frame; dropped while the socket is not open). */
  send(frame) {
    this.connection.send(frame);
  }

  /** @private */
  receive(frame) {
    const {type, ...document} = frame;
    if (type !== "task.update") {
      // Staff feeds also carry worker.update, queue.update and action.recorded (and later
      // versions of the protocol may add types): handed on as "frame" events, never an error.
      if (typeof type === "string" && type !== "pong") this.dispatchEvent(new CustomEvent("frame", {detail: frame}));
      return;
    }
    if (typeof document.version !== "number") return;
    const held = this.versions.get(document.task_id);
    if (held !== undefined && document.version <= held) return;
    // Re-insert so the Map stays in least-recently-updated order, then trim the oldest.
    this.versions.delete(document.task_id);
    this.versions.set(document.task_id, document.version);
    if (this.versions.size > this.remember) this.versions.delete(this.versions.keys().next().value);
    call(this.onUpdate, document);
  }
}

/** Call a listener; one that throws must not stop the others. */
function call(fn, value) {
  try {
    fn(value);
  } catch (error) {
    (globalThis.reportError || console.error)(error);
  }
}
