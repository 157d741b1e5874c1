// The dependency graph of the maps as an SVG picture: a map is drawn right of every
// map it depends on (columns by longest dependency chain), an arrow from each parent to
// its dependant, each box coloured by the map's state, which follows the engine live.
import { api, h, live } from './api.js';

const BOX_W = 200;
const BOX_H = 52;
const GAP_X = 90;
const GAP_Y = 26;
const PAD = 20;

/** Column of each map: 0 for maps with no dependencies, else 1 + the deepest parent. */
function columns(maps) {
  const byName = new Map(maps.map((m) => [m.name, m]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle (the config loader refuses them)
    seen.add(name);
    const parents = (byName.get(name)?.depends_on || []).filter((p) => byName.has(p));
    const d = parents.length ? 1 + Math.max(...parents.map((p) => visit(p, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  for (const m of maps) visit(m.name, new Set());
  return depth;
}

export async function graphView() {
  const { maps } = await api('GET', '/api/v1/graph');
  const depth = columns(maps);
  const perColumn = [];
  const position = new Map();
  for (const m of maps) {
    const c = depth.get(m.name);
    perColumn[c] = (perColumn[c] || 0) + 1;
    position.set(m.name, { x: PAD + c * (BOX_W + GAP_X), y: PAD + (perColumn[c] - 1) * (BOX_H + GAP_Y) });
  }
  const width = PAD * 2 + perColumn.length * BOX_W + Math.max(0, perColumn.length - 1) * GAP_X;
  const height = PAD * 2 + Math.max(1, ...perColumn) * (BOX_H + GAP_Y) - GAP_Y;
  const edges = [];
  for (const m of maps) {
    for (const parent of m.depends_on) {
      const from = position.get(parent);
      const to = position.get(m.name);
      if (!from || !to) continue;
      const x1 = from.x + BOX_W;
      const y1 = from.y + BOX_H / 2;
      const x2 = to.x - 6;
      const y2 = to.y + BOX_H / 2;
      const mid = (x1 + x2) / 2;
      edges.push(h('path', { class: 'edge', d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' },
        h('title', {}, `${m.name} depends on ${parent}`)));
    }
  }
  const states = new Map();
  const nodes = maps.map((m) => {
    const p = position.get(m.name);
    const state = h('text', { class: 'state', x: p.x + 10, y: p.y + 40 }, m.enabled ? (m.mode || 'not running') : 'disabled');
    const group = h('g', { class: `node ${m.enabled ? (m.mode || 'stopped') : 'disabled'}`, 'data-map': m.name },
      h('title', {}, `${m.name}: ${m.erp_entity} ↔ ${m.crm_entity}`),
      h('rect', { x: p.x, y: p.y, width: BOX_W, height: BOX_H, rx: 6 }),
      h('text', { x: p.x + 10, y: p.y + 21 }, m.name),
      state);
    states.set(m.name, { group, state, enabled: m.enabled });
    return group;
  });
  const svg = h('svg', {
    xmlns: 'http://www.w3.org/2000/svg', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-labelledby': 'graph-title',
  },
  h('title', { id: 'graph-title' }, `Dependency graph of ${maps.length} maps; arrows point from a map to the maps that depend on it`),
  h('defs', {}, h('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    h('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#8a97aa' }))),
  edges, nodes);
  const list = h('ul', { class: 'muted' }, maps.map((m) => h('li', {},
    h('a', { href: `#/maps/${encodeURIComponent(m.name)}` }, m.name),
    m.depends_on.length ? ` depends on ${m.depends_on.join(', ')}` : ' depends on no other map')));
  const stop = live.follow((stateDoc) => {
    for (const map of stateDoc.maps) {
      const node = states.get(map.name);
      if (!node || !node.enabled) continue;
      node.group.setAttribute('class', `node ${map.mode}`);
      node.state.textContent = map.mode;
    }
  });
  const element = h('section', { class: 'graph' }, h('h1', {}, 'Map dependencies'),
    h('p', { class: 'muted' }, 'A map syncs after the maps it depends on (its lookups need their rows). Boxes show each map’s state live.'),
    svg, h('h2', {}, 'As a list'), list);
  return { title: 'Dependencies', element, leave: stop };
}
