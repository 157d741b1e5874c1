// A map's page: state and actions, plugin, field mappings and filters as the plugin
// describes them, the editor of a declarative map's config (validated by the plugin,
// in force without restart), the config history with rollback, and transitions.
import { api, attempt, badge, fmtTime, h, live, show, toast } from './api.js';
import { mapActions } from './views.js';

const enc = encodeURIComponent;
const ARROWS = { both: '↔', 'to-crm': '→', 'to-erp': '←' };

/** A value map as text: one pair per line, `erp = crm`, JSON for non-text values. */
function pairsToText(pairs) {
  // Text is written bare when it reads back as the same text ("yes", not "10" or "true").
  const side = (value) => (typeof value === 'string' && value !== '' && !/^\s|\s$| = /.test(value) && parseValue(value) === value
    ? value : JSON.stringify(value));
  return (pairs || []).map((pair) => `${side(pair.erp)} = ${side(pair.crm)}`).join('\n');
}

function parseValue(text) {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch {
    return trimmed;
  }
}

function textToPairs(text, line) {
  const pairs = [];
  for (const [index, raw] of text.split('\n').entries()) {
    if (!raw.trim()) continue;
    const at = raw.indexOf(' = ');
    if (at < 0) throw new Error(`line ${line + 1}, value map row ${index + 1}: write "erp value = crm value"`);
    pairs.push({ erp: parseValue(raw.slice(0, at)), crm: parseValue(raw.slice(at + 3)) });
  }
  return pairs;
}

function mappingsTable(descriptor) {
  return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Field mappings' },
    h('thead', {}, h('tr', {}, h('th', {}, `ERP (${descriptor.erp.entity})`), h('th', {}, 'Direction'),
      h('th', {}, `CRM (${descriptor.crm.entity})`), h('th', {}, 'Transform'))),
    h('tbody', {}, descriptor.mappings.map((m) => h('tr', {},
      h('td', { class: 'mono' }, m.erp_field || '–'),
      h('td', { title: m.direction }, `${ARROWS[m.direction] || ''} ${m.direction}`),
      h('td', { class: 'mono' }, m.crm_field || '–'), h('td', {}, m.transform))))));
}

/** The structured editor of a declarative config. */
function declarativeEditor(name, config, onSaved) {
  const problem = h('p', { class: 'error-text', role: 'alert', id: 'config-problem' });
  const filters = config.filters || {};
  const filterInput = (side) => h('input', {
    id: `filter-${side}`, name: `filter-${side}`, value: filters[side] || '', size: 60,
    'aria-describedby': 'config-problem', spellcheck: 'false',
    placeholder: side === 'erp' ? 'e.g. DATAAREAID == "usmf"' : 'e.g. msdyn_company == "usmf"',
  });
  const erpFilter = filterInput('erp');
  const crmFilter = filterInput('crm');
  const lines = (config.fields || []).map((line, index) => {
    const direction = h('select', { id: `line-${index}-direction`, 'aria-label': `Direction of line ${index + 1} (${line.erp || '–'} / ${line.crm || '–'})` },
      ['both', 'to-crm', 'to-erp'].map((d) => h('option', { value: d, selected: (line.direction || 'both') === d }, `${ARROWS[d]} ${d}`)));
    const defaultInput = h('input', {
      id: `line-${index}-default`, size: 12, value: line.default === undefined ? '' : JSON.stringify(line.default),
      'aria-label': `Default of line ${index + 1} (JSON, empty for none)`, spellcheck: 'false',
    });
    const valueMap = h('textarea', {
      id: `line-${index}-value-map`, rows: Math.max(1, Math.min(6, (line.value_map || []).length)), cols: 30,
      'aria-label': `Value map of line ${index + 1} (one "erp = crm" pair per line)`, spellcheck: 'false',
    });
    valueMap.value = pairsToText(line.value_map);
    const kind = line.constant !== undefined ? `constant ${JSON.stringify(line.constant)}` : line.lookup ? (line.lookup.maps ? `lookup ${line.lookup.erp_entity || '?'} ↔ ${line.lookup.maps.map((m) => m.crm_entity).join(' | ')} (table in ${line.lookup.type_field})` : `lookup ${line.lookup.erp_entity} ↔ ${line.lookup.crm_entity}`)
      : line.erp_kind || line.crm_kind ? `${line.erp_kind || line.kind || 'text'} ↔ ${line.crm_kind || line.kind || 'text'}` : (line.kind || 'text');
    return { line, index, direction, defaultInput, valueMap, row: h('tr', { 'data-line': index },
      h('td', { class: 'num' }, index + 1), h('td', { class: 'mono' }, line.erp || '–'), h('td', {}, direction),
      h('td', { class: 'mono' }, line.crm || '–'), h('td', { class: 'muted' }, kind),
      h('td', {}, defaultInput), h('td', {}, line.lookup || line.constant !== undefined ? h('span', { class: 'muted' }, '–') : valueMap)) };
  });
  const reason = h('input', { id: 'config-reason', size: 40, placeholder: 'why (recorded in the activity log)' });
  const clearMarks = () => {
    for (const input of [erpFilter, crmFilter, ...lines.flatMap((l) => [l.direction, l.defaultInput, l.valueMap])]) input.removeAttribute('aria-invalid');
  };
  const markPath = (path) => {
    let target = null;
    const filter = /^\/filters\/(erp|crm)/.exec(path || '');
    const line = /^\/fields\/(\d+)(?:\/([a-z_]+))?/.exec(path || '');
    if (filter) target = filter[1] === 'erp' ? erpFilter : crmFilter;
    else if (line && lines[Number(line[1])]) {
      const l = lines[Number(line[1])];
      target = line[2] === 'direction' ? l.direction : line[2] === 'default' ? l.defaultInput : line[2] === 'value_map' ? l.valueMap : l.direction;
    }
    if (target) {
      target.setAttribute('aria-invalid', 'true');
      target.focus();
    }
  };
  const build = () => {
    const next = structuredClone(config);
    const f = {};
    if (erpFilter.value.trim()) f.erp = erpFilter.value.trim();
    if (crmFilter.value.trim()) f.crm = crmFilter.value.trim();
    if (Object.keys(f).length) next.filters = f;
    else delete next.filters;
    for (const l of lines) {
      const target = next.fields[l.index];
      if (l.direction.value === 'both' && !l.line.direction) delete target.direction;
      else target.direction = l.direction.value;
      const defaultText = l.defaultInput.value.trim();
      if (defaultText === '') delete target.default;
      else {
        try {
          target.default = JSON.parse(defaultText);
        } catch {
          l.defaultInput.setAttribute('aria-invalid', 'true');
          throw new Error(`line ${l.index + 1}: the default must be JSON ("text", 10, true)`);
        }
      }
      if (!l.line.lookup && l.line.constant === undefined) {
        const pairs = textToPairs(l.valueMap.value, l.index);
        if (pairs.length) target.value_map = pairs;
        else delete target.value_map;
      }
    }
    return next;
  };
  const form = h('form', {
    class: 'card', 'aria-label': 'Edit the map',
    onsubmit: async (event) => {
      event.preventDefault();
      clearMarks();
      problem.textContent = '';
      let next;
      try {
        next = build();
      } catch (error) {
        problem.textContent = error.message;
        return;
      }
      try {
        const answer = await api('PUT', `/api/v1/maps/${enc(name)}/config`, { config: next, reason: reason.value });
        toast(`${name}: config #${answer.record} in force`);
        onSaved();
      } catch (error) {
        problem.textContent = error.message;
        markPath(error.path);
      }
    },
  },
  h('h2', {}, 'Edit the map'),
  h('p', { class: 'muted' }, 'Validated by the plugin, then in force from the next change on, without a restart; recorded with who and why.'),
  h('fieldset', {}, h('legend', {}, 'Filters (CEL; a change passes when true; empty for none)'),
    h('div', { class: 'form-row' }, h('label', { for: 'filter-erp' }, 'ERP filter', erpFilter)),
    h('div', { class: 'form-row' }, h('label', { for: 'filter-crm' }, 'CRM filter', crmFilter))),
  h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Mapping lines' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'ERP field'), h('th', {}, 'Direction'), h('th', {}, 'CRM field'),
      h('th', {}, 'Carries'), h('th', {}, 'Default'), h('th', {}, 'Value map'))),
    h('tbody', {}, lines.map((l) => l.row)))),
  problem,
  h('div', { class: 'form-row' }, h('label', { for: 'config-reason' }, 'Reason', reason),
    h('button', { type: 'submit', class: 'primary' }, 'Apply')));
  return form;
}

function jsonEditor(name, config, onSaved) {
  const text = h('textarea', { id: 'config-json', rows: 16, spellcheck: 'false', 'aria-describedby': 'config-json-problem' });
  text.value = JSON.stringify(config, null, 2);
  const problem = h('p', { class: 'error-text', role: 'alert', id: 'config-json-problem' });
  return h('details', { class: 'card' }, h('summary', {}, 'Edit the config as JSON'),
    h('form', {
      'aria-label': 'Edit the config as JSON',
      onsubmit: async (event) => {
        event.preventDefault();
        problem.textContent = '';
        text.removeAttribute('aria-invalid');
        let parsed;
        try {
          parsed = JSON.parse(text.value);
        } catch (error) {
          problem.textContent = `not JSON: ${error.message}`;
          text.setAttribute('aria-invalid', 'true');
          return;
        }
        try {
          const answer = await api('PUT', `/api/v1/maps/${enc(name)}/config`, { config: parsed, reason: 'edited as JSON' });
          toast(`${name}: config #${answer.record} in force`);
          onSaved();
        } catch (error) {
          problem.textContent = error.message;
          text.setAttribute('aria-invalid', 'true');
        }
      },
    }, h('label', { for: 'config-json' }, 'Plugin config (JSON)', text), problem,
    h('button', { type: 'submit', class: 'primary' }, 'Apply JSON')));
}

function historyTable(name, config, onSaved) {
  const rollback = (to) => async () => {
    const answer = await attempt(() => api('POST', `/api/v1/maps/${enc(name)}/config/rollback`, to === undefined ? {} : { to }));
    if (answer) {
      toast(`${name}: rolled back (config #${answer.record} in force)`);
      onSaved();
    }
  };
  return h('div', {},
    h('h2', {}, 'Config and plugin history'),
    config.history.length === 0 ? h('p', { class: 'muted' }, 'No runtime changes: the map runs its config file’s config.') : [
      h('p', { class: 'actions' }, h('button', { type: 'button', onclick: rollback(undefined), disabled: config.config_source !== 'runtime' }, 'Roll back to the previous config'),
        h('span', { class: 'muted' }, `in force: ${config.config_source === 'runtime' ? 'a runtime change' : 'the config file’s config'}`)),
      h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Config history' },
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'When'), h('th', {}, 'By'), h('th', {}, 'Reason'),
          h('th', {}, 'Plugin'), h('th', {}, 'Hash'), h('th', {}, ''))),
        h('tbody', {}, [...config.history].reverse().map((record) => h('tr', {},
          h('td', {}, record.id), h('td', {}, fmtTime(record.at)), h('td', {}, record.by), h('td', {}, record.reason || '–'),
          h('td', {}, `${record.plugin_file} ${record.plugin_version}`), h('td', { class: 'mono' }, record.plugin_hash.slice(0, 12)),
          h('td', {}, record.in_force ? h('strong', {}, 'in force') : h('button', { type: 'button', 'aria-label': `Roll back ${name} to config ${record.id}`, onclick: rollback(record.id) }, 'Roll back to this')))))))]);
}

export async function mapView(name) {
  const element = h('section');
  const head = h('div', { class: 'card' });
  let mode;
  const load = async () => {
    const [detail, config] = await Promise.all([
      api('GET', `/api/v1/maps/${enc(name)}`),
      api('GET', `/api/v1/maps/${enc(name)}/config`).catch((error) => ({ error: error.message })),
    ]);
    mode = undefined;
    const errorMode = h('select', {
      id: 'error-mode',
      onchange: async () => {
        const ok = await attempt(() => api('PUT', `/api/v1/maps/${enc(name)}/error-mode`, { mode: errorMode.value }),
          `${name}: on an error, ${errorMode.value === 'block' ? 'pause the map' : 'go on'}`);
        if (!ok) errorMode.value = detail.error_mode;
        else detail.error_mode = errorMode.value;
      },
    },
    h('option', { value: 'continue', selected: detail.error_mode === 'continue' }, 'continue: the change waits in the error queue, the map goes on'),
    h('option', { value: 'block', selected: detail.error_mode === 'block' }, 'block: pause the map at the error, later changes queue in order'));
    const parts = [h('h1', {}, `Map ${name}`), head,
      detail.running ? h('div', { class: 'card form-row' }, h('label', { for: 'error-mode' }, 'On an error', errorMode)) : ''];
    if (config.error) {
      parts.push(h('p', { class: 'card error-text' }, config.error));
    } else {
      const d = config.descriptor;
      parts.push(
        h('div', { class: 'card' },
          h('h2', {}, 'Plugin'),
          h('p', {}, `${d.name} ${d.version} — ${d.summary}`),
          h('p', { class: 'muted' }, `file ${config.plugin.file}; world ${config.plugin.world_version}; sha-256 `, h('span', { class: 'mono' }, config.plugin.hash)),
          h('p', { class: 'muted' }, `${config.erp.side}.${config.erp.entity} [${config.erp.key.join(', ')}] ${ARROWS[config.direction]} ${config.crm.side}.${config.crm.entity} [${config.crm.key.join(', ')}]; depends on ${config.depends_on.join(', ') || 'nothing'}`)),
        h('h2', {}, 'Field mappings'),
        mappingsTable(d),
        h('h2', {}, 'Filters'),
        h('p', {}, `ERP: `, h('code', {}, show(config.config.filters?.erp ?? 'none')), ' · CRM: ', h('code', {}, show(config.config.filters?.crm ?? 'none'))),
        config.declarative ? declarativeEditor(name, config.config, load) : h('p', { class: 'muted' }, 'This plugin is not declarative: its mappings are code. Its config can still be changed as JSON below.'),
        jsonEditor(name, config.config, load),
        historyTable(name, config, load));
    }
    parts.push(h('h2', {}, 'State changes'), h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'State changes' },
      h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'From'), h('th', {}, 'To'), h('th', {}, 'Cause'))),
      h('tbody', {}, detail.transitions.map((t) => h('tr', {}, h('td', {}, fmtTime(t.at)), h('td', {}, t.from || '–'), h('td', {}, t.to), h('td', {}, t.cause)))))));
    element.replaceChildren(...parts);
  };
  await load();
  const stop = live.follow((state) => {
    const map = state.maps.find((m) => m.name === name);
    if (!map) return;
    const c = map.counters || {};
    const summary = `ERP → CRM ${c.written_to_crm ?? 0} · CRM → ERP ${c.written_to_erp ?? 0} · filtered ${c.filtered ?? 0} · conflicts ${c.conflicts ?? 0} · open errors ${map.open_errors} · queue ${map.queue_depth}`;
    if (mode !== map.mode) {
      mode = map.mode;
      head.replaceChildren(h('p', {}, 'State ', badge(map.mode), ' ', h('span', { class: 'muted', id: 'map-counters' }, summary)),
        mapActions(name, map.running ? map.mode : null));
    } else {
      const counters = head.querySelector('#map-counters');
      if (counters) counters.textContent = summary;
    }
  });
  return { title: `Map ${name}`, element, leave: stop };
}
