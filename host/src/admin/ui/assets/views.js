// The views of the web UI but the map page and the graph: the maps dashboard, the
// activity log and a row's history, the error queue, alert rules and subscribers,
// plugins. Each view returns {title, element, leave?}; live views follow `live`.
import {
  api, attempt, badge, fmtNumber, fmtSeconds, fmtTime, h, live, routeQuery, show, toast,
} from './api.js';

const enc = encodeURIComponent;

// ---- map actions (dashboard and map page) ----

/** The buttons for a map in `mode`: pause, resume (catch up / skip / discard), stop,
 *  play, initial sync. */
export function mapActions(name, mode) {
  const post = (action, body, done) => () => attempt(
    () => api('POST', `/api/v1/maps/${enc(name)}/${action}`, body), done,
  );
  const buttons = [];
  if (mode === 'running' || mode === 'catching-up') {
    buttons.push(h('button', { type: 'button', 'aria-label': `Pause ${name}`, onclick: post('pause', undefined, `${name} paused`) }, 'Pause'));
  }
  if (mode === 'paused') {
    const choice = h('select', { 'aria-label': `How ${name} resumes`, id: `resume-mode-${name}` },
      h('option', { value: 'catch-up' }, 'catch up (apply what queued)'),
      h('option', { value: 'skip' }, 'skip to live (queued become errors)'),
      h('option', { value: 'discard' }, 'discard what queued'));
    buttons.push(choice, h('button', {
      type: 'button', class: 'primary', 'aria-label': `Resume ${name}`,
      onclick: () => attempt(() => api('POST', `/api/v1/maps/${enc(name)}/resume`, { mode: choice.value }), `${name} resumed (${choice.value})`),
    }, 'Resume'));
  }
  if (mode === 'stopped' || mode === 'error') {
    buttons.push(h('button', { type: 'button', 'aria-label': `Play ${name}`, onclick: post('play', undefined, `${name} playing`) }, 'Play'));
  }
  if (mode && mode !== 'paused' && mode !== 'initializing') {
    buttons.push(h('button', { type: 'button', 'aria-label': `Initial sync of ${name}`, onclick: post('initial-sync', undefined, `initial sync of ${name} started`) }, 'Initial sync'));
  }
  if (mode && mode !== 'stopped') {
    buttons.push(h('button', {
      type: 'button', class: 'danger', 'aria-label': `Stop ${name}`,
      onclick: () => {
        if (window.confirm(`Stop ${name}? Its changes are no longer synced or queued; an initial sync brings it back in step.`)) {
          post('stop', undefined, `${name} stopped`)();
        }
      },
    }, 'Stop'));
  }
  return h('div', { class: 'actions' }, buttons);
}

function initialSyncCell(progress) {
  if (!progress) return '–';
  const sides = ['erp', 'crm'].filter((side) => progress[side]);
  return sides.map((side) => {
    const p = progress[side];
    const total = p.rows_total ?? p.rows_done;
    return h('div', {},
      h('progress', { max: Math.max(total, 1), value: p.rows_done, 'aria-label': `Initial sync of ${progress.map}, ${side} side` }),
      ` ${side} ${fmtNumber(p.rows_done)}/${fmtNumber(total)}${p.complete ? ' ✓' : ''}`);
  });
}

// ---- dashboard ----

export function dashboardView() {
  const body = h('tbody');
  const offline = h('div');
  const firing = h('div');
  const rows = new Map();
  const update = (state) => {
    offline.replaceChildren(...(state.offline || []).map((side) => h('p', { class: 'card error-text' },
      `Side ${side.side} offline for ${fmtSeconds(side.seconds)}: ${side.reason}`)));
    firing.replaceChildren(...(state.firing || []).map((alert) => h('p', { class: 'card error-text' },
      `Alert ${alert.rule} firing: ${alert.message || ''}`)));
    const progress = new Map((state.initial_syncs || []).map((p) => [p.map, p]));
    for (const map of state.maps) {
      let row = rows.get(map.name);
      if (!row) {
        row = {
          tr: h('tr', { 'data-map': map.name }),
          cells: {},
          mode: undefined,
        };
        for (const cell of ['name', 'mode', 'toCrm', 'toErp', 'filtered', 'conflicts', 'errors', 'queue', 'lag', 'initial', 'actions']) {
          row.cells[cell] = h('td', { class: ['name', 'mode', 'initial', 'actions'].includes(cell) ? '' : 'num' });
          row.tr.append(row.cells[cell]);
        }
        row.cells.name.append(h('a', { href: `#/maps/${enc(map.name)}` }, map.name),
          h('div', { class: 'muted' }, `${map.erp_entity} ↔ ${map.crm_entity}`));
        rows.set(map.name, row);
        body.append(row.tr);
      }
      const c = map.counters || {};
      row.cells.toCrm.textContent = fmtNumber(c.written_to_crm);
      row.cells.toErp.textContent = fmtNumber(c.written_to_erp);
      row.cells.filtered.textContent = fmtNumber(c.filtered);
      row.cells.conflicts.textContent = fmtNumber(c.conflicts);
      row.cells.errors.replaceChildren(map.open_errors > 0
        ? h('a', { href: `#/errors?map=${enc(map.name)}` }, fmtNumber(map.open_errors))
        : '0');
      row.cells.queue.textContent = fmtNumber(map.queue_depth);
      row.cells.lag.textContent = map.lag ? fmtSeconds(map.lag.seconds) : '–';
      row.cells.initial.replaceChildren(...[initialSyncCell(progress.get(map.name))].flat());
      if (row.mode !== map.mode) {
        row.mode = map.mode;
        row.tr.dataset.mode = map.mode;
        row.cells.mode.replaceChildren(badge(map.mode));
        const focused = row.cells.actions.contains(document.activeElement) ? document.activeElement.textContent : null;
        row.cells.actions.replaceChildren(mapActions(map.name, map.running ? map.mode : null));
        if (focused) {
          const again = [...row.cells.actions.querySelectorAll('button')][0];
          if (again) again.focus();
        }
      }
    }
  };
  const element = h('section', {},
    h('h1', {}, 'Maps'),
    offline, firing,
    h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Maps' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Map'), h('th', {}, 'State'), h('th', { class: 'num' }, 'ERP → CRM'),
        h('th', { class: 'num' }, 'CRM → ERP'), h('th', { class: 'num' }, 'Filtered'),
        h('th', { class: 'num' }, 'Conflicts'), h('th', { class: 'num' }, 'Open errors'),
        h('th', { class: 'num' }, 'Queue'), h('th', { class: 'num' }, 'Lag'),
        h('th', {}, 'Initial sync'), h('th', {}, 'Actions'))),
      body)),
    h('p', { class: 'muted' }, 'Counters since the engine started; the table follows the engine live.'));
  return { title: 'Maps', element, leave: live.follow(update) };
}

// ---- activity ----

const KINDS = ['applied', 'filtered', 'echo', 'no-op', 'conflict', 'error', 'error-retried',
  'error-resolved', 'state-change', 'plugin-version', 'plugin-rejected', 'discarded', 'alert'];

function mapOptions(selected, any = 'any map') {
  const names = (live.state?.maps || []).map((map) => map.name);
  return [h('option', { value: '' }, any), ...names.map((name) => h('option', { value: name, selected: name === selected }, name))];
}

function keyLink(map, side, key) {
  if (!map || !key) return '–';
  const text = JSON.stringify(key);
  return h('a', { href: `#/history?map=${enc(map)}&side=${side}&key=${enc(text)}`, title: `History of ${side} row ${text}` }, text);
}

function activityTable(entries, label) {
  return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': label },
    h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Map'), h('th', {}, 'Kind'),
      h('th', {}, 'Direction'), h('th', {}, 'ERP key'), h('th', {}, 'CRM key'), h('th', {}, 'Message'))),
    h('tbody', {}, entries.map((entry) => h('tr', { 'data-kind': entry.kind },
      h('td', {}, fmtTime(entry.at)), h('td', {}, entry.map || '–'), h('td', {}, entry.kind),
      h('td', {}, entry.direction || '–'), h('td', { class: 'mono' }, keyLink(entry.map, 'erp', entry.erp_key)),
      h('td', { class: 'mono' }, keyLink(entry.map, 'crm', entry.crm_key)),
      h('td', {}, entry.message, entry.error_id ? [' ', h('a', { href: `#/errors/${entry.error_id}` }, `error #${entry.error_id}`)] : '')))),
  ));
}

export async function activityView() {
  const query = routeQuery();
  const field = (name, label, input) => h('label', { for: `activity-${name}` }, label, input);
  const map = h('select', { id: 'activity-map', name: 'map' }, mapOptions(query.get('map')));
  const kind = h('select', { id: 'activity-kind', name: 'kind' }, h('option', { value: '' }, 'any kind'),
    KINDS.map((k) => h('option', { value: k, selected: k === query.get('kind') }, k)));
  const since = h('input', { id: 'activity-since', name: 'since', placeholder: 'e.g. 15m or 2026-01-31T12:00:00Z', value: query.get('since') || '', size: 24 });
  const until = h('input', { id: 'activity-until', name: 'until', placeholder: 'e.g. 5m', value: query.get('until') || '', size: 16 });
  const side = h('select', { id: 'activity-side', name: 'side' }, h('option', { value: '' }, '–'),
    ['erp', 'crm'].map((s) => h('option', { value: s, selected: s === query.get('side') }, s)));
  const key = h('input', { id: 'activity-key', name: 'key', placeholder: '["USMF","C-1"]', value: query.get('key') || '', size: 24 });
  const results = h('div');
  const problem = h('p', { class: 'error-text', role: 'alert' });
  const follow = h('input', { type: 'checkbox', id: 'activity-follow', checked: query.get('follow') !== '0' });
  const params = () => {
    const p = new URLSearchParams();
    for (const [name, input] of [['map', map], ['kind', kind], ['since', since], ['until', until], ['side', side], ['key', key]]) {
      if (input.value.trim()) p.set(name, input.value.trim());
    }
    return p;
  };
  let stop = () => {};
  const load = async () => {
    problem.textContent = '';
    stop();
    stop = () => {};
    const p = params();
    const timed = p.has('since') || p.has('until');
    try {
      if (timed) {
        p.set('limit', '500');
        const answer = await api('GET', `/api/v1/activity?${p}`);
        results.replaceChildren(h('p', { class: 'muted' }, `${answer.activity.length} entries, oldest first${answer.activity.length === 500 ? ' (first 500; narrow the time)' : ''}`),
          activityTable(answer.activity, 'Activity'));
      } else {
        p.set('limit', '100');
        const refresh = async () => {
          const answer = await api('GET', `/api/v1/activity/latest?${p}`);
          results.replaceChildren(h('p', { class: 'muted' }, `The newest ${answer.activity.length} entries, newest first${follow.checked ? '; follows the engine live' : ''}.`),
            activityTable(answer.activity, 'Activity'));
        };
        await refresh();
        let busy = false;
        let lastSeen = JSON.stringify(live.state?.maps?.map((m) => m.counters));
        stop = live.follow(async (state) => {
          const seen = JSON.stringify(state.maps.map((m) => m.counters));
          if (busy || seen === lastSeen || !follow.checked) return;
          lastSeen = seen;
          busy = true;
          try { await refresh(); } catch { /* shown on the next load */ } finally { busy = false; }
        });
      }
    } catch (error) {
      problem.textContent = error.message;
    }
  };
  const form = h('form', {
    class: 'card', 'aria-label': 'Activity filters',
    onsubmit: (event) => {
      event.preventDefault();
      history.replaceState(null, '', `#/activity?${params()}`);
      load();
    },
  }, h('div', { class: 'form-row' },
    field('map', 'Map', map), field('kind', 'Kind', kind), field('since', 'Since', since),
    field('until', 'Until', until), field('side', 'Key side', side), field('key', 'Key (JSON array)', key),
    h('label', { for: 'activity-follow' }, 'Follow live', follow),
    h('button', { type: 'submit', class: 'primary' }, 'Show'),
    h('button', {
      type: 'button',
      onclick: () => {
        problem.textContent = '';
        if (!map.value || !side.value || !key.value.trim()) {
          problem.textContent = 'A row’s history needs the map, the key side and the key.';
          return;
        }
        location.hash = `#/history?map=${enc(map.value)}&side=${side.value}&key=${enc(key.value.trim())}`;
      },
    }, 'Row history')), problem);
  await load();
  return { title: 'Activity', element: h('section', {}, h('h1', {}, 'Activity'), form, results), leave: () => stop() };
}

// ---- a row's history ----

function imageTable(left, right, leftLabel, rightLabel) {
  const names = [...new Set([...Object.keys(left || {}), ...Object.keys(right || {})])];
  return h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, leftLabel), h('th', {}, rightLabel))),
    h('tbody', {}, names.map((name) => h('tr', {}, h('td', { class: 'mono' }, name),
      h('td', { class: 'mono' }, show(left?.[name])), h('td', { class: 'mono' }, show(right?.[name]))))));
}

export async function historyView() {
  const query = routeQuery();
  const map = query.get('map');
  const side = query.get('side');
  const key = query.get('key');
  const answer = await api('GET', `/api/v1/maps/${enc(map)}/rows?side=${enc(side)}&key=${enc(key)}`);
  const link = answer.link;
  const element = h('section', {},
    h('h1', {}, `History of ${map} row ${key} (${side})`),
    link ? h('div', { class: 'card' },
      h('h2', {}, 'Last synced images, both sides'),
      h('p', { class: 'muted' }, `ERP key ${JSON.stringify(link.erp_key)} ↔ CRM key ${JSON.stringify(link.crm_key)}; synced ${fmtTime(link.updated_at)}`),
      h('div', { class: 'grid-2' },
        h('div', {}, h('h2', {}, 'ERP'), imageTable(link.erp_image, null, 'value', '')),
        h('div', {}, h('h2', {}, 'CRM'), imageTable(link.crm_image, null, 'value', ''))))
      : h('p', { class: 'card' }, 'This row has no link (never synced both ways).'),
    h('h2', {}, 'Everything recorded about it, both sides'),
    activityTable(answer.history, 'Row history'),
    answer.errors.length ? [h('h2', {}, 'Its errors'), errorTable(answer.errors)] : '');
  return { title: 'Row history', element };
}

// ---- errors ----

function errorTable(errors, refresh, onDetailPage = false) {
  return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Errors' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Map'), h('th', {}, 'Class'), h('th', {}, 'Change'),
      h('th', {}, 'Message'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Next retry'), h('th', {}, 'Actions'))),
    h('tbody', {}, errors.map((error) => {
      const reason = h('input', { 'aria-label': `Reason to skip error ${error.id}`, placeholder: 'reason to skip', size: 16 });
      const open = !error.resolution;
      return h('tr', { 'data-error': error.id },
        h('td', {}, h('a', { href: `#/errors/${error.id}` }, `#${error.id}`)),
        h('td', {}, error.map), h('td', {}, error.class),
        h('td', { class: 'mono' }, `${error.change.op} ${error.change.side} ${JSON.stringify(error.change.key)}`),
        h('td', {}, error.message, error.field ? h('div', { class: 'muted' }, `field ${error.field}`) : ''),
        h('td', { class: 'num' }, error.attempts), h('td', {}, fmtTime(error.next_retry)),
        h('td', {}, open ? h('div', { class: 'actions' },
          h('button', {
            type: 'button', 'aria-label': `Retry error ${error.id}`,
            onclick: async () => {
              const result = await attempt(() => api('POST', `/api/v1/errors/${error.id}/retry`));
              if (result) toast(result.applied ? `error #${error.id} applied` : `error #${error.id} failed again: ${result.error || ''}`, !result.applied);
              if (refresh) refresh();
            },
          }, 'Retry'),
          reason,
          h('button', {
            type: 'button', 'aria-label': `Skip error ${error.id}`,
            onclick: async () => {
              if (!reason.value.trim()) {
                reason.setAttribute('aria-invalid', 'true');
                toast('Say why the change is skipped (it is recorded).', true);
                reason.focus();
                return;
              }
              if (await attempt(() => api('POST', `/api/v1/errors/${error.id}/skip`, { reason: reason.value }), `error #${error.id} skipped`) && refresh) refresh();
            },
          }, 'Skip'),
          error.conflict && !onDetailPage ? h('a', { href: `#/errors/${error.id}` }, 'Resolve…') : '')
          : `${error.resolution.kind} by ${error.resolution.by}`));
    }))));
}

export async function errorsView() {
  const query = routeQuery();
  const mapSelect = h('select', { id: 'errors-map' }, mapOptions(query.get('map'), 'every map'));
  const resolved = h('input', { type: 'checkbox', id: 'errors-resolved', checked: query.get('resolved') === '1' });
  const results = h('div');
  const load = async () => {
    const maps = mapSelect.value ? [mapSelect.value] : (live.state?.maps || (await api('GET', '/api/v1/maps')).maps).map((m) => m.name);
    const errors = [];
    for (const map of maps) {
      const answer = await api('GET', `/api/v1/maps/${enc(map)}/errors?limit=500${resolved.checked ? '&include_resolved=true' : ''}`);
      errors.push(...answer.errors);
    }
    errors.sort((a, b) => b.id - a.id);
    results.replaceChildren(errors.length ? errorTable(errors, load) : h('p', { class: 'card' }, 'No open errors.'));
  };
  const retryAll = h('button', {
    type: 'button',
    onclick: async () => {
      const maps = mapSelect.value ? [mapSelect.value] : (live.state?.maps || []).map((m) => m.name);
      for (const map of maps) {
        const answer = await attempt(() => api('POST', `/api/v1/maps/${enc(map)}/errors/retry`));
        if (answer && answer.retried) toast(`${map}: ${answer.applied} of ${answer.retried} applied`);
      }
      await load();
    },
  }, 'Retry all');
  const form = h('form', {
    class: 'card form-row', 'aria-label': 'Error filters',
    onsubmit: (event) => {
      event.preventDefault();
      history.replaceState(null, '', `#/errors?map=${enc(mapSelect.value)}${resolved.checked ? '&resolved=1' : ''}`);
      load();
    },
  }, h('label', { for: 'errors-map' }, 'Map', mapSelect),
  h('label', { for: 'errors-resolved' }, 'Include resolved', resolved),
  h('button', { type: 'submit', class: 'primary' }, 'Show'), retryAll);
  await load();
  // Counters move when errors are added or resolved elsewhere: reload then.
  let last = null;
  const stop = live.follow((state) => {
    const total = state.maps.reduce((sum, m) => sum + (m.open_errors || 0), 0);
    if (last !== null && total !== last) load().catch(() => {});
    last = total;
  });
  return { title: 'Errors', element: h('section', {}, h('h1', {}, 'Error queue'), form, results), leave: stop };
}

export async function errorDetailView(id) {
  const error = await api('GET', `/api/v1/errors/${id}`);
  const reload = () => window.dispatchEvent(new HashChangeEvent('hashchange'));
  const sections = [
    h('h1', {}, `Error #${error.id} · ${error.map}`),
    h('div', { class: 'card' },
      h('p', {}, h('strong', {}, error.class), ` — ${error.message}`),
      h('p', { class: 'muted' }, `attempts ${error.attempts}; first ${fmtTime(error.first_at)}; last ${fmtTime(error.last_attempt_at)}; next retry ${fmtTime(error.next_retry)}`),
      error.resolution ? h('p', {}, `Resolved: ${error.resolution.kind} by ${error.resolution.by}${error.resolution.reason ? ` (${error.resolution.reason})` : ''}`) : errorTable([error], reload, true),
      h('p', {}, keyLink(error.map, error.change.side, error.change.key), ' (the row’s history)')),
    h('h2', {}, `The change (${error.change.op} from ${error.change.side})`),
    h('div', { class: 'card' }, imageTable(error.change.before, error.change.after, 'before', 'after')),
  ];
  if (error.conflict) {
    const c = error.conflict;
    const names = [...new Set([c.erp_base, c.erp, c.crm_base, c.crm].flatMap((image) => Object.keys(image || {})))];
    const column = (title, image, other) => h('div', {}, h('h2', {}, title), h('table', {},
      h('tbody', {}, Object.keys(image || {}).map((name) => h('tr', { class: other && show(other[name]) !== show(image[name]) ? 'diff' : '' },
        h('td', { class: 'mono' }, name), h('td', { class: 'mono' }, show(image[name])))))));
    sections.push(h('h2', {}, 'Conflict: base and both sides'),
      h('p', { class: 'muted' }, `Fields changed on either side since the last sync are highlighted (${names.length} fields).`),
      h('div', { class: 'side-by-side', 'aria-label': 'Conflict images' },
        column('Base (last synced, ERP)', c.erp_base, null),
        column('ERP now', c.erp, c.erp_base),
        column('CRM now', c.crm, c.crm_base)),
      !error.resolution ? h('div', { class: 'actions card' },
        h('span', {}, 'Resolve:'),
        ['erp', 'crm'].map((side) => h('button', {
          type: 'button', class: 'primary',
          onclick: async () => {
            if (await attempt(() => api('POST', `/api/v1/errors/${error.id}/resolve`, { side }), `${side.toUpperCase()} row wins`)) reload();
          },
        }, `${side.toUpperCase()} wins`))) : '');
  }
  return { title: `Error #${id}`, element: h('section', {}, sections) };
}

// ---- alerts and subscribers ----

const WHEN = ['errors', 'queue-depth', 'lag', 'offline'];
const CLASSES = ['plugin-rejected', 'plugin-trapped', 'target-rejected', 'target-unavailable', 'dependency-missing', 'conflict'];

function ruleForm(rule, onSaved) {
  const editing = Boolean(rule);
  rule = rule || { name: '', when: 'errors', actions: ['notify'] };
  // The edit form and the new-rule form are on the page together: ids must differ.
  const id = (name) => `${editing ? 'edit-rule' : 'rule'}-${name}`;
  const name = h('input', { id: id('name'), value: rule.name, required: true, disabled: editing, size: 16 });
  const map = h('select', { id: id('map') }, mapOptions(rule.map, 'every map'));
  const when = h('select', { id: id('when') }, WHEN.map((w) => h('option', { value: w, selected: w === rule.when }, w)));
  const cls = h('select', { id: id('class') }, h('option', { value: '' }, 'any class'), CLASSES.map((c) => h('option', { value: c, selected: c === rule.class }, c)));
  const count = h('input', { id: id('count'), type: 'number', min: 1, value: rule.count ?? '', size: 6 });
  const windowInput = h('input', { id: id('window'), value: rule.window || '', placeholder: '15m', size: 6 });
  const threshold = h('input', { id: id('threshold'), type: 'number', min: 0, value: rule.threshold ?? '', size: 8 });
  const longer = h('input', { id: id('longer'), value: rule.longer_than || '', placeholder: '5m', size: 6 });
  const actions = ['notify', 'pause', 'stop'].map((action) => h('label', { for: id(`action-${action}`), class: 'check' },
    action, h('input', { type: 'checkbox', id: id(`action-${action}`), value: action, checked: rule.actions.includes(action) })));
  const problem = h('p', { class: 'error-text', role: 'alert' });
  const field = (key, label, input) => h('label', { for: id(key) }, label, input);
  return h('form', {
    class: 'card', 'aria-label': editing ? `Edit alert rule ${rule.name}` : 'New alert rule',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim(), when: when.value, actions: actions.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value) };
      if (map.value) body.map = map.value;
      if (when.value === 'errors') {
        if (cls.value) body.class = cls.value;
        if (count.value) body.count = Number(count.value);
        if (windowInput.value) body.window = windowInput.value.trim();
      }
      if (when.value === 'queue-depth' || when.value === 'lag') body.threshold = Number(threshold.value);
      if (when.value === 'offline') body.longer_than = longer.value.trim();
      try {
        if (editing) await api('PUT', `/api/v1/alerts/${enc(rule.name)}`, body);
        else await api('POST', '/api/v1/alerts', body);
        toast(`alert rule ${body.name} saved`);
        onSaved();
      } catch (error) {
        problem.textContent = error.message;
      }
    },
  }, h('h2', {}, editing ? `Edit ${rule.name}` : 'New alert rule'),
  h('div', { class: 'form-row' }, field('name', 'Name', name), field('map', 'Map', map), field('when', 'When', when),
    field('class', 'Error class', cls), field('count', 'Count', count), field('window', 'Window', windowInput),
    field('threshold', 'Threshold (changes or seconds)', threshold), field('longer', 'Offline longer than', longer)),
  h('fieldset', {}, h('legend', {}, 'Actions'), actions),
  problem, h('button', { type: 'submit', class: 'primary' }, 'Save rule'));
}

function subscriberForm(onSaved) {
  const field = (key, label, input) => h('label', { for: `subscriber-${key}` }, label, input);
  const name = h('input', { id: 'subscriber-name', required: true, size: 14 });
  const url = h('input', { id: 'subscriber-url', required: true, type: 'url', size: 30, placeholder: 'https://hooks.example.com/dualwrite' });
  const secret = h('input', { id: 'subscriber-secret', required: true, type: 'password', autocomplete: 'new-password', size: 20 });
  const events = h('input', { id: 'subscriber-events', size: 24, placeholder: 'every event when empty' });
  const problem = h('p', { class: 'error-text', role: 'alert' });
  return h('form', {
    class: 'card', 'aria-label': 'New or replaced subscriber',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api('POST', '/api/v1/subscribers', {
          name: name.value.trim(), url: url.value.trim(), secret: secret.value,
          events: events.value.split(',').map((e) => e.trim()).filter(Boolean),
        });
        secret.value = '';
        toast(`subscriber ${name.value} saved`);
        onSaved();
      } catch (error) {
        problem.textContent = error.message;
      }
    },
  }, h('h2', {}, 'Add or replace a subscriber'),
  h('p', { class: 'muted' }, 'Saving a subscriber with an existing name replaces it (its secret too; secrets are never shown).'),
  h('div', { class: 'form-row' }, field('name', 'Name', name), field('url', 'Webhook URL', url),
    field('secret', 'Signing secret (16+ characters)', secret), field('events', 'Events (comma-separated)', events)),
  problem, h('button', { type: 'submit', class: 'primary' }, 'Save subscriber'));
}

export async function alertsView() {
  const element = h('section');
  const load = async () => {
    const [alerts, subscribers] = await Promise.all([api('GET', '/api/v1/alerts'), api('GET', '/api/v1/subscribers')]);
    const editSlot = h('div');
    const firing = new Set((alerts.firing || []).map((f) => f.rule));
    element.replaceChildren(
      h('h1', {}, 'Alerts'),
      h('h2', {}, 'Alert rules'),
      h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Alert rules' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Map'), h('th', {}, 'When'), h('th', {}, 'Condition'), h('th', {}, 'Actions'), h('th', {}, 'State'), h('th', {}, ''))),
        h('tbody', {}, alerts.rules.map((rule) => h('tr', {},
          h('td', {}, rule.name), h('td', {}, rule.map || 'every map'), h('td', {}, rule.when),
          h('td', {}, [rule.class, rule.count && `${rule.count} in ${rule.window}`, rule.threshold !== undefined && `≥ ${rule.threshold}`, rule.longer_than && `> ${rule.longer_than}`].filter(Boolean).join(', ')),
          h('td', {}, rule.actions.join(', ')), h('td', {}, firing.has(rule.name) ? h('span', { class: 'badge error' }, 'firing') : 'quiet'),
          h('td', {}, h('div', { class: 'actions' },
            h('button', { type: 'button', 'aria-label': `Edit alert rule ${rule.name}`, onclick: () => { editSlot.replaceChildren(ruleForm(rule, load)); editSlot.querySelector('select, input:not([disabled])').focus(); } }, 'Edit'),
            h('button', {
              type: 'button', class: 'danger', 'aria-label': `Delete alert rule ${rule.name}`,
              onclick: async () => { if (window.confirm(`Delete alert rule ${rule.name}?`) && await attempt(() => api('DELETE', `/api/v1/alerts/${enc(rule.name)}`), `rule ${rule.name} deleted`)) load(); },
            }, 'Delete')))))))),
      editSlot,
      ruleForm(null, load),
      h('h2', {}, 'Notification subscribers'),
      h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Subscribers' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'URL'), h('th', {}, 'Events'), h('th', {}, ''))),
        h('tbody', {}, subscribers.subscribers.map((s) => h('tr', {},
          h('td', {}, s.name), h('td', { class: 'mono' }, s.url), h('td', {}, (s.events || []).join(', ') || 'every event'),
          h('td', {}, h('button', {
            type: 'button', class: 'danger', 'aria-label': `Delete subscriber ${s.name}`,
            onclick: async () => { if (window.confirm(`Delete subscriber ${s.name}?`) && await attempt(() => api('DELETE', `/api/v1/subscribers/${enc(s.name)}`), `subscriber ${s.name} deleted`)) load(); },
          }, 'Delete'))))))),
      subscriberForm(load));
  };
  await load();
  return { title: 'Alerts', element };
}

// ---- plugins ----

export async function pluginsView() {
  const answer = await api('GET', '/api/v1/plugins');
  const element = h('section', {},
    h('h1', {}, 'Plugins'),
    h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Plugins' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Map'), h('th', {}, 'Plugin'), h('th', {}, 'Version'), h('th', {}, 'World'),
        h('th', {}, 'Content hash (SHA-256)'), h('th', { class: 'num' }, 'Calls'), h('th', { class: 'num' }, 'Changes'),
        h('th', { class: 'num' }, 'Trapped'), h('th', {}, 'State'), h('th', {}, 'History'))),
      h('tbody', {}, answer.plugins.map((p) => h('tr', {},
        h('td', {}, h('a', { href: `#/maps/${enc(p.map)}` }, p.map)), h('td', {}, `${p.name} (${p.file})`), h('td', {}, p.version),
        h('td', {}, p.world_version), h('td', { class: 'mono' }, p.hash), h('td', { class: 'num' }, fmtNumber(p.calls)),
        h('td', { class: 'num' }, fmtNumber(p.changes)), h('td', { class: 'num' }, fmtNumber(p.trapped_changes)),
        h('td', {}, p.quarantined ? h('span', { class: 'badge error', title: p.quarantined }, 'quarantined') : 'ok'),
        h('td', {}, h('a', { href: `#/maps/${enc(p.map)}`, 'aria-label': `Versions and rollback of ${p.map}` }, 'versions, rollback'))))))),
    h('p', { class: 'muted' }, 'Each map’s config and plugin history, with rollback, is on its map page.'));
  return { title: 'Plugins', element };
}
