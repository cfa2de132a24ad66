// The Inlet console: the admin API (/v1) drawn for people. Everything it
// shows comes from the same JSON an operator's scripts read; everything it
// does is one admin API call with the admin token from sessionStorage (no
// cookies). Every string from the host is put in the page as text, never
// as markup: connector names, errors and payloads are untrusted.
'use strict';

const TOKEN_KEY = 'inlet-admin-token';
const REFRESH_MS = 2000;
const PROBLEMS = ['quarantined', 'failing', 'failed', 'stale', 'removed'];

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  downSince: null,
  timer: null,
  // Each refresh's number: an answer for an older one is dropped.
  generation: 0,
  // The last action's outcome on a connector page, kept across redraws.
  result: null,
  // The live event view: its source, the last offset shown, the poll.
  live: null,
};

class Unauthorized extends Error {}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// One admin API call. Network failure: the banner; 401: the login form.
async function api(method, path, body, signal) {
  const headers = {};
  if (app.token) headers.Authorization = 'Bearer ' + app.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    hostDown();
    throw new Error('the host is not answering');
  }
  hostUp();
  if (resp.status === 401) {
    const refused = Boolean(app.token);
    app.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(refused ? 'That token was refused.' : null);
    throw new Unauthorized();
  }
  const text = await resp.text();
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try { message = JSON.parse(text).error.message || message; } catch (_) { /* not JSON */ }
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return text;
}

async function apiJson(method, path, body) {
  const text = await api(method, path, body);
  return text ? JSON.parse(text) : null;
}

function setText(id, text) {
  const e = document.getElementById(id);
  if (e.textContent !== text) e.textContent = text;
}

function hostDown() {
  if (app.downSince === null) app.downSince = new Date();
  setText('banner', `The host is not answering (since ${app.downSince.toLocaleTimeString()}). Retrying every ${REFRESH_MS / 1000} s…`);
  document.getElementById('banner').hidden = false;
}

function hostUp() {
  app.downSince = null;
  document.getElementById('banner').hidden = true;
}

function showLogin(error) {
  stopLive();
  const main = document.getElementById('main');
  if (!document.getElementById('login')) {
    main.replaceChildren(document.getElementById('login-template').content.cloneNode(true));
    document.getElementById('login').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = document.getElementById('token').value.trim();
      if (!token) {
        showLogin('Type the admin token.');
        return;
      }
      app.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      route();
    });
    document.getElementById('token').focus();
  }
  const err = document.getElementById('login-error');
  err.textContent = error || '';
  err.hidden = !error;
  document.getElementById('logout').hidden = true;
}

function ago(ms) {
  if (!ms) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return 'in ' + dur(-s);
  return dur(s) + ' ago';
}

function dur(s) {
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

// Events per minute over the last hour, push and pull, as one small SVG.
function sparkline(history) {
  const w = 120, h = 28;
  const push = history?.push || [], pull = history?.pull || [];
  const max = Math.max(1, ...push, ...pull);
  const s = svg('svg', { class: 'spark', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  s.setAttribute('aria-label', `last hour: ${sum(push)} pushed, ${sum(pull)} pulled`);
  for (const [series, cls] of [[pull, 'pull'], [push, 'push']]) {
    if (!series.length) continue;
    const step = w / Math.max(1, series.length - 1);
    const points = series.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
    s.append(svg('polyline', { points: points.join(' '), fill: 'none', 'stroke-width': 1.5, class: cls }));
  }
  return s;
}

function stateBadge(c) {
  let text = c.state;
  if (c.state === 'quarantined' && c.quarantine?.until_ms) {
    text += ` (${dur(Math.max(0, Math.round((c.quarantine.until_ms - Date.now()) / 1000)))} left)`;
  }
  return el('span', { class: `state state-${c.state}`, 'data-state': c.state }, text);
}

function checkpointAge(c) {
  const times = (c.checkpoints || []).map((p) => p.updated_ms).filter(Boolean);
  return times.length ? ago(Math.max(...times)) : '—';
}

async function overview(generation) {
  const { connectors } = await apiJson('GET', '/v1/connectors');
  if (generation !== app.generation) return;
  // The worst first (PROBLEMS is in order of severity), then by name.
  const rank = (c) => { const i = PROBLEMS.indexOf(c.state); return i < 0 ? PROBLEMS.length : i; };
  connectors.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  const problems = connectors.filter((c) => PROBLEMS.includes(c.state)).length;
  setText('summary',
    `${connectors.length} connector${connectors.length === 1 ? '' : 's'}` + (problems ? `, ${problems} with problems` : ''));
  const cell = (label, ...content) => el('td', { 'data-label': label }, ...content);
  const rows = connectors.map((c) =>
    el('tr', { class: PROBLEMS.includes(c.state) ? 'problem' : '', 'data-name': c.name },
      cell('Connector', el('a', { href: `#/c/${encodeURIComponent(c.name)}` }, c.name)),
      cell('Version', c.version ? `${c.version} ` : '', c.hash ? el('code', {}, c.hash.slice(7, 19)) : ''),
      cell('Modes', (c.modes || []).join(', ') || '—'),
      cell('State', stateBadge(c)),
      cell('Last hour', sparkline(c.history)),
      cell('Last error', c.last_error ? el('span', { class: 'error' }, c.last_error) : '—'),
      cell('Checkpoint', checkpointAge(c)),
      cell('Next pull', c.pull?.next_pull_ms ? ago(c.pull.next_pull_ms) : '—'),
      cell('Dead letters', String(c.dead_letters?.count ?? 0))));
  const table = el('table', { class: 'overview' },
    el('thead', {}, el('tr', {}, ...['Connector', 'Version', 'Modes', 'State', 'Last hour (push, pull)', 'Last error', 'Checkpoint', 'Next pull', 'Dead letters'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
  // The redraw keeps the keyboard focus on the same connector's link, and
  // waits while the operator is selecting text.
  if (String(window.getSelection()).length > 0) return;
  const focused = document.activeElement?.closest?.('tr')?.dataset.name;
  document.getElementById('main').replaceChildren(
    el('h1', { class: 'visually-hidden' }, 'Connectors'),
    connectors.length ? table : el('p', { class: 'muted' }, 'No connectors: drop NAME.wasm into the plugins directory.'));
  if (focused) document.querySelector(`tr[data-name="${CSS.escape(focused)}"] a`)?.focus();
}

// A button that runs `action` and reports its outcome in `out`.
function actionButton(label, action, out, cls) {
  return el('button', {
    type: 'button', class: cls || '',
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        app.result = { text: await action(), cls: 'muted', name: currentName() };
      } catch (e) {
        if (!(e instanceof Unauthorized)) app.result = { text: e.message, cls: 'error', name: currentName() };
      } finally {
        if (app.result) { out.textContent = app.result.text; out.className = app.result.cls; }
        ev.target.disabled = false;
      }
    },
  }, label);
}

function currentName() {
  const hash = location.hash || '#/';
  return hash.startsWith('#/c/') ? decodeURIComponent(hash.slice(4)) : null;
}

function checkpointRow(name, p, out) {
  const label = p.partition === null ? '(unnamed)' : p.partition;
  const query = p.partition === null ? '' : `?partition=${encodeURIComponent(p.partition)}`;
  const path = `/v1/connectors/${encodeURIComponent(name)}/checkpoint${query}`;
  const controls = el('td', {});
  const idle = () => controls.replaceChildren(
    el('button', { type: 'button', onclick: edit }, 'Edit'), ' ',
    el('button', { type: 'button', class: 'danger', onclick: reset }, 'Reset'));
  async function edit() {
    // The status shows a checkpoint cut at 256 characters: edit the whole.
    let value = p.value;
    if (p.value_truncated) {
      try {
        value = (await apiJson('GET', path)).value;
      } catch (e) {
        if (!(e instanceof Unauthorized)) { out.textContent = e.message; out.className = 'error'; }
        return;
      }
    }
    const input = el('input', { 'aria-label': `new checkpoint of ${label}`, value, class: 'checkpoint-input' });
    controls.replaceChildren(input, ' ',
      actionButton('Save', async () => {
        await apiJson('PUT', path, { value: input.value });
        refreshSoon();
        return `Checkpoint of ${label} set.`;
      }, out), ' ',
      el('button', { type: 'button', onclick: idle }, 'Cancel'));
    input.focus();
  }
  function reset() {
    controls.replaceChildren(el('span', {}, 'Forget it (the next pull starts over)? '),
      actionButton('Yes, reset', async () => {
        await apiJson('DELETE', path);
        refreshSoon();
        return `Checkpoint of ${label} reset.`;
      }, out, 'danger'), ' ',
      el('button', { type: 'button', onclick: idle }, 'Cancel'));
  }
  idle();
  return el('tr', { 'data-partition': label },
    el('td', {}, label),
    el('td', {}, el('code', {}, p.value + (p.value_truncated ? '…' : ''))),
    el('td', {}, ago(p.updated_ms)),
    controls);
}

async function connectorPageAt(name, generation) {
  const c = await apiJson('GET', `/v1/connectors/${encodeURIComponent(name)}`);
  if (generation !== app.generation) return;
  setText('summary', name);
  if (app.result?.name !== name) app.result = null;
  const out = el('p', { id: 'action-result', role: 'status', 'aria-live': 'polite', class: app.result?.cls || '' },
    app.result?.text || '');
  const actions = el('div', { class: 'actions' });
  if ((c.modes || []).includes('pull')) {
    actions.append(actionButton('Pull now', async () => {
      const r = await apiJson('POST', `/v1/connectors/${encodeURIComponent(name)}/pull`);
      refreshSoon();
      return `Pulled: ${r.run?.events ?? 0} event(s) in ${r.run?.batches ?? 0} batch(es).`;
    }, out));
  }
  if (c.state === 'quarantined') {
    actions.append(actionButton('Resume', async () => {
      await apiJson('POST', `/v1/connectors/${encodeURIComponent(name)}/resume`);
      refreshSoon();
      return 'Resumed: the quarantine is lifted.';
    }, out));
  }
  const dl = (pairs) => el('dl', {}, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
  const pull = c.pull || {};
  const details = el('section', { class: 'card' },
    el('h1', {}, name, ' ', stateBadge(c)),
    dl([
      ['Version', c.version], ['Hash', el('code', {}, c.hash || '—')], ['Modes', (c.modes || []).join(', ')],
      ['Manifest', el('code', {}, c.manifest || '(none: defaults)')], ['Component', el('code', {}, c.wasm || '—')],
      ['Loaded', ago(c.loaded_at_ms)], ['Last error', c.last_error], ['Reload error', c.reload_error],
      ['Quarantine', c.quarantine ? `${c.quarantine.reason || ''} (until ${new Date(c.quarantine.until_ms).toLocaleTimeString()})` : null],
      ['Last hour', sparkline(c.history)],
      ['Dead letters', String(c.dead_letters?.count ?? 0)],
    ]),
    actions, out);
  const runs = c.pull ? el('section', { class: 'card' }, el('h2', {}, 'Pull runs'), dl([
    ['State', pull.state], ['Schedule', pull.schedule], ['Last run', ago(pull.last_pull_ms)],
    ['Next run', pull.next_pull_ms ? ago(pull.next_pull_ms) : null],
    ['Consecutive failures', String(pull.consecutive_failures ?? 0)], ['Last run error', pull.last_error],
    ['Runs / failures', `${c.counters?.pull_runs ?? 0} / ${c.counters?.pull_failures ?? 0}`],
  ])) : null;
  const checkpoints = el('section', { class: 'card' }, el('h2', {}, `Checkpoints (${c.checkpoints_total ?? 0})`),
    (c.checkpoints || []).length
      ? el('table', { class: 'checkpoints' },
        el('thead', {}, el('tr', {}, ['Partition', 'Value', 'Updated', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, c.checkpoints.map((p) => checkpointRow(name, p, out))))
      : el('p', { class: 'muted' }, 'None yet.'));
  const manifest = el('section', { class: 'card' }, el('h2', {}, 'Manifest'),
    c.manifest_text ? el('pre', { id: 'manifest' }, c.manifest_text) : el('p', { class: 'muted' }, 'No manifest: the defaults.'));
  const filter = el('input', { id: 'event-filter', type: 'search', placeholder: 'filter by id or attribute', 'aria-label': 'filter events' });
  const list = el('ul', { class: 'events', id: 'events' });
  filter.addEventListener('input', () => applyFilter(list, filter.value));
  const events = el('section', { class: 'card' }, el('h2', {}, 'Recent events (live)'), filter, list);
  document.getElementById('main').replaceChildren(details, runs || '', checkpoints, manifest, events);
  startLive(name, c.last_offset, list, filter);
}

function applyFilter(list, text) {
  const needle = text.trim().toLowerCase();
  for (const li of list.children) li.hidden = needle !== '' && !li.dataset.search.includes(needle);
}

function eventItem(env) {
  const attrs = Object.entries(env.attributes || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  const payload = env.payload !== undefined ? JSON.stringify(env.payload, null, 2) : JSON.stringify(env, null, 2);
  const li = el('li', { 'data-id': env.id ?? '' },
    el('div', {}, el('strong', {}, `#${env.offset} `), el('code', {}, env.id ?? ''), ' ',
      el('span', { class: 'muted' }, `${env.mode ?? ''} ${env.received_ms ? new Date(env.received_ms).toLocaleTimeString() : ''} ${attrs}`)),
    el('pre', {}, payload));
  li.dataset.search = `${env.id ?? ''} ${attrs}`.toLowerCase();
  return li;
}

function stopLive() {
  if (app.live) app.live.abort.abort();
  app.live = null;
}

// The newest events, then each new one as it is stored (long poll). After
// a failure it goes on from the last event shown, keeping the list.
async function startLive(name, lastOffset, list, filter, resumeAfter) {
  stopLive();
  const live = { name, abort: new AbortController() };
  app.live = live;
  const base = `/v1/streams/${encodeURIComponent(name)}/events`;
  let after = resumeAfter ?? null;
  const show = (text) => {
    let shown = 0;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const env = JSON.parse(line);
      list.prepend(eventItem(env));
      after = env.offset;
      shown += 1;
      while (list.children.length > 100) list.lastChild.remove();
    }
    applyFilter(list, filter.value);
    return shown;
  };
  try {
    if (resumeAfter === undefined && lastOffset !== null && lastOffset !== undefined) {
      const from = lastOffset - 20;
      show(await api('GET', base + (from >= 0 ? `?after=${from}` : '?limit=21'), undefined, live.abort.signal));
    }
    while (app.live === live) {
      const started = Date.now();
      const q = after === null ? '?wait=25' : `?after=${after}&wait=25`;
      const shown = show(await api('GET', base + q, undefined, live.abort.signal));
      // An empty answer at once (the host is shutting down): not a spin.
      if (shown === 0 && Date.now() - started < 1000) await new Promise((r) => setTimeout(r, REFRESH_MS));
    }
  } catch (e) {
    if (e.name === 'AbortError' || e instanceof Unauthorized || app.live !== live) return;
    // No stream (a connector that never stored anything and is gone): stop.
    if (e.status >= 400 && e.status < 500 && e.status !== 429) return;
    setTimeout(() => {
      if (app.live === live) startLive(name, lastOffset, list, filter, after ?? lastOffset ?? null);
    }, REFRESH_MS);
  }
}

function refreshSoon() {
  clearTimeout(app.timer);
  app.timer = setTimeout(refresh, 150);
}

// The overview refreshes on a timer; a connector page keeps its event
// list (live already) and redraws the rest only after an action. A refresh
// that a newer one overtook draws nothing and schedules nothing.
async function refresh() {
  clearTimeout(app.timer);
  const generation = ++app.generation;
  const name = currentName();
  try {
    if (name !== null) {
      await connectorPageAt(name, generation);
    } else {
      stopLive();
      await overview(generation);
    }
    if (generation !== app.generation) return;
    document.getElementById('logout').hidden = !app.token;
  } catch (e) {
    if (e instanceof Unauthorized || generation !== app.generation) return;
    if (!app.downSince) {
      document.getElementById('main').replaceChildren(el('p', { class: 'error' }, e.message));
    }
  }
  if (generation === app.generation && (name === null || app.downSince)) {
    app.timer = setTimeout(refresh, REFRESH_MS);
  }
}

function route() {
  refresh();
}

window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  app.token = null;
  app.generation++;
  clearTimeout(app.timer);
  setText('summary', '');
  showLogin(null);
});
route();
