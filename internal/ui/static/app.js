// peerctl dashboard. Plain JavaScript and SVG, no library, nothing fetched
// from elsewhere. It reads the same API as the CLI (internal/api/api.go):
//
//   GET  /v1/events?cluster=1   live events of every node (SSE)
//   GET  /v1/members?node=VIEW  the viewpoint's member list (polled too)
//   GET  /v1/faults?all=1       every node's fault rules: cut and faulty links
//   GET  /v1/info?node=X        figures per node
//   GET  /v1/leader             the coordination group's leader, if the daemon has one
//   PUT  /v1/kv/KEY?node=X, GET /v1/kv/KEY?all=1, POST /v1/kill?node=X,
//   POST /v1/faults, DELETE /v1/faults
//
// Every node element carries data-node and data-status (its status as the
// viewpoint node sees it), for scripts and browser tests. A status change
// from an event also sets data-event-time (the event's time, ms since the
// epoch) and data-changed-at (when this page changed the element), so the
// delay from the daemon's declaration to the page can be measured.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  const STATUSES = ['alive', 'suspect', 'failed', 'left', 'leaving'];
  const MAX_KEYS = 12;      // rows in the key table
  const MAX_LOG = 60;       // lines in the event log
  const FLASH_MS = 450;     // how long a link shows a message

  const st = {
    self: '',             // the node this page is served by
    view: '',             // whose member list is drawn
    names: [],            // every member name ever seen, sorted
    status: new Map(),    // name -> status as view sees it
    viewSeq: 0,           // bumped when view changes: late answers are dropped
    apiOf: new Map(),     // name -> API address
    faultsView: null,     // FaultsView
    links: new Map(),     // "a|b" -> {cut, faulty, label}
    paused: new Set(),
    info: new Map(),      // name -> {info, at, prev, prevAt, wps, mps}
    writesEv: new Map(),  // name -> [times of write events in the last 5 s]
    flashes: new Map(),   // "a|b" -> until (ms)
    keys: [],             // [{key, at, versions: Map(node -> {version, latency})}]
    selected: new Set(),
    side: new Map(),      // name -> 'A' | 'B'
    leader: null,         // {leader, term} or null
    leaderAPI: true,      // false once /v1/leader answered 404
    roles: new Map(),     // name -> raft role (leader, voter, nonvoter), from /v1/leader
    events: false,        // the event stream is connected
    evAt: new Map(),      // member -> when a member event about it last arrived (ms)
  };

  // ---- API ---------------------------------------------------------------

  function token() { return sessionStorage.getItem('peerctl-token') || ''; }

  function headers(extra) {
    const h = Object.assign({ 'X-Peerctl-Client': 'dashboard' }, extra || {});
    const t = token();
    if (t) h['Authorization'] = 'Bearer ' + t;
    return h;
  }

  // api calls the daemon and returns the decoded JSON body; it throws an
  // Error carrying the API's error message and the status.
  async function api(method, path, body, type) {
    const opt = { method, headers: headers(), cache: 'no-store' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = type || 'application/json';
      opt.body = type ? body : JSON.stringify(body);
    }
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    opt.signal = ctl.signal;
    let r;
    try {
      r = await fetch(path, opt);
    } catch (e) {
      throw new Error(method + ' ' + path + ': ' + (e.name === 'AbortError' ? 'no answer in 8 s' : e.message));
    } finally {
      clearTimeout(timer);
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!r.ok) {
      const err = new Error((data && data.error) || (r.status + ' ' + text.slice(0, 200)));
      err.status = r.status;
      if (r.status === 401) needToken(err.message);
      throw err;
    }
    return data;
  }

  // needToken says the daemon wants an API token (401): the token field
  // takes it, and the page keeps it in this tab's sessionStorage.
  function needToken(msg) {
    $('conn').textContent = (token() ? 'token refused: ' : 'API token required: ') + msg;
    $('conn').className = 'pill bad';
    $('token').classList.add('want');
  }

  function q(path, node) {
    if (!node || node === st.self) return path;
    return path + (path.includes('?') ? '&' : '?') + 'node=' + encodeURIComponent(node);
  }

  // ---- rendering, throttled ------------------------------------------------

  let renderTimer = null;
  let renderAt = 0;
  // schedule renders within ms (0: as soon as possible), never more than
  // one pending: a burst of events costs one render.
  function schedule(ms) {
    const at = performance.now() + ms;
    if (renderTimer !== null && renderAt <= at) return;
    if (renderTimer !== null) clearTimeout(renderTimer);
    renderAt = at;
    renderTimer = setTimeout(() => { renderTimer = null; render(); }, ms);
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sel(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  const nodeEls = new Map();   // name -> {g, circle, label}
  const linkEls = new Map();   // "a|b" -> line
  let layoutKey = '';

  function pairKey(a, b) { return a < b ? a + '|' + b : b + '|' + a; }

  function layout() {
    const n = st.names.length;
    const cx = 400, cy = 400;
    const r = n <= 1 ? 0 : Math.min(300, 90 + n * 18);
    const pos = new Map();
    st.names.forEach((name, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      pos.set(name, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a), a });
    });
    return pos;
  }

  // rebuild redraws the SVG's elements when the member set changes.
  function rebuild() {
    const key = st.names.join(',');
    if (key === layoutKey) return;
    layoutKey = key;
    const pos = layout();
    const links = $('links'), nodes = $('nodes');
    $('graph').classList.toggle('large', st.names.length > 12);
    links.replaceChildren();
    nodes.replaceChildren();
    linkEls.clear();
    nodeEls.clear();
    const rad = st.names.length > 12 ? 16 : 24;
    const r = pos.size > 1 ? Math.hypot(pos.get(st.names[0]).x - 400, pos.get(st.names[0]).y - 400) : 0;
    const m = rad + 90;
    $('graph').setAttribute('viewBox', (400 - r - m) + ' ' + (400 - r - m + 30) + ' ' + (2 * (r + m)) + ' ' + (2 * (r + m) - 60));
    for (let i = 0; i < st.names.length; i++) {
      for (let j = i + 1; j < st.names.length; j++) {
        const a = pos.get(st.names[i]), b = pos.get(st.names[j]);
        const line = sel('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: 'link' });
        line.setAttribute('data-link', st.names[i] + '|' + st.names[j]);
        links.appendChild(line);
        linkEls.set(st.names[i] + '|' + st.names[j], line);
      }
    }
    for (const name of st.names) {
      const p = pos.get(name);
      const g = sel('g', { class: 'node', 'data-node': name, 'data-status': 'unknown', tabindex: '0' });
      const circle = sel('circle', { cx: p.x, cy: p.y, r: rad });
      const lx = p.x + Math.cos(p.a) * (rad + 14), ly = p.y + Math.sin(p.a) * (rad + 14);
      const label = sel('text', { x: lx, y: ly + 5, 'text-anchor': Math.abs(Math.cos(p.a)) < 0.3 ? 'middle' : (Math.cos(p.a) > 0 ? 'start' : 'end') });
      label.textContent = name;
      const title = sel('title');
      g.append(circle, label, title);
      g.addEventListener('click', () => toggleSelected(name));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') toggleSelected(name); });
      nodes.appendChild(g);
      nodeEls.set(name, { g, circle, label, title });
    }
  }

  function toggleSelected(name) {
    if (st.selected.has(name)) st.selected.delete(name); else st.selected.add(name);
    schedule(0);
  }

  // setStatus changes one node element's status now (not at the next
  // render), so a failure shows as soon as its event arrives.
  function setStatus(name, status, eventTime) {
    const e = nodeEls.get(name);
    if (!e) return;
    if (e.g.getAttribute('data-status') === status) return;
    e.g.setAttribute('data-status', status);
    if (eventTime) e.g.setAttribute('data-event-time', String(eventTime));
    else e.g.removeAttribute('data-event-time');
    e.g.setAttribute('data-changed-at', String(Date.now()));
  }

  // Render costs, on <body> as data-renders and data-render-max-ms, so a
  // test can check that a large cluster stays smooth.
  let renders = 0, renderMax = 0, tablesAt = -1e9;

  function render() {
    const t0 = performance.now();
    rebuild();
    const now = Date.now();
    for (const [name, e] of nodeEls) {
      const status = st.status.get(name) || 'unknown';
      setStatus(name, status, null);
      let cls = 'node';
      if (name === st.view) cls += ' viewpoint';
      if (st.selected.has(name)) cls += ' selected';
      if (st.paused.has(name)) cls += ' paused';
      if (st.leader && st.leader.leader === name) cls += ' leader';
      e.g.setAttribute('class', cls);
      e.title.textContent = name + ': ' + status + ' as ' + st.view + ' sees it' + (st.paused.has(name) ? ' (paused)' : '');
    }
    for (const [k, line] of linkEls) {
      const l = st.links.get(k);
      let cls = 'link';
      if (l && l.cut) cls += ' cut';
      else if (l && l.faulty) cls += ' faulty';
      const [a, b] = k.split('|');
      if ((st.status.get(a) || 'unknown') !== 'alive' || (st.status.get(b) || 'unknown') !== 'alive') cls += ' down';
      const until = st.flashes.get(k);
      if (until && until > now) cls += ' active';
      else if (until) st.flashes.delete(k);
      if (line.getAttribute('class') !== cls) line.setAttribute('class', cls);
    }
    if (st.flashes.size) schedule(120);
    renderHeader();
    renderSelection();
    // The tables are rebuilt at most twice a second: with 25 nodes and a
    // steady write load they are most of a render's cost.
    if (performance.now() - tablesAt >= 500) {
      tablesAt = performance.now();
      renderKeys();
      renderStats();
    } else {
      schedule(500);
    }
    renders++;
    renderMax = Math.max(renderMax, performance.now() - t0);
    document.body.dataset.renders = String(renders);
    document.body.dataset.renderMaxMs = renderMax.toFixed(1);
  }

  function renderHeader() {
    $('view-name').textContent = st.view || '…';
    const vs = $('view');
    const want = st.names.join(',');
    if (vs.dataset.names !== want) {
      vs.replaceChildren(...st.names.map((n) => el('option', { value: n }, n + (n === st.self ? ' (this page’s node)' : ''))));
      vs.dataset.names = want;
      const pn = $('put-node');
      pn.replaceChildren(...st.names.map((n) => el('option', { value: n }, n)));
      pn.value = st.self;
    }
    if (vs.value !== st.view) vs.value = st.view;
    const ld = $('leader');
    if (st.leader && st.leader.leader) {
      ld.textContent = 'leader ' + st.leader.leader + (st.leader.term !== undefined ? ' (term ' + st.leader.term + ')' : '');
      ld.classList.remove('hidden');
    } else {
      ld.classList.add('hidden');
    }
  }

  function renderSelection() {
    const chips = st.names.filter((n) => st.selected.has(n));
    const s = $('selected');
    const want = chips.join(',') || '-';
    if (s.dataset.v !== want) {
      s.dataset.v = want;
      s.replaceChildren(el('span', { class: 'hint' }, chips.length ? 'selected:' : 'select nodes in the picture (click)'),
        ...chips.map((n) => el('span', { class: 'chip' }, n)));
    }
    // The side buttons are made once per member set and updated in place,
    // so a click never lands on a button being replaced.
    const sides = $('sides');
    const names = st.names.join(',');
    if (sides.dataset.names !== names) {
      sides.dataset.names = names;
      sides.replaceChildren(...st.names.map((n) => {
        const b = el('button', { type: 'button', 'data-side-node': n });
        b.addEventListener('click', () => {
          const cur = st.side.get(n) || '';
          const next = cur === '' ? 'A' : cur === 'A' ? 'B' : '';
          if (next) st.side.set(n, next); else st.side.delete(n);
          renderSelection();
        });
        return b;
      }));
    }
    for (const b of sides.children) {
      const n = b.getAttribute('data-side-node');
      const side = st.side.get(n) || '';
      if (b.getAttribute('data-side') === side && b.textContent) continue;
      b.setAttribute('data-side', side);
      b.className = 'chip side-' + (side || 'none');
      b.textContent = (side ? side + ' ' : '– ') + n;
    }
  }

  function shortVersion(v) {
    // "2026-11-29T15:04:05.123Z+0@node1" -> "15:04:05.123+0@node1"
    const m = /T([0-9:.]+)Z(\+\d+)@(.*)$/.exec(v || '');
    return m ? m[1] + m[2] + '@' + m[3] : (v || '');
  }

  // cmpVersion orders versions as the store does: timestamp, then logical
  // counter, then node.
  function cmpVersion(a, b) {
    const pa = /^(.*)Z\+(\d+)@(.*)$/.exec(a || ''), pb = /^(.*)Z\+(\d+)@(.*)$/.exec(b || '');
    if (!pa || !pb) return (a || '') < (b || '') ? -1 : (a || '') > (b || '') ? 1 : 0;
    if (pa[1] !== pb[1]) return pa[1] < pb[1] ? -1 : 1;
    if (+pa[2] !== +pb[2]) return +pa[2] < +pb[2] ? -1 : 1;
    return pa[3] < pb[3] ? -1 : pa[3] > pb[3] ? 1 : 0;
  }

  function renderKeys() {
    const t = $('keys');
    const names = st.names;
    const hv = names.join(',');
    if (t.dataset.h !== hv) {
      t.dataset.h = hv;
      const tr = el('tr');
      tr.append(el('th', {}, 'key'), ...names.map((n) => el('th', {}, n)));
      t.tHead.replaceChildren(tr);
    }
    const rows = [];
    for (const k of st.keys) {
      let newest = '';
      for (const v of k.versions.values()) if (v.version && cmpVersion(v.version, newest) > 0) newest = v.version;
      const tr = el('tr', { 'data-key': k.key });
      tr.appendChild(el('td', { class: 'key' }, k.key));
      for (const n of names) {
        const v = k.versions.get(n);
        let cls = 'missing', text = '—';
        if (v && v.version) {
          cls = v.version === newest ? 'same' : 'differs';
          const lat = v.latency === 'write' ? 'written' : v.latency !== undefined && v.latency !== null ? v.latency + ' ms' : 'here';
          text = v.version === newest ? '✓ ' + lat : '≠ ' + shortVersion(v.version);
        }
        const td = el('td', { class: cls, 'data-node': n, 'data-version': (v && v.version) || '' }, text);
        td.title = v && v.version ? n + ' holds ' + v.version + (v.version === newest ? '' : ', not the newest ' + newest) : n + ' does not hold it (yet)';
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    t.tBodies[0].replaceChildren(...rows);
  }

  function fmt(n, d) { return n === undefined || n === null || Number.isNaN(n) ? '–' : n.toFixed(d || 0); }

  function renderStats() {
    const rows = st.names.map((n) => {
      const i = st.info.get(n) || {};
      const info = i.info;
      const ev = st.writesEv.get(n);
      const wps = st.events && ev ? ev.length / 5 : i.wps;
      const rules = ((st.faultsView && st.faultsView.nodes) || []).find((x) => x.node === n);
      const tr = el('tr', { 'data-node': n });
      const status = st.status.get(n) || 'unknown';
      tr.append(
        el('td', {}, n + (n === st.self ? ' ★' : '')),
        el('td', { class: 'st-' + status }, status),
        roleCell(n),
        el('td', {}, info ? String(info.store.keys) : '–'),
        el('td', {}, fmt(wps, 1)),
        el('td', {}, fmt(i.mps, 1)),
        el('td', {}, info ? String(info.replication.lag_ms) : '–'),
        el('td', {}, info && info.rss_bytes ? (info.rss_bytes / 1048576).toFixed(1) : '–'),
        el('td', { class: 'rules' }, rules ? (rules.error ? 'unreachable' : (rules.rules || []).map(describeRule).join('; ')) : ''),
      );
      return tr;
    });
    $('stats').tBodies[0].replaceChildren(...rows);
  }

  // roleCell is n's raft role as the viewpoint sees it; data-role holds it
  // ("" when unknown) for tests and styles.
  function roleCell(n) {
    const role = (st.leader && st.leader.leader === n ? 'leader' : st.roles.get(n)) || '';
    return el('td', { 'data-role': role }, role || '–');
  }

  function describeRule(r) {
    const to = r.peers && r.peers.length ? r.peers.join(',') : 'all';
    switch (r.kind) {
      case 'drop': return 'drops to ' + to;
      case 'delay': return 'delays to ' + to + ' ' + Math.round(r.delay / 1e6) + 'ms';
      case 'loss': return 'loses ' + Math.round(r.rate * 100) + '% to ' + to;
      case 'pause': return 'paused';
    }
    return r.kind;
  }

  // ---- state from the API ------------------------------------------------

  function addNames(list) {
    let changed = false;
    for (const n of list) {
      if (n && !st.names.includes(n)) { st.names.push(n); changed = true; }
    }
    if (changed) st.names.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    return changed;
  }

  async function pollMembers() {
    const seq = st.viewSeq, view = st.view, asked = Date.now();
    try {
      let ms = await api('GET', q('/v1/members', view));
      if (seq !== st.viewSeq) return;
      ms = ms || [];
      addNames(ms.map((m) => m.name));
      const seen = new Set();
      for (const m of ms) {
        // An event that arrived while this list was on its way is newer.
        if ((st.evAt.get(m.name) || 0) < asked) st.status.set(m.name, m.status);
        st.apiOf.set(m.name, m.api);
        seen.add(m.name);
      }
      for (const n of st.names) if (!seen.has(n)) st.status.set(n, 'unknown');
      $('conn').textContent = 'connected to ' + st.self;
      $('conn').className = 'pill ok';
      $('token').classList.remove('want');
    } catch (e) {
      if (seq !== st.viewSeq) return;
      if (view === st.self) { $('conn').textContent = 'no answer from ' + st.self + ': ' + e.message; $('conn').className = 'pill bad'; }
      for (const n of st.names) st.status.set(n, 'unknown');
      logLine({ kind: 'page', node: view, text: 'cannot read the member list of ' + view + ': ' + e.message });
    }
    schedule(0);
  }

  async function pollFaults() {
    try {
      const v = await api('GET', '/v1/faults?all=1');
      st.faultsView = v;
      const links = new Map(), paused = new Set();
      const mark = (a, b, kind, label) => {
        if (a === b || !a || !b) return;
        const k = pairKey(a, b);
        const l = links.get(k) || { cut: false, faulty: false, label: [] };
        if (kind === 'cut') l.cut = true; else l.faulty = true;
        if (label) l.label.push(label);
        links.set(k, l);
      };
      for (const nf of v.nodes || []) {
        addNames([nf.node]);
        for (const r of nf.rules || []) {
          const peers = r.peers && r.peers.length ? r.peers : st.names;
          if (r.kind === 'pause') { paused.add(nf.node); for (const p of st.names) mark(nf.node, p, 'cut'); continue; }
          for (const p of peers) mark(nf.node, p, r.kind === 'drop' ? 'cut' : 'faulty', describeRule(r));
        }
      }
      st.links = links;
      st.paused = paused;
      renderFaultList();
    } catch (e) {
      logLine({ kind: 'page', node: st.self, text: 'cannot read faults: ' + e.message });
    }
    schedule(0);
  }

  function renderFaultList() {
    const ul = $('fault-list');
    const faults = (st.faultsView && st.faultsView.faults) || [];
    ul.replaceChildren(...faults.map((f) => {
      const li = el('li', { 'data-fault': f.id });
      const b = el('button', { type: 'button', class: 'small' }, 'heal');
      b.addEventListener('click', () => heal(f.id));
      li.append(el('span', {}, f.id + ': ' + describeRequest(f.request) + (f.pending && f.pending.length ? ' (pending on ' + f.pending.join(',') + ')' : '') + ' '), b);
      return li;
    }));
  }

  function describeRequest(r) {
    switch (r.kind) {
      case 'partition': return 'partition ' + (r.groups || []).map((g) => g.join(',')).join(' / ');
      case 'delay': return 'delay ' + (r.nodes || []).join(',') + ' by ' + Math.round(r.delay / 1e6) + 'ms';
      case 'loss': return 'loss ' + Math.round(r.rate * 100) + '% ' + (r.nodes || []).join(',');
      default: return r.kind + ' ' + (r.nodes || []).join(',');
    }
  }

  let infoTurn = 0;
  // pollInfo asks a few nodes per call for their figures, so a 25-node
  // cluster costs a bounded number of requests per second.
  async function pollInfo() {
    const names = st.names.filter((n) => (st.status.get(n) || 'unknown') !== 'left');
    const batch = Math.min(names.length, 5);
    const jobs = [];
    for (let i = 0; i < batch; i++) {
      const n = names[(infoTurn + i) % names.length];
      jobs.push(api('GET', q('/v1/info', n)).then((info) => {
        const now = performance.now();
        const cur = st.info.get(n) || {};
        const msgs = info.replication.msgs_sent + info.replication.msgs_received;
        const next = { info, at: now, msgs, writes: info.writes || 0, wps: cur.wps, mps: cur.mps };
        if (cur.at && now > cur.at) {
          const dt = (now - cur.at) / 1000;
          next.mps = Math.max(0, (msgs - cur.msgs) / dt);
          next.wps = Math.max(0, (next.writes - cur.writes) / dt);
        }
        st.info.set(n, next);
      }, () => { st.info.set(n, {}); }));
    }
    infoTurn = names.length ? (infoTurn + batch) % names.length : 0;
    await Promise.all(jobs);
    schedule(300);
  }

  async function pollLeader() {
    if (!st.leaderAPI) return;
    const seq = st.viewSeq;
    try {
      // The coordination group as the viewpoint sees it (api.Leader):
      // leader, term, and each server's role.
      const l = await api('GET', q('/v1/leader', st.view));
      if (seq !== st.viewSeq) return; // the viewpoint changed meanwhile
      st.leader = l && l.leader ? { leader: l.leader, term: l.term } : null;
      st.roles = new Map(((l && l.servers) || []).map((x) => [x.name, x.role]));
    } catch (e) {
      // 404 from this page's own node: no coordination group here.
      if ((e.status === 404 || e.status === 405) && st.view === st.self) st.leaderAPI = false;
    }
    schedule(300);
  }

  // pollKeys asks every node for the keys in the table that some node
  // still lacks or holds differently (GET ?all=1), a few at a time.
  async function pollKeys() {
    const todo = st.keys.filter((k) => !k.settled).slice(0, 3);
    await Promise.all(todo.map(async (k) => {
      try {
        const all = await api('GET', '/v1/kv/' + encodeURIComponent(k.key) + '?all=1');
        const now = Date.now();
        let newest = '';
        for (const nk of all) {
          if (nk.kv && cmpVersion(nk.kv.version, newest) > 0) newest = nk.kv.version;
        }
        let same = 0, alive = 0;
        for (const nk of all) {
          addNames([nk.node]);
          if (nk.status === 'alive') alive++;
          if (!nk.kv) continue;
          const cur = k.versions.get(nk.node);
          if (!cur || cur.version !== nk.kv.version) {
            // Not from an apply event: the latency is at most what the
            // page saw, from the write's time to this answer.
            const lat = Math.max(0, now - new Date(nk.kv.time).getTime());
            k.versions.set(nk.node, { version: nk.kv.version, latency: cur && cur.version === nk.kv.version ? cur.latency : (nk.kv.origin === nk.node ? 'write' : '≤' + lat) });
          }
          if (nk.kv.version === newest && nk.status === 'alive') same++;
        }
        k.settled = alive > 0 && same === alive && now - k.at > 3000;
      } catch (e) { /* a node may be down: try again later */ }
    }));
    schedule(200);
  }

  function trackKey(key, node, version, latency) {
    let k = st.keys.find((x) => x.key === key);
    if (!k) {
      k = { key, at: Date.now(), versions: new Map(), settled: false };
      st.keys.unshift(k);
      if (st.keys.length > MAX_KEYS) st.keys.length = MAX_KEYS;
    }
    const cur = k.versions.get(node);
    if (!cur || cmpVersion(version, cur.version) >= 0) {
      k.versions.set(node, { version, latency });
    }
    k.settled = false;
  }

  // ---- events --------------------------------------------------------------

  function logLine(ev) {
    const ol = $('events');
    const t = ev.time ? new Date(ev.time) : new Date();
    const hh = t.toISOString().slice(11, 23);
    let text = ev.text;
    if (!text) {
      switch (ev.kind) {
        case 'member': text = ev.member + ' ' + ev.status + (ev.detected_by ? ' (detected by ' + ev.detected_by + ')' : ''); break;
        case 'write': text = 'write ' + ev.key + ' ' + shortVersion(ev.version); break;
        case 'apply': text = 'apply ' + ev.key + ' from ' + ev.from + ' after ' + Math.round(ev.latency_ms || 0) + ' ms'; break;
        case 'sync': text = 'sync with ' + ev.peer + ': sent ' + (ev.sent || 0) + ', received ' + (ev.received || 0) + (ev.error ? ' (' + ev.error + ')' : ''); break;
        case 'fault': text = 'fault ' + (ev.action || '') + ' ' + (ev.id || '') + ': ' + (ev.text || ((ev.fault || '') + ' ' + (ev.parties || []).join(','))) + (ev.reason ? ' (' + ev.reason + ')' : ''); break;
        case 'stream': text = 'stream of ' + ev.peer + ' ' + ev.status + (ev.reason ? ': ' + ev.reason : ''); break;
        case 'dropped': text = 'stream dropped: ' + (ev.reason || ''); break;
        case 'leader': text = (ev.leader ? 'leader ' + ev.leader : 'no leader') + ' term ' + ev.term; break;
        default: text = JSON.stringify(ev);
      }
    }
    const li = el('li', { class: 'ev-' + ev.kind }, hh + ' ' + (ev.node || '') + ' ' + text);
    ol.insertBefore(li, ol.firstChild);
    while (ol.childElementCount > MAX_LOG) ol.removeChild(ol.lastChild);
  }

  function flash(a, b) {
    if (!a || !b || a === b) return;
    st.flashes.set(pairKey(a, b), Date.now() + FLASH_MS);
  }

  // Quiet kinds are not logged one by one above this many per second.
  let logBudget = { at: 0, n: 0 };
  function logSome(ev) {
    const now = Date.now();
    if (now - logBudget.at > 1000) logBudget = { at: now, n: 0 };
    if (++logBudget.n <= 20) logLine(ev);
  }

  function onEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    const t = ev.time ? Date.parse(ev.time) : 0;
    if (ev.node) addNames([ev.node]);
    switch (ev.kind) {
      case 'member':
        addNames([ev.member]);
        logLine(ev);
        if (ev.node === st.view) {
          st.evAt.set(ev.member, Date.now());
          st.status.set(ev.member, ev.status);
          rebuild();
          setStatus(ev.member, ev.status, t);
          schedule(0);
        }
        return;
      case 'write': {
        const a = st.writesEv.get(ev.node) || [];
        // A sampled event stands for those left out before it too.
        for (let i = 0; i <= Math.min(ev.sampled || 0, 10000); i++) a.push(Date.now());
        st.writesEv.set(ev.node, a);
        trackKey(ev.key, ev.node, ev.version, 'write');
        logSome(ev);
        break;
      }
      case 'apply':
        trackKey(ev.key, ev.node, ev.version, Math.round(ev.latency_ms || 0));
        flash(ev.from, ev.node);
        logSome(ev);
        break;
      case 'sync':
        flash(ev.node, ev.peer);
        if (ev.sent || ev.received) logSome(ev);
        break;
      case 'fault':
        logLine(ev);
        pollFaults();
        break;
      case 'leader':
        // Every node's stream reports its own view; the page shows the
        // viewpoint's, roles included, which the event does not carry.
        if (ev.node === st.view) {
          st.leader = ev.leader ? { leader: ev.leader, term: ev.term } : null;
          pollLeader();
          schedule(100);
        }
        logLine(ev);
        break;
      case 'stream':
      case 'dropped':
        logLine(ev);
        break;
      default:
        logSome(ev);
    }
    schedule(100);
  }

  function streamState(ok, text) {
    st.events = ok;
    $('stream').textContent = text;
    $('stream').className = 'pill ' + (ok ? 'ok' : 'bad');
  }

  let es = null, streamCtl = null, streamGen = 0;

  // connect opens the cluster's event stream: EventSource without a token,
  // else fetch with a streamed body (EventSource cannot send headers).
  function connect() {
    const gen = ++streamGen;
    if (es) { es.close(); es = null; }
    if (streamCtl) { streamCtl.abort(); streamCtl = null; }
    const url = '/v1/events?cluster=1';
    if (!token() && window.EventSource) {
      const s = new EventSource(url);
      es = s;
      s.onopen = () => streamState(true, 'events: live');
      s.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not JSON */ } };
      s.onerror = () => {
        if (gen !== streamGen) return;
        streamState(false, 'events: reconnecting (polling meanwhile)');
        if (s.readyState === EventSource.CLOSED) {
          // The daemon answered something else than a stream (404 on a
          // daemon without /v1/events): poll, and try again later.
          es = null;
          streamState(false, 'events: not served (polling)');
          setTimeout(() => { if (gen === streamGen) connect(); }, 10000);
        }
      };
      return;
    }
    fetchStream(url, gen);
  }

  async function fetchStream(url, gen) {
    const ctl = new AbortController();
    streamCtl = ctl;
    try {
      const r = await fetch(url, { headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store' });
      if (r.status === 401) needToken('the event stream refused the token');
      if (!r.ok || !r.body) throw new Error('answer ' + r.status);
      streamState(true, 'events: live (fetch)');
      const rd = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await rd.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        if (buf.length > 4 << 20) throw new Error('events: an event over 4 MiB');
        let i;
        while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(buf[i] === '\r' ? i + 4 : i + 2);
          const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
          if (data) { try { onEvent(JSON.parse(data)); } catch (e) { /* not JSON */ } }
        }
      }
    } catch (e) {
      if (gen !== streamGen) return;
      streamState(false, 'events: ' + e.message + ' (polling)');
    }
    if (gen === streamGen) setTimeout(() => { if (gen === streamGen) connect(); }, 3000);
  }

  // ---- actions ---------------------------------------------------------------

  function showResult(title, data, err) {
    const r = $('result');
    r.className = 'result ' + (err ? 'bad' : 'ok');
    r.setAttribute('data-ok', err ? '0' : '1');
    let text = title + (err ? ': ' + err.message : '');
    if (data && data.nodes) {
      text += '\n' + data.nodes.map((n) => n.node + ': ' + (n.error ? 'not reached (' + n.error + '): it applies the change when it is back' : (n.rules || []).map(describeRule).join('; ') || 'no rules')).join('\n');
    }
    if (data && data.healed) text += '\nhealed: ' + (data.healed.map((h) => h.id + ' ' + describeRequest(h.request)).join(', ') || 'nothing');
    r.textContent = text;
    logLine({ kind: 'page', node: st.self, text: title + (err ? ': ' + err.message : '') });
  }

  function targets() {
    return st.names.filter((n) => st.selected.has(n));
  }

  function forNanos() {
    const s = Number($('for-s').value) || 0;
    return s > 0 ? Math.round(s * 1e9) : 0;
  }

  async function fault(kind) {
    const nodes = targets();
    if (!nodes.length) { showResult(kind, null, new Error('select one or more nodes in the picture first')); return; }
    if (kind === 'kill') {
      for (const n of nodes) {
        try { await api('POST', q('/v1/kill', n), {}); showResult('killed ' + n + ' (it exits at once; the others will mark it failed)'); }
        catch (e) { showResult('kill ' + n, null, e); }
      }
      st.selected.clear();
      schedule(0);
      return;
    }
    const req = { kind, nodes, reason: 'dashboard: ' + kind + ' ' + nodes.join(',') };
    if (kind === 'delay') {
      req.delay = Math.round((Number($('delay-ms').value) || 0) * 1e6);
      req.jitter = Math.round((Number($('jitter-ms').value) || 0) * 1e6);
      req.reason += ' by ' + $('delay-ms').value + 'ms';
    }
    if (kind === 'loss') {
      req.rate = (Number($('loss-pct').value) || 0) / 100;
      req.reason += ' ' + $('loss-pct').value + '%';
    }
    req.for = forNanos();
    await order(req);
  }

  async function order(req) {
    try {
      const res = await api('POST', '/v1/faults', req);
      showResult(req.reason.replace(/^dashboard: /, '') + ': fault ' + res.id, res);
    } catch (e) {
      showResult(req.reason.replace(/^dashboard: /, ''), null, e);
    }
    pollFaults();
  }

  async function partition() {
    const a = st.names.filter((n) => st.side.get(n) === 'A');
    const b = st.names.filter((n) => st.side.get(n) === 'B');
    if (!a.length || !b.length) { showResult('partition', null, new Error('put at least one node on side A and one on side B (click the names)')); return; }
    await order({ kind: 'partition', groups: [a, b], for: forNanos(), reason: 'dashboard: partition ' + a.join(',') + ' / ' + b.join(',') });
  }

  async function heal(target) {
    try {
      const res = await api('DELETE', '/v1/faults' + (target ? '?target=' + encodeURIComponent(target) : ''));
      showResult('heal ' + (target || 'all'), res);
    } catch (e) {
      showResult('heal ' + (target || 'all'), null, e);
    }
    pollFaults();
  }

  async function put(ev) {
    ev.preventDefault();
    const key = $('put-key').value.trim();
    const node = $('put-node').value || st.self;
    if (!key) return;
    try {
      const res = await api('PUT', q('/v1/kv/' + encodeURIComponent(key), node), $('put-value').value, 'application/octet-stream');
      trackKey(key, res.origin || node, res.version, 'write');
      showResult('wrote ' + key + ' at ' + node + ': ' + shortVersion(res.version));
    } catch (e) {
      showResult('write ' + key + ' at ' + node, null, e);
    }
    schedule(0);
  }

  function setView(v) {
    if (!v || v === st.view) return;
    st.view = v;
    st.viewSeq++;
    st.evAt.clear();
    for (const n of st.names) st.status.set(n, 'unknown');
    const u = new URL(location.href);
    u.searchParams.set('view', v);
    history.replaceState(null, '', u);
    st.leader = null;
    st.roles = new Map();
    render();
    pollMembers();
    pollLeader();
  }

  // ---- start -------------------------------------------------------------

  async function start() {
    $('token').value = token() ? '••••••' : '';
    $('token-save').addEventListener('click', () => {
      const v = $('token').value;
      if (v && v !== '••••••') sessionStorage.setItem('peerctl-token', v);
      if (!v) sessionStorage.removeItem('peerctl-token');
      $('token').value = token() ? '••••••' : '';
      connect();
      pollMembers();
    });
    $('view').addEventListener('change', (e) => setView(e.target.value));
    for (const b of document.querySelectorAll('button[data-action]')) {
      b.addEventListener('click', () => fault(b.dataset.action));
    }
    $('do-partition').addEventListener('click', partition);
    $('do-heal').addEventListener('click', () => heal(''));
    $('put-form').addEventListener('submit', put);

    for (;;) {
      try {
        const info = await api('GET', '/v1/info');
        st.self = info.name;
        break;
      } catch (e) {
        if (e.status !== 401) {
          $('conn').textContent = 'no answer: ' + e.message;
          $('conn').className = 'pill bad';
        }
        await new Promise((r) => setTimeout(r, e.status === 401 ? 500 : 2000));
      }
    }
    document.title = 'peerctl · ' + st.self;
    addNames([st.self]);
    st.view = new URL(location.href).searchParams.get('view') || st.self;
    await pollMembers();
    render();
    connect();
    pollFaults();
    pollLeader();
    // Polling backs up the stream: member lists every second (every 400 ms
    // without the stream), faults every 5 s (2 s without the stream; a
    // fault event asks at once), figures for 5 nodes every second, keys
    // not yet everywhere every 700 ms.
    const loop = (f, ms) => { const run = async () => { try { await f(); } finally { setTimeout(run, typeof ms === 'function' ? ms() : ms); } }; setTimeout(run, typeof ms === 'function' ? ms() : ms); };
    loop(pollMembers, () => (st.events ? 1000 : 400));
    loop(pollFaults, () => (st.events ? 5000 : 2000));
    loop(pollInfo, 1000);
    loop(pollKeys, 700);
    // Roles every 3 s once known, every second until then (the group
    // forms after the page loads; a leader event asks at once).
    loop(pollLeader, () => (st.leader && st.roles.size ? 3000 : 1000));
    setInterval(() => {
      const cut = Date.now() - 5000;
      for (const [n, a] of st.writesEv) {
        while (a.length && a[0] < cut) a.shift();
        if (!a.length) st.writesEv.delete(n);
      }
    }, 1000);
  }

  start();
})();
