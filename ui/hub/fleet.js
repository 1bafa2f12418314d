// The fleet page: reads /v1/fleet (with this page's ?state= filter) every health interval
// and shows states by colour and by word. No build step; no dependencies.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const filter = params.get('state') || '';
const WORDS = { silent: 'Silent', offline: 'Offline', backlog: 'Draining backlog', ok: 'OK' };
const SYMBOL = { silent: '■', offline: '▲', backlog: '◆', ok: '●' };
const UPSTREAM = { up: 'Up', degraded: 'Degraded', down: 'Down' };
const FILTER_TITLES = {
  silent: 'Silent stores', offline: 'Offline stores', backlog: 'Stores with a backlog',
  exposure: 'Stores holding offline card payments', set_aside: 'Stores with entries set aside',
  flagged: 'Stores whose chain does not verify', ok: 'Stores that are OK',
};

let interval = 5;
let lastGood = null;

const fmtInt = (n) => Number(n || 0).toLocaleString('en-US');

function money(byCurrency) {
  const parts = Object.entries(byCurrency || {}).map(([cur, minor]) => {
    const v = (minor / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return cur === 'other' ? v : `${cur} ${v}`;
  });
  return parts.length ? parts.join(' · ') : '0';
}

function ago(secs) {
  if (secs == null) return 'never';
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

function cell(text, cls) {
  const td = document.createElement('td');
  if (cls) td.className = cls;
  td.textContent = text;
  return td;
}

function badge(cls, text) {
  const td = document.createElement('td');
  const span = document.createElement('span');
  span.className = `badge ${cls}`;
  span.textContent = text;
  td.append(span);
  return td;
}

function upstream(reported, name) {
  const u = reported && reported.upstreams && reported.upstreams[name];
  if (!u) return badge('none', 'Not reported');
  return badge(u.state, `${u.state === 'down' ? '▲ ' : ''}${UPSTREAM[u.state] || u.state}`);
}

function row(s) {
  const tr = document.createElement('tr');
  tr.dataset.store = s.store_id;
  tr.dataset.state = s.state;
  const th = document.createElement('th');
  th.scope = 'row';
  th.textContent = s.store_id;
  tr.append(th);
  tr.append(badge(s.state, `${SYMBOL[s.state]} ${WORDS[s.state]}`));
  tr.append(cell(ago(s.since_contact_secs)));
  tr.append(upstream(s.reported, 'central'));
  tr.append(upstream(s.reported, 'payments'));
  const r = s.reported || {};
  tr.append(cell(fmtInt(r.journal && r.journal.pending), 'num'));
  const p = r.payments || {};
  tr.append(cell(p.offline_count ? `${fmtInt(p.offline_count)} · ${money({ [p.currency || 'other']: p.offline_total_minor })}` : '0', 'num'));
  tr.append(cell(`seq ${fmtInt(s.verified_seq)}${s.flag_reason ? ` — ${s.flag_reason}` : ''}`));
  tr.append(cell(fmtInt(s.set_aside_count), 'num'));
  return tr;
}

function render(f) {
  const t = f.totals;
  for (const s of ['silent', 'offline', 'backlog', 'ok']) $(`n-${s}`).textContent = fmtInt(t.by_state[s]);
  $('t-backlog').textContent = fmtInt(t.backlog);
  $('t-exposure').textContent = money(t.offline_exposure_minor);
  $('t-exposure-word').textContent = `Offline card payments held (${fmtInt(t.offline_payments)})`;
  $('t-set-aside').textContent = fmtInt(t.set_aside);
  $('t-stores').textContent = fmtInt(t.stores);
  $('silent-rule').textContent = `${f.silent_after_intervals} health intervals (${f.silent_after_intervals * f.health_interval_secs} s at ${f.health_interval_secs} s)`;
  const body = $('stores').tBodies[0];
  const shown = f.stores.slice(0, 500);
  body.replaceChildren(...shown.map(row));
  $('more').hidden = f.stores.length <= shown.length;
  $('more').textContent = `Showing the worst ${shown.length} of ${f.stores.length}; filter above, or read /v1/fleet for all.`;
}

async function refresh() {
  try {
    const q = filter ? `?state=${encodeURIComponent(filter)}` : '';
    const res = await fetch(`/v1/fleet${q}`, { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const f = await res.json();
    interval = Math.max(1, Math.min(30, f.health_interval_secs || 5));
    render(f);
    lastGood = new Date();
    $('updated').classList.remove('stale');
    $('updated').textContent = `Updated ${lastGood.toLocaleTimeString('en-GB')} · every ${interval} s`;
  } catch (e) {
    $('updated').classList.add('stale');
    $('updated').textContent = lastGood
      ? `Hub not answering (${e.message}): figures from ${lastGood.toLocaleTimeString('en-GB')}`
      : `Hub not answering (${e.message})`;
  }
  setTimeout(refresh, interval * 1000);
}

if (filter) {
  $('stores-title').textContent = filter.split(',').map((f) => FILTER_TITLES[f] || f).join(' or ');
  $('clear').hidden = false;
  for (const a of document.querySelectorAll(`a[data-filter="${CSS.escape(filter)}"]`)) a.setAttribute('aria-current', 'true');
}
refresh();
