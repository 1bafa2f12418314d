// The banner on every screen and the status board (/status): everything from /api/v1/status,
// polled every 3 s. Other modules subscribe with onStatus(cb).
import { agoSecs, clock, money, secsBetween, plural } from "./format.js";

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
  return { up: "up", degraded: "trouble", down: "down", unknown: "checking" }[h.state] ?? h.state;
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

/** The feeds the desk lives on: orders and receipts. */
const DESK_FEEDS = ["pickup_orders", "receipts"];

/** How current the desk's data is: the older of orders and receipts ("data as of"). */
export function dataAsOf(s) {
  const fs = DESK_FEEDS.map((n) => s.feeds?.[n]).filter(Boolean);
  if (!fs.length || fs.some((f) => !f.data_as_of && !f.applied_at)) return null;
  return fs.map((f) => f.data_as_of ?? f.applied_at).sort()[0];
}

/** "Orders as of 10:42, 3 min ago" — how current the orders are (kept for the order view). */
export function ordersFreshness(s) {
  const f = s.feeds?.pickup_orders;
  const at = f?.data_as_of ?? f?.applied_at;
  if (!at) return { text: "No orders loaded yet", stale: true };
  const age = f.data_age_secs ?? f.age_secs;
  return { text: `Orders as of ${clock(at)}, ${agoSecs(age)}`, stale: age > STALE.pickup_orders };
}

/** When Standin last heard from central, in words: "heard just now", "last heard 10:42 (12 min ago)". */
export function heardWords(s) {
  const c = s.upstreams?.central;
  if (!c?.configured) return "Central not set up";
  if (!c.last_success) return "Not heard from central yet";
  const secs = secsBetween(c.last_success, s.now);
  return secs < 60 && c.state === "up" ? "Heard from central just now" : `Central last heard ${clock(c.last_success)}`;
}

/** The outage the store is in, and what it changes at the desk. */
export function outage(s) {
  const c = s.upstreams?.central, p = s.upstreams?.payments;
  const centralDown = c?.configured && c.state === "down";
  const centralTrouble = c?.configured && c.state === "degraded";
  const payDown = p?.configured && p.state === "down";
  const payTrouble = p?.configured && p.state === "degraded";
  const stalled = !centralDown && s.hq_updates_stalled;
  const asOf = dataAsOf(s);
  // Each: a one-line head (the banner stays short on a small screen) and what it changes.
  const notes = [];
  if (centralDown) {
    notes.push({ head: `Central down since ${clock(c.since)}: keep serving customers, everything is saved here.`, more: [
      "Hand-overs and returns are saved here and sent to central when it is back.",
      "Refunds above the associate's offline limit need a manager's PIN.",
      "Returns without a receipt get store credit only.",
      `Orders and sales after ${clock(asOf)} are not here yet.`] });
  } else if (centralTrouble) {
    notes.push({ head: "Central is slow or failing: keep working, everything is saved here first.", more: [
      "Hand-overs and returns are saved here and sent to central when it answers."] });
  } else if (stalled) {
    notes.push({ head: `Central answers, but HQ's updates stopped: data as of ${clock(asOf)}.`, more: [
      `Orders and sales after ${clock(asOf)} are not here yet: a customer's new order may be missing.`,
      "Hand-overs and returns still reach central.",
      "Tell your lead."] });
  }
  if (payDown) {
    notes.push({ head: "Card processor down: card refunds are queued.", more: [
      "A card refund reaches the customer's card when the processor is back: tell them.",
      "Cash and store credit refunds as usual.",
      "Kiosks approve card payments offline, within HQ's limits."] });
  } else if (payTrouble) {
    notes.push({ head: "Card processor slow or failing: card refunds may be queued.", more: [] });
  }
  // Red only when central is down; anything else that is wrong is amber.
  const level = centralDown ? "down" : (centralTrouble || stalled || payDown || payTrouble) ? "warn"
    : [c, p].every((h) => h?.configured && h.state === "up") ? "up" : "unknown";
  return { level, notes, stalled, centralDown, payDown };
}

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

function chipText(name, h, s) {
  const st = stateClass(h);
  const since = h && h.configured && h.state !== "up" && h.state !== "unknown" ? ` since ${clock(h.since)}` : "";
  if (name === "central" && h?.state === "up" && s.hq_updates_stalled) return "! Central up, updates stopped";
  return `${ICON[st] ?? "…"} ${UPSTREAM_NAMES[name]} ${stateWord(h)}${since}`;
}

function renderBanner(s) {
  const banner = document.getElementById("banner");
  if (!banner) return;
  const o = outage(s);
  banner.className = `banner ${o.level}`;
  for (const name of UPSTREAM_ORDER) {
    const h = s.upstreams?.[name];
    const chip = document.getElementById(`chip-${name}`);
    if (!chip) continue;
    let cls = stateClass(h);
    if (name === "central" && o.stalled && cls === "up") cls = "degraded";
    chip.className = `chip ${cls}`;
    setText(chip, chipText(name, h, s));
  }
  setText(document.getElementById("banner-heard"), `${heardWords(s)} ·`);
  const asOf = dataAsOf(s);
  setText(document.getElementById("banner-fresh"), asOf ? `data as of ${clock(asOf)}` : "no data loaded yet");
  const notes = document.getElementById("banner-notes");
  if (notes) notes.className = `banner-notes ${o.level}`;
  // The kiosk payment queue: approved offline, waiting for the processor, with its deadline.
  const queue = document.getElementById("banner-queue");
  const q = s.payments;
  if (queue) {
    queue.hidden = !(q?.count > 0);
    if (q?.count > 0) {
      queue.classList.toggle("urgent", Boolean(q.deadline_warning));
      setText(queue, `${plural(q.count, "card payment", "card payments")} waiting for the processor (${money(q.total_minor, s.currency ?? "USD")}), oldest ${waited(q.oldest_age_secs)}, send within ${countdown(q.tightest_deadline_secs)}.`);
    }
  }
  const note = document.getElementById("banner-note");
  if (note) {
    setText(document.getElementById("banner-note-head"), o.notes.map((n) => n.head).join(" "));
    const body = document.getElementById("banner-note-body");
    const items = o.notes.flatMap((n) => n.more);
    if (body.textContent !== items.join("")) {
      body.replaceChildren(...items.map((t) => {
        const li = document.createElement("li");
        li.textContent = t;
        return li;
      }));
    }
    note.hidden = !o.notes.length;
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
      const heard = document.createElement("div");
      heard.className = "heard";
      heard.textContent = !h.configured ? "" : h.last_success
        ? `Last heard from ${name === "central" ? "central" : "the processor"} ${clock(h.last_success)} (${agoSecs(secsBetween(h.last_success, s.now))})`
        : "Not heard from yet";
      const what = document.createElement("div");
      what.className = "what";
      const o = outage(s);
      if (name === "central" && o.stalled && h.state === "up") {
        div.className = "upstream degraded";
        st.textContent = "! no updates";
        what.textContent = `Data as of ${clock(dataAsOf(s))}: newer orders and sales are not here.`;
      } else if (name === "central" && h.state === "down") {
        what.textContent = "The desk keeps working: hand-overs and returns wait here for central.";
      } else if (name === "payments" && h.state === "down") {
        what.textContent = "Card refunds are queued; kiosks approve card payments offline within limits.";
      }
      div.append(title, st, since, heard, what);
      return div;
    }));
  }
  const feeds = document.querySelector("#feeds tbody");
  if (feeds && s.feeds) {
    feeds.replaceChildren(...FEED_ORDER.filter((n) => s.feeds[n]).map((name) => {
      const f = s.feeds[name];
      const asOf = f.data_as_of ?? f.applied_at;
      const tr = cells(document.createElement("tr"), [
        FEED_NAMES[name] ?? name,
        f.records.toLocaleString(),
        asOf ? `${clock(asOf)} · ${agoSecs(f.data_age_secs ?? f.age_secs)}${f.stalled ? " · updates stopped" : ""}` : "never loaded",
        f.applied_at ? `${clock(f.applied_at)} · ${agoSecs(f.age_secs)}` : "never",
      ]);
      tr.dataset.feed = name;
      if (f.last_error) {
        tr.className = "error";
        tr.title = f.last_error;
      } else if (f.stalled || !asOf) {
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
    ["Total", money(p.total_minor, s.currency ?? "USD")],
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
  setText(document.getElementById("banner-heard"), "Cannot reach Standin on this server. Check the network.");
  setText(document.getElementById("banner-fresh"), "");
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
