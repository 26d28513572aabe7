/**
 * The "connected / reconnecting" note in the page header, for a TaskClient or FeedClient.
 */

const LABELS = {
  connecting: "Connecting…",
  open: "Live: connected",
  reconnecting: "Connection lost: reconnecting…",
  closed: "Not connected",
};

/**
 * Keep `element` (a `role="status"` note with a `.label` child) in step with `client`'s state.
 * @param {EventTarget & {state: string}} client
 * @param {HTMLElement} element
 * @param {Object<number, string>} [closedReasons] text for close codes, e.g. {4401: "Log in…"}
 */
export function showTransport(client, element, closedReasons = {}) {
  const label = element.querySelector(".label");
  const show = (state, code) => {
    element.dataset.state = state;
    label.textContent = (state === "closed" && closedReasons[code]) || LABELS[state] || state;
  };
  show(client.state, null);
  client.addEventListener("statechange", (event) => show(event.detail.state, event.detail.code));
}
