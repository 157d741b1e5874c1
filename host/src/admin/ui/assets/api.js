// The admin API client and small DOM helpers shared by the views. Requests are
// authenticated by the HttpOnly session cookie set at login; changes carry the
// X-Dualwrite-UI header the server requires of cookie-authenticated changes.

/** An API answer that is not 2xx: `status`, the server's `message`, and `path` (a
 *  JSON pointer) when a plugin refused a config. */
export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && body.error) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.path = body && typeof body.path === 'string' ? body.path : null;
  }
}

let onUnauthorized = () => {};

/** Sets what happens when the session is gone (the app shows the login). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** Calls the API; JSON in and out; throws ApiError on a non-2xx answer. */
export async function api(method, path, body) {
  const headers = { 'X-Dualwrite-UI': '1', 'X-Dualwrite-Actor': 'web-ui' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (response.status === 401 && path !== '/ui/login') onUnauthorized();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Builds an element: h('button', {onclick: f, class: 'x'}, 'text', child). Text is
 *  always set as text, never parsed as HTML. */
export function h(tag, attributes = {}, ...children) {
  const svg = ['svg', 'g', 'rect', 'path', 'text', 'title', 'defs', 'marker', 'polygon'].includes(tag);
  const element = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' && !svg) {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Shows a short message in the corner (errors stay longer). */
export function toast(message, bad = false) {
  const box = document.getElementById('toast');
  const item = h('div', { class: bad ? 'bad' : '' }, message);
  box.append(item);
  setTimeout(() => item.remove(), bad ? 9000 : 4000);
}

/** Runs an action, shows its error as a toast; returns whether it succeeded. */
export async function attempt(action, done) {
  try {
    const result = await action();
    if (done) toast(done);
    return result === undefined ? true : result;
  } catch (error) {
    toast(error.message, true);
    return false;
  }
}

export function fmtNumber(value) {
  return value === null || value === undefined ? '–' : Number(value).toLocaleString('en');
}

export function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.round(seconds / 60)} min`;
}

export function fmtTime(text) {
  if (!text) return '–';
  const at = new Date(text);
  return at.toLocaleString('en-GB', { hour12: false });
}

/** A JSON value as short text. */
export function show(value) {
  if (value === null || value === undefined) return '–';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function badge(mode) {
  return h('span', { class: `badge ${mode || 'stopped'}` }, mode || 'not running');
}

/** The query of the current hash route (`#/activity?map=x`). */
export function routeQuery() {
  const hash = location.hash || '';
  const at = hash.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : hash.slice(at + 1));
}

/** The latest `state` event of the live stream, and who listens for the next. */
export const live = {
  state: null,
  listeners: new Set(),
  /** Calls `listener(state)` now (if a state is known) and on every new state until
   *  the returned function is called. */
  follow(listener) {
    this.listeners.add(listener);
    if (this.state) listener(this.state);
    return () => this.listeners.delete(listener);
  },
  publish(state) {
    this.state = state;
    for (const listener of [...this.listeners]) listener(state);
  },
};
