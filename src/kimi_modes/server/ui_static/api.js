// The runs API from the browser: requests with the API key, and the form that asks for it.
//
// The pages carry no credentials of their own. When the API answers 401 the user is asked for
// a key once (one form, however many requests were refused); it is kept in localStorage under
// KEY_STORAGE and sent as "Authorization: Bearer <key>" from then on. A key the API refuses
// brings the form back with the API's message.

import {el, errorMessage} from "./dom.js";

export const KEY_STORAGE = "kimi-modes.api-key";

/** The API answered with an error: `status` and the API's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";  // storage disabled: the user is asked each time the page loads
  }
}

let memoryKey = "";

function currentKey() {
  return storedKey() || memoryKey;
}

function saveKey(key) {
  memoryKey = key;
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // kept in memory only
  }
}

let asking = null;  // the one pending key form, shared by every refused request

/** Show the key form (once, however many callers wait) and resolve when a key was given. */
export function askForKey(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = el("input", {
      type: "password", name: "api-key", autocomplete: "off", "data-testid": "key-input",
      placeholder: "API key", "aria-label": "API key", required: true,
    });
    const form = el("form", {class: "key-form", "data-testid": "key-form"},
      el("h2", {text: "API key needed"}),
      el("p", {"data-testid": "key-message", text: message}),
      el("p", {class: "hint", text: "The key is kept in this browser (localStorage) and sent "
        + "to this gateway's API only."}),
      input,
      el("button", {type: "submit", "data-testid": "key-submit", text: "Use key"}));
    const overlay = el("div", {class: "overlay"}, form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      saveKey(key);
      overlay.remove();
      asking = null;
      resolve();
    });
    document.body.append(overlay);
    input.focus();
  });
  return asking;
}

/**
 * fetch() a path of the API with the key. A 401 shows the key form and tries again with the
 * new key, until the API accepts one; every other answer is returned as it is.
 */
export async function apiFetch(path, {signal, accept = "application/json"} = {}) {
  for (;;) {
    const key = currentKey();
    const headers = {Accept: accept};
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(path, {headers, signal, cache: "no-store"});
    if (response.status !== 401) return response;
    if (currentKey() !== key) continue;  // a key was given meanwhile: try that one
    const message = await errorMessage(response);
    await askForKey(key ? `The API refused the key: ${message}` : `The API says: ${message}`);
  }
}

/** GET a JSON resource of the API; throws ApiError for an error answer. */
export async function getJSON(path, options = {}) {
  const response = await apiFetch(path, options);
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response.json();
}
