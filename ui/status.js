// The banner on every screen and the status board (/status): everything from /api/v1/status,
// polled every 3 s. Other modules subscribe with onStatus(cb).
import { agoSecs, clock, secsBetween, plural } from "./format.js";

export { ago } from "./format.js";

const FEED_NAMES = {
  pickup_orders: "Pickup orders", receipts: "Receipts", staff: "Staff", devices: "Kiosks", policy: "Policy",
};
const FEED_ORDER = ["pickup_orders", "receipts", "staff", "devices", "policy"];
const LANE_NAMES = { payments: "Payments", returns: "Returns", pickups: "Pickups", audit: "Audit" };
const LANE_ORDER = ["payments", "returns", "pickups", "audit"];
const UPSTREAM_NAMES = { central: "Central", payments: "Card processor" };
const UPSTREAM_ORDER = ["central", "payments"];
/** Feeds older than this (seconds) are shown as stale: HQ's data is not arriving. */
const STALE = { pickup_orders: 2 * 3600, receipts: 2 * 3600, staff: 48 * 3600, devices: 48 * 3600, policy: 48 * 3600 };

const listeners = new Set();
let last = null;
let failed = false;

/** Calls cb with every status read (and at once with the last one). Returns an unsubscribe. */
export function onStatus(cb) {
  listeners.add(cb);
  if (last) cb(last);
  return () => listeners.delete(cb);
}

export function latestStatus() {
  return last;
}

function stateWord(h) {
  if (!h || !h.configured) return "not set up";
  return { up: "up", degraded: "trouble", down: "DOWN", unknown: "checking" }[h.state] ?? h.state;
}

function stateClass(h) {
  if (!h || !h.configured) return "unknown";
  return h.state;
}

const ICON = { up: "✓", degraded: "!", down: "✕", unknown: "…" };

/** Seconds since an upstream's state changed, by the server's clock. */
function sinceSecs(s, h) {
  return h?.since ? secsBetween(h.since, s.now) : null;
}

/** "Orders as of 10:42, 3 min ago". */
export function ordersFreshness(s) {
  const f = s.feeds?.pickup_orders;
  if (!f || !f.applied_at) return { text: "No orders loaded yet", stale: true };
  return { text: `Orders as of ${clock(f.applied_at)}, ${agoSecs(f.age_secs)}`, stale: f.age_secs > STALE.pickup_orders };
}

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

function renderBanner(s) {
  const banner = document.getElementById("banner");
  if (!banner) return;
  const ups = UPSTREAM_ORDER.map((n) => [n, s.upstreams?.[n]]);
  const states = ups.map(([, h]) => stateClass(h));
  const fresh = ordersFreshness(s);
  const worst = states.includes("down") ? "down" : states.includes("degraded") || fresh.stale ? "warn" : states.every((x) => x === "up") ? "up" : "unknown";
  banner.className = `banner ${worst}`;
  for (const [name, h] of ups) {
    const chip = document.getElementById(`chip-${name}`);
    if (!chip) continue;
    const st = stateClass(h);
    chip.className = `chip ${st}`;
    const since = h && h.state !== "up" && h.configured ? ` since ${clock(h.since)}` : "";
    setText(chip, `${ICON[st] ?? "…"} ${UPSTREAM_NAMES[name]} ${stateWord(h)}${since}`);
  }
  setText(document.getElementById("banner-fresh"), fresh.text);
  // The kiosk payment queue: approved offline, waiting for the processor, with its deadline.
  const queue = document.getElementById("banner-queue");
  const q = s.payments;
  if (queue) {
    queue.hidden = !(q?.count > 0);
    if (q?.count > 0) {
      queue.className = `chip ${q.deadline_warning ? "down" : "degraded"}`;
      setText(queue, `${plural(q.count, "card payment", "card payments")} waiting (${money(q.total_minor)}), oldest ${waited(q.oldest_age_secs)}, send within ${countdown(q.tightest_deadline_secs)}`);
    }
  }
  const note = document.getElementById("banner-note");
  if (note) {
    const c = s.upstreams?.central, p = s.upstreams?.payments;
    let text = "";
    if (c?.configured && c.state === "down") {
      text = "Working offline: keep serving customers. Everything you do is saved here and sent to central when it is back.";
    } else if (c?.configured && c.state === "degraded") {
      text = "Central is slow or failing. Keep working: everything is saved here first.";
    } else if (p?.configured && p.state === "down") {
      text = "The card processor is down: card payments are approved offline within the store's limits.";
    } else if (fresh.stale) {
      text = "Order data is old: HQ's updates are not arriving. Tell your lead.";
    }
    setText(note, text);
    note.hidden = !text;
  }
}

/** How long the oldest entry has waited: "under 1 min", "12 min", "2 h 5 min". */
function waited(secs) {
  const a = agoSecs(secs);
  return a === "just now" ? "under 1 min" : a.replace(" ago", "");
}

function cells(tr, texts) {
  tr.replaceChildren(...texts.map((t) => {
    const td = document.createElement("td");
    td.textContent = t;
    return td;
  }));
  return tr;
}

function renderBoard(s) {
  const ups = document.getElementById("upstreams");
  if (ups) {
    ups.replaceChildren(...UPSTREAM_ORDER.filter((n) => s.upstreams?.[n]).map((name) => {
      const h = s.upstreams[name];
      const div = document.createElement("div");
      div.className = `upstream ${stateClass(h)}`;
      div.dataset.upstream = name;
      const title = document.createElement("div");
      title.className = "name";
      title.textContent = UPSTREAM_NAMES[name] ?? name;
      const st = document.createElement("div");
      st.className = "state";
      st.textContent = `${ICON[stateClass(h)] ?? ""} ${stateWord(h)}`;
      const since = document.createElement("div");
      since.className = "since";
      since.textContent = h.configured ? `since ${clock(h.since)} (${agoSecs(sinceSecs(s, h))})` : "no address configured";
      div.append(title, st, since);
      return div;
    }));
  }
  const feeds = document.querySelector("#feeds tbody");
  if (feeds && s.feeds) {
    feeds.replaceChildren(...FEED_ORDER.filter((n) => s.feeds[n]).map((name) => {
      const f = s.feeds[name];
      const tr = cells(document.createElement("tr"), [
        FEED_NAMES[name] ?? name,
        f.records.toLocaleString(),
        f.applied_at ? `${clock(f.applied_at)} · ${agoSecs(f.age_secs)}` : "never loaded",
      ]);
      if (f.last_error) {
        tr.className = "error";
        tr.title = f.last_error;
      } else if (!f.applied_at || f.age_secs > (STALE[name] ?? Infinity)) {
        tr.className = "stale";
      }
      return tr;
    }));
  }
  const lanes = document.querySelector("#lanes tbody");
  if (lanes && s.journal) {
    lanes.replaceChildren(...LANE_ORDER.filter((l) => s.journal.lanes[l]).map((l) => {
      const b = s.journal.lanes[l];
      const tr = cells(document.createElement("tr"), [
        LANE_NAMES[l],
        b.pending ? b.pending.toLocaleString() : "none",
        b.pending ? waited(b.oldest_age_secs) : "all sent",
      ]);
      tr.className = b.pending ? "waiting" : "sent";
      return tr;
    }));
    setText(document.getElementById("set-aside"), s.journal.set_aside
      ? `${plural(s.journal.set_aside, "entry", "entries")} central refused ${s.journal.set_aside === 1 ? "is" : "are"} waiting for a lead or manager (Reconciliation).`
      : "");
  }
  renderExposure(s);
  setText(document.getElementById("updated"), `Store ${s.store_id} · Standin ${s.version} · updated ${clock(s.now)}`);
}

/** "$12.34" for minor units (the store's currency is shown by the kiosks; this is a count). */
function money(minor) {
  return (minor / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

/** "5 h 12 min" from seconds. */
function countdown(secs) {
  const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

// Payments approved offline, not yet forwarded to the processor: the store's exposure.
function renderExposure(s) {
  const body = document.querySelector("#exposure tbody");
  const p = s.payments;
  if (!body || !p) return;
  const rows = [
    ["Approved offline, not yet sent", p.count ? plural(p.count, "payment", "payments") : "none"],
    ["Total", money(p.total_minor)],
    ["Oldest", p.count ? `${clock(p.oldest_at)} · waiting ${waited(p.oldest_age_secs)}` : "—"],
    ["Must reach the processor within", p.count ? countdown(p.tightest_deadline_secs) : "—"],
  ];
  body.replaceChildren(...rows.map(([k, v], i) => {
    const tr = cells(document.createElement("tr"), [k, v]);
    if (i === 3 && p.deadline_warning) tr.className = "error";
    else if (p.count) tr.className = "waiting";
    return tr;
  }));
  const issues = [];
  if (p.deadline_warning) issues.push("A stored card payment is close to its forwarding deadline: check the card processor connection now.");
  if (p.declined_after_forward) issues.push(`${plural(p.declined_after_forward, "payment was", "payments were")} declined by the processor after the sale (Reconciliation).`);
  if (p.expired) issues.push(`${plural(p.expired, "payment", "payments")} expired before reaching the processor (Reconciliation).`);
  setText(document.getElementById("exposure-note"), issues.join(" "));
}

function renderUnreachable() {
  const banner = document.getElementById("banner");
  if (!banner) return;
  banner.className = "banner down";
  setText(document.getElementById("banner-fresh"), "Cannot reach Standin on this server. Check the network.");
  for (const name of UPSTREAM_ORDER) {
    const chip = document.getElementById(`chip-${name}`);
    if (chip) {
      chip.className = "chip unknown";
      setText(chip, `… ${UPSTREAM_NAMES[name]} unknown`);
    }
  }
}

export async function refreshStatus() {
  try {
    const res = await fetch("/api/v1/status", { headers: { accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    last = await res.json();
    failed = false;
    renderBanner(last);
    renderBoard(last);
    for (const cb of listeners) cb(last);
  } catch {
    failed = true;
    renderUnreachable();
  }
  return last;
}

export function statusUnreachable() {
  return failed;
}

refreshStatus();
setInterval(refreshStatus, 3000);
