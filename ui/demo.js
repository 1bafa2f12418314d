// `standin demo` only: a small panel that breaks central or the card processor through the
// simulator's controls (status says where they are as demo.simulator_url), and brings them back.
import { onStatus } from "./status.js";
import { el } from "./format.js";

const UPSTREAMS = [["central", "Central"], ["payments", "Card processor"]];
const MODES = [
  { key: "ok", label: "Up", body: { mode: "ok" }, hint: "answers normally" },
  { key: "down", label: "Down", body: { mode: "down" }, hint: "refuses connections" },
  { key: "latency", label: "Slow", body: { mode: "latency", latency_ms: 1500 }, hint: "answers after 1.5 s" },
  { key: "error", label: "Failing", body: { mode: "error", status: 503 }, hint: "answers 503" },
];

let base = null;
let panel = null;

function modeKey(fault) {
  const m = fault?.mode ?? "ok";
  return MODES.some((x) => x.key === m) ? m : "other";
}

async function call(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    mode: "cors",
    credentials: "omit",
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`);
  return data;
}

function render(faults) {
  const body = panel.querySelector(".demo-body");
  const stalled = Boolean(faults?.feeds_stalled_since);
  // HQ's updates: central keeps answering, but no new data reaches it (the amber case).
  const hq = el("div", { class: "demo-row", role: "group", "aria-label": "HQ's updates in the simulator" },
    el("span", { class: "demo-name" }, "HQ's updates"),
    el("button", { type: "button", class: "demo-btn", "aria-pressed": String(!stalled), dataset: { stall: "off" },
      onclick: () => setStall(false) }, "Flowing"),
    el("button", { type: "button", class: "demo-btn", "aria-pressed": String(stalled), dataset: { stall: "on" },
      title: "Central answers, with its data as of 30 minutes ago", onclick: () => setStall(true) }, "Stalled"));
  const samples = el("div", { class: "demo-row" },
    el("button", { type: "button", class: "demo-btn wide", id: "demo-samples", onclick: addSamples },
      "Add a 44-line receipt, a 28-item order and 600 orders due"));
  body.replaceChildren(...UPSTREAMS.map(([name, label]) => {
    const current = modeKey(faults?.[name]);
    return el("div", { class: "demo-row", role: "group", "aria-label": `${label} in the simulator` },
      el("span", { class: "demo-name" }, label),
      ...MODES.map((m) => el("button", {
        type: "button",
        class: `demo-btn mode-${m.key}`,
        "aria-pressed": String(current === m.key),
        title: `${label} ${m.hint}`,
        dataset: { upstream: name, mode: m.key },
        onclick: () => setFault(name, label, m),
      }, m.label)));
  }), hq, samples);
}

async function refresh() {
  try {
    render(await call("GET", "/admin/faults"));
  } catch {
    say("The simulator does not answer.");
  }
}

function say(text) {
  const msg = panel.querySelector(".demo-msg");
  msg.textContent = text;
}

async function setFault(name, label, m) {
  try {
    await call("PUT", `/admin/faults/${name}`, m.body);
    say(`${label} is now ${m.label.toLowerCase()} (${m.hint}). The banner follows within a few seconds.`);
  } catch (e) {
    say(`Could not change ${label}: ${e.message}`);
  }
  await refresh();
}

async function setStall(on) {
  try {
    await call("PUT", "/admin/central/feeds/stall", on ? { stalled: true, since_secs_ago: 1800 } : { stalled: false });
    say(on ? "HQ's updates have stopped reaching central (as of 30 minutes ago). The banner turns amber within a few seconds."
      : "HQ's updates flow again.");
  } catch (e) {
    say(`Could not change HQ's updates: ${e.message}`);
  }
  await refresh();
}

async function addSamples() {
  try {
    const r = await call("POST", "/admin/central/samples", { receipt_lines: 44, order_lines: 28, due_orders: 600 });
    say(`Added receipt ${r.receipt.receipt_id} (44 lines), order ${r.order.order_number} (pickup code ${r.order.pickup_code}, 28 items) and 600 orders due in the next day. They arrive with the next feed pull (a few seconds).`);
  } catch (e) {
    say(`Could not add the samples: ${e.message}`);
  }
}

function mount(url) {
  base = url.replace(/\/$/, "");
  panel = document.getElementById("demo");
  if (!panel) return;
  panel.replaceChildren(
    el("summary", {}, "Demo: break central or the card processor, add long receipts"),
    el("p", { class: "small" }, "This panel exists only in standin demo. It drives the simulator; the store keeps working."),
    el("div", { class: "demo-body" }),
    el("p", { class: "demo-msg", role: "status", "aria-live": "polite" }),
  );
  panel.hidden = false;
  panel.addEventListener("toggle", () => panel.open && refresh());
  refresh();
}

onStatus((s) => {
  const url = s.demo?.simulator_url;
  if (url && !base) mount(url);
});
