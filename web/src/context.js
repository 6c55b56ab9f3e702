// The handles every view shares once signed in: the REST client, the STOMP session and the
// elements of the page's shell. main.js sets them at sign-in; the other modules only read them
// (ES module bindings are live, so a reader always sees the current ones).
import { ApiError } from "./api.js";
import { h } from "./dom.js";

export let api = null;
export let session = null;
export const ui = {};

/** Sets the REST client of the signed-in user. */
export function setApi(value) {
  api = value;
}

/** Sets the STOMP session of the signed-in user. */
export function setSession(value) {
  session = value;
}

/** Shows a failure above the composer of the open chat for a few seconds. */
export function showError(error) {
  const text = error instanceof ApiError || error?.code ? `${error.code}: ${error.message}` : String(error?.message ?? error);
  const box = ui.errors;
  if (!box) return;
  const item = h("div", { class: "error-item" }, text, h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"));
  box.append(item);
  setTimeout(() => item.remove(), 8000);
}
