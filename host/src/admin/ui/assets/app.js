// The web UI's entry point: login, the hash router, the live event stream.
import { api, h, live, setUnauthorizedHandler, toast } from './api.js';
import {
  activityView, alertsView, dashboardView, errorDetailView, errorsView, historyView,
  pluginsView,
} from './views.js';
import { mapView } from './map-view.js';
import { graphView } from './graph.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
const liveStatus = document.getElementById('live');

let events = null;
let leaveView = null;
let loggedIn = false;

const routes = [
  [/^#\/maps\/([^/?]+)$/, (m) => mapView(decodeURIComponent(m[1]))],
  [/^#\/maps$/, () => dashboardView()],
  [/^#\/activity$/, () => activityView()],
  [/^#\/history$/, () => historyView()],
  [/^#\/errors\/(\d+)$/, (m) => errorDetailView(Number(m[1]))],
  [/^#\/errors$/, () => errorsView()],
  [/^#\/alerts$/, () => alertsView()],
  [/^#\/graph$/, () => graphView()],
  [/^#\/plugins$/, () => pluginsView()],
];

function startEvents() {
  if (events) return;
  events = new EventSource('/api/v1/events');
  events.addEventListener('state', (event) => {
    liveStatus.textContent = `live · ${new Date().toLocaleTimeString('en-GB', { hour12: false })}`;
    live.publish(JSON.parse(event.data));
  });
  events.addEventListener('error', () => {
    liveStatus.textContent = 'reconnecting…';
  });
}

function stopEvents() {
  if (events) events.close();
  events = null;
  liveStatus.textContent = '';
}

function showLogin(message) {
  loggedIn = false;
  stopEvents();
  nav.hidden = true;
  logoutButton.hidden = true;
  if (leaveView) leaveView();
  leaveView = null;
  const input = h('input', {
    id: 'token', type: 'password', name: 'token', autocomplete: 'off', required: true,
    spellcheck: 'false',
  });
  const problem = h('p', { class: 'error-text', role: 'alert' }, message || '');
  const form = h('form', {
    class: 'card login',
    onsubmit: async (event) => {
      event.preventDefault();
      problem.textContent = '';
      try {
        await api('POST', '/ui/login', { token: input.value });
        input.value = '';
        loggedIn = true;
        if (!location.hash || location.hash === '#/login') location.hash = '#/maps';
        else render();
      } catch (error) {
        input.setAttribute('aria-invalid', 'true');
        problem.textContent = error.message;
        input.focus();
      }
    },
  },
  h('h1', {}, 'Log in'),
  h('p', { class: 'muted' }, 'Use the admin API token that dualwrite printed when it started (or the one in the variable your config’s [admin] token_env names).'),
  h('label', { for: 'token' }, 'Admin API token', input),
  problem,
  h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Log in')));
  main.replaceChildren(form);
  input.focus();
}

async function render() {
  if (!loggedIn) {
    try {
      await api('GET', '/api/v1/maps');
      loggedIn = true;
    } catch {
      showLogin();
      return;
    }
  }
  if (!location.hash || location.hash === '#/login') {
    location.hash = '#/maps';
    return;
  }
  nav.hidden = false;
  logoutButton.hidden = false;
  startEvents();
  const path = location.hash.split('?')[0];
  for (const link of nav.querySelectorAll('a')) {
    const current = path === link.getAttribute('href') || path.startsWith(`${link.getAttribute('href')}/`);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (leaveView) leaveView();
  leaveView = null;
  const route = routes.find(([pattern]) => pattern.test(path));
  if (!route) {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/maps' }, 'Back to the maps')));
    return;
  }
  try {
    const view = await route[1](path.match(route[0]));
    main.replaceChildren(view.element);
    leaveView = view.leave || null;
    document.title = `${view.title} · dualwrite`;
    main.focus({ preventScroll: true });
  } catch (error) {
    main.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error-text' }, error.message));
  }
}

setUnauthorizedHandler(() => {
  if (loggedIn) showLogin('Your session ended; log in again.');
});

logoutButton.addEventListener('click', async () => {
  try {
    await api('POST', '/ui/logout');
  } catch (error) {
    toast(error.message, true);
  }
  location.hash = '#/login';
  showLogin('Logged out.');
});

window.addEventListener('hashchange', () => {
  if (loggedIn) render();
});
render();
