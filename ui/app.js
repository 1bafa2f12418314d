// The service desk: sign-in, one search box (a barcode scanner types into it and presses
// Enter), the due-soon list, the order view with hand-over and no-show, and reconciliation.
// One page, a hash router: #/ · #/search/TEXT · #/order/ID · #/reconciliation.
import { api, ApiError, setCsrf, signedOut, words } from "./api.js";
import { refreshStatus } from "./status.js";
import "./demo.js";
import { initReturns, findSale, receiptScan, receiptFilter, showReceipt, showReturns, showSlip } from "./returns.js";
import {
  agoSecs, clock, deviceName, dueWords, el, laneName, money, paymentWords, personName, plural, statusWords, when,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const OPEN = new Set(["placed", "ready", "partially_handed_over"]);
const ROLE_WORDS = { associate: "associate", lead: "lead", manager: "manager" };

let session = null;
let dueHours = 4;
let lastInputWasKeyboard = true;
let lastActivity = Date.now();
let searchSeq = 0;
let cachedSearch = null; // { q, orders, at }
let dueTimer = null;
let duePages = 1; // pages of the due-soon list the associate asked to see
let noticeView = null; // the screen a notice belongs to

// ---------- messages ----------

/** A notice for the screen `view` (the one showing, or the one about to show): it goes when
 * the associate moves to another screen, so "Return taken" does not linger on Due soon. */
function notice(text, view = document.body.dataset.view) {
  const n = $("notice");
  n.textContent = text ?? "";
  n.hidden = !text;
  noticeView = text ? view : null;
}

function alertMsg(text) {
  const a = $("alert");
  a.textContent = text ?? "";
  a.hidden = !text;
}

function clearMessages() {
  notice(null);
  alertMsg(null);
}

// ---------- focus ----------

/** The search box keeps focus after actions, so the next scan lands in it. On a touch
 * screen we leave it alone unless the keyboard (or a scanner) was used: focusing would pop
 * up the on-screen keyboard. */
function focusSearch({ select = true, clear = false } = {}) {
  const q = $("q");
  if (clear) q.value = "";
  // On a touch screen the box takes the focus (for the scanner) without popping up the
  // on-screen keyboard; a tap on the box brings the keyboard (below).
  const coarse = window.matchMedia?.("(pointer: coarse)").matches;
  if (coarse && !lastInputWasKeyboard) q.setAttribute("inputmode", "none");
  q.focus();
  if (select) q.select();
}

$("q").addEventListener("pointerdown", () => $("q").removeAttribute("inputmode"));
$("q").addEventListener("blur", () => $("q").removeAttribute("inputmode"));

// The one search box says what it does on each screen.
const BOX = {
  desk: ["Scan or search", "Pickup code, order number, name or phone's last 4",
    "A scanned pickup code opens its order; a scanned receipt opens the sale."],
  returns: ["Find the sale", "Receipt barcode, order number, last 4 of phone, or a pickup code",
    "A scanned receipt opens the sale."],
  receipt: ["Scan an item", "Scan an item's barcode, or type to find a line",
    "A scanned item is ticked on this receipt, and each further scan adds one. Typing shows only the lines that match."],
};
const BOX_OF = { desk: "desk", order: "desk", recon: "desk", returns: "returns", slip: "returns", receipt: "receipt" };

function boxFor(view) {
  const [label, placeholder, hint] = BOX[BOX_OF[view] ?? "desk"];
  $("q-label").textContent = label;
  $("q").placeholder = placeholder;
  $("q-hint").textContent = hint;
}

document.addEventListener("keydown", () => {
  lastInputWasKeyboard = true;
  lastActivity = Date.now();
}, true);
document.addEventListener("pointerdown", () => {
  lastInputWasKeyboard = false;
  lastActivity = Date.now();
}, true);

// ---------- views ----------

function show(view) {
  const before = document.body.dataset.view;
  // Search text belongs to the screen it was typed on, and so does a notice.
  if (before !== view) {
    $("q").value = "";
    if (noticeView !== view) notice(null);
    window.scrollTo(0, 0);
  }
  boxFor(view);
  for (const v of ["signin", "desk", "order", "recon", "returns", "receipt", "slip"]) $(`view-${v}`).hidden = v !== view;
  $("topbar").hidden = view === "signin";
  document.body.dataset.view = view;
  for (const [id, v] of [["nav-desk", "desk"], ["nav-recon", "recon"], ["nav-returns", "returns"]]) {
    const a = $(id);
    if (v === view || (v === "returns" && (view === "receipt" || view === "slip"))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view !== "desk") stopDuePolling();
  // A new screen: its one search box has the focus (the scanner types there either way).
  if (before !== view && view !== "signin" && view !== "slip" && !document.querySelector("dialog[open]")) focusSearch({ select: false });
}

function route() {
  if (!session) return showSignin();
  const h = location.hash || "#/";
  if (h.startsWith("#/order/")) return showOrder(decodeURIComponent(h.slice(8)));
  if (h === "#/reconciliation") return showRecon();
  if (h === "#/returns") return showReturns(null);
  if (h.startsWith("#/returns/search/")) return showReturns(decodeURIComponent(h.slice(17)));
  if (h.startsWith("#/receipt/")) return showReceipt(decodeURIComponent(h.slice(10)));
  if (h === "#/return-slip") return showSlip();
  if (h.startsWith("#/search/")) return showDesk(decodeURIComponent(h.slice(9)));
  return showDesk(null);
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---------- sign-in ----------

function showSignin(message) {
  session = null;
  setCsrf(null);
  show("signin");
  document.title = "Standin — sign in";
  $("signin-error").textContent = message ?? "";
  $("pin").value = "";
  const id = $("employee_id");
  (id.value ? $("pin") : id).focus();
}

function signedIn(s) {
  session = s;
  setCsrf(s.csrf_token);
  $("who").textContent = `${s.name} (${ROLE_WORDS[s.role] ?? s.role})`;
  $("nav-recon").hidden = !(s.role === "lead" || s.role === "manager");
  lastActivity = Date.now();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const employee_id = $("employee_id").value.trim();
  const pin = $("pin").value;
  const err = $("signin-error");
  if (!employee_id || !pin) {
    err.textContent = !employee_id ? "Enter your employee ID." : "Enter your PIN.";
    (!employee_id ? $("employee_id") : $("pin")).focus();
    return;
  }
  const btn = $("signin-btn");
  btn.disabled = true;
  err.textContent = "";
  try {
    const s = await api("POST", "/api/v1/session", { employee_id, pin });
    signedIn(s);
    clearMessages();
    route();
    focusSearch();
  } catch (e) {
    err.textContent = words(e);
    $("pin").value = "";
    $("pin").focus();
  } finally {
    btn.disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  try {
    await api("DELETE", "/api/v1/session");
  } catch {
    // Signed out either way.
  }
  $("employee_id").value = "";
  clearMessages();
  showSignin("You are signed out.");
});

signedOut.addEventListener("signed-out", () => {
  if (!session) return;
  clearMessages();
  showSignin("Your session ended. Sign in again to carry on.");
});

// The server ends a session after idle_minutes without a request; the desk's own polling
// would keep it alive, so the desk signs out after that long without anyone touching it.
setInterval(async () => {
  if (!session) return;
  const idleMs = (session.idle_minutes ?? 15) * 60_000;
  if (Date.now() - lastActivity < idleMs) return;
  try {
    await api("DELETE", "/api/v1/session");
  } catch {
    // Already ended.
  }
  showSignin(`Signed out after ${session?.idle_minutes ?? 15} minutes without use.`);
}, 20_000);

// ---------- search ----------

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("q").value.trim();
  const view = document.body.dataset.view;
  clearMessages();
  if (view === "receipt") {
    // An item on the open receipt: ticked (or one more); anything else is searched as usual.
    if (!q || receiptScan(q)) return;
  } else if (view === "returns" || view === "slip") {
    if (q) findSale(q);
    else focusSearch();
    return;
  }
  if (!q) {
    go("#/");
    focusSearch();
    return;
  }
  const seq = ++searchSeq;
  let orders;
  try {
    orders = (await api("GET", `/api/v1/pickups?q=${encodeURIComponent(q)}`)).orders;
  } catch (e) {
    if (seq === searchSeq && !(e instanceof ApiError && e.status === 401)) alertMsg(words(e));
    return;
  }
  if (seq !== searchSeq) return; // a newer scan came in meanwhile
  if (!orders.length) {
    // Not a pickup: a scanned receipt (or its order number) opens the sale for a return.
    const receipts = await api("GET", `/api/v1/receipts?q=${encodeURIComponent(q)}`).then((r) => r.receipts, () => []);
    if (seq !== searchSeq) return;
    if (receipts.length === 1 && receipts[0].receipt_id === q) {
      go(`#/receipt/${encodeURIComponent(q)}`);
      return;
    }
  }
  cachedSearch = { q, orders, at: Date.now() };
  if (orders.length === 1) go(`#/order/${encodeURIComponent(orders[0].order_id)}`);
  else go(`#/search/${encodeURIComponent(q)}`);
  focusSearch();
});

$("q").addEventListener("input", () => {
  if (document.body.dataset.view === "receipt") receiptFilter($("q").value);
});

$("results-clear").addEventListener("click", () => {
  $("q").value = "";
  go("#/");
  focusSearch();
});

// A scanner types wherever the focus is. When it is on no text field (after a tap on a
// checkbox, say), the keys go to the search box instead of being lost.
document.addEventListener("keydown", (ev) => {
  if (!session || ev.ctrlKey || ev.metaKey || ev.altKey || ev.key.length !== 1 || ev.key === " ") return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement || t?.isContentEditable) return;
  if ($("topbar").hidden) return;
  ev.preventDefault();
  const q = $("q");
  q.value = "";
  q.focus();
  q.value = ev.key;
  q.dispatchEvent(new Event("input"));
});

document.addEventListener("keydown", (ev) => {
  if (!session) return;
  // Escape: back to the desk from anywhere, search box ready for the next scan.
  if (ev.key === "Escape" && !ev.defaultPrevented && document.body.dataset.view !== "desk") {
    if (document.querySelector("dialog[open]")) return; // Escape closes the dialog first
    ev.preventDefault();
    const view = document.body.dataset.view;
    if (view === "receipt" || view === "slip") {
      go("#/returns");
      focusSearch();
      return;
    }
    go("#/");
    focusSearch();
  }
});

// ---------- order rows ----------

function badge(text, cls) {
  return el("span", { class: `badge ${cls}` }, text);
}

function orderRow(o, now) {
  const st = statusWords(o.status);
  const open = OPEN.has(o.status);
  const overdue = open && new Date(o.due_at) < now;
  return el("li", {},
    el("a", {
      class: `order-row${overdue ? " overdue" : ""}`,
      href: `#/order/${encodeURIComponent(o.order_id)}`,
      dataset: { orderId: o.order_id, pickupCode: o.pickup_code, status: o.status },
    },
    el("span", { class: "due" },
      el("strong", {}, when(o.due_at, now)),
      el("span", { class: "small" }, open ? dueWords(o.due_at, now) : "")),
    el("span", { class: "who" },
      el("strong", {}, o.customer_name),
      el("span", { class: "keys" }, "Order ", el("span", { class: "number" }, o.order_number),
        " · code ", el("span", { class: "code" }, o.pickup_code), ` · phone …${o.phone_last4}`)),
    el("span", { class: "flags" },
      badge(st.text, st.cls),
      o.payment_state !== "paid" ? badge(paymentWords(o.payment_state), "stop") : null,
      o.requires_id_check ? badge("ID check", "id") : null,
      o.needs_attention ? badge("Needs attention", "stop") : null),
    el("span", { class: "items" }, plural(o.items, "item"))));
}

// ---------- desk: due soon and search results ----------

function stopDuePolling() {
  clearInterval(dueTimer);
  dueTimer = null;
}

async function showDesk(q) {
  show("desk");
  document.title = "Standin — service desk";
  renderHours();
  loadDue();
  stopDuePolling();
  dueTimer = setInterval(() => {
    if (document.visibilityState === "visible") loadDue();
  }, 30_000);
  const results = $("results");
  if (!q) {
    results.hidden = true;
    return;
  }
  $("q").value = q;
  let orders;
  if (cachedSearch && cachedSearch.q === q && Date.now() - cachedSearch.at < 5_000) {
    orders = cachedSearch.orders;
  } else {
    try {
      orders = (await api("GET", `/api/v1/pickups?q=${encodeURIComponent(q)}`)).orders;
    } catch (e) {
      alertMsg(words(e));
      return;
    }
  }
  cachedSearch = null;
  results.hidden = false;
  $("results-h").textContent = orders.length
    ? `${plural(orders.length, "order")} match “${q}”`
    : `No order matches “${q}”. Check the code, or search by name or the last 4 of the phone.`;
  const now = new Date();
  $("results-list").replaceChildren(...orders.map((o) => orderRow(o, now)));
}

function renderHours() {
  $("due-h").textContent = `Due in the next ${dueHours} hours`;
  for (const b of document.querySelectorAll(".seg-btn")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.hours) === dueHours));
  }
}

for (const b of document.querySelectorAll(".seg-btn")) {
  b.addEventListener("click", () => {
    dueHours = Number(b.dataset.hours);
    duePages = 1;
    renderHours();
    loadDue();
  });
}

$("due-more").addEventListener("click", async () => {
  const shown = document.querySelectorAll("#due-list .order-row").length;
  duePages += 1;
  await loadDue();
  // The keyboard goes on from the first order just added.
  document.querySelectorAll("#due-list .order-row")[shown]?.focus();
});

let dueLoading = 0;

/** The due-soon list: its first page, and as many more as the associate asked to see. */
async function loadDue() {
  const seq = ++dueLoading;
  const hours = dueHours;
  let data;
  const orders = [];
  try {
    let after = null;
    for (let page = 0; page < duePages; page += 1) {
      const more = after ? `&after=${encodeURIComponent(after)}` : "";
      data = await api("GET", `/api/v1/pickups?due_within_hours=${hours}${more}`);
      orders.push(...data.orders);
      after = data.next_after;
      if (!after) break;
    }
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $("due-summary").textContent = words(e);
    return;
  }
  if (seq !== dueLoading) return; // a newer load (another window, a refresh) is under way
  const now = new Date();
  const total = data.total ?? orders.length;
  const todo = orders.filter((o) => o.status === "placed").length;
  const overdue = orders.filter((o) => new Date(o.due_at) < now).length;
  const parts = [orders.length ? plural(total, "order") : "No orders due"];
  if (todo) parts.push(`${todo} not staged yet${orders.length < total ? " of those shown" : ""}`);
  if (overdue) parts.push(`${overdue} overdue`);
  if (data.as_of) parts.push(`orders as of ${clock(data.as_of)}`);
  $("due-summary").textContent = parts.join(" · ");
  // Cut: say where, and offer the rest.
  const cut = $("due-cut");
  const more = $("due-more");
  const left = total - orders.length;
  if (data.next_after && left > 0) {
    const last = orders[orders.length - 1];
    cut.hidden = false;
    cut.textContent = `Showing the first ${orders.length.toLocaleString()} of ${total.toLocaleString()} orders due in the next ${hours} hours: due up to ${when(last.due_at, now)}. ${left.toLocaleString()} more are due after that.`;
    more.hidden = false;
    more.textContent = `Show the next ${Math.min(left, 500).toLocaleString()} orders (due after ${when(last.due_at, now)})`;
  } else {
    cut.hidden = true;
    more.hidden = true;
  }
  // Refreshing the list keeps the keyboard where it was.
  const focused = document.activeElement?.closest?.("#due-list .order-row")?.dataset.orderId;
  $("due-list").replaceChildren(...orders.map((o) => orderRow(o, now)));
  if (focused) document.querySelector(`#due-list [data-order-id="${CSS.escape(focused)}"]`)?.focus();
}

// ---------- one order ----------

let current = null; // the order shown

async function showOrder(id) {
  show("order");
  const view = $("view-order");
  if (!current || current.order_id !== id) view.replaceChildren(el("p", { class: "summary" }, "Loading the order…"));
  let o;
  try {
    o = await api("GET", `/api/v1/pickups/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    view.replaceChildren(
      el("h1", { id: "order-h", tabindex: "-1" }, "Order not found"),
      el("p", { class: "form-error" }, words(e)),
      el("a", { class: "button", href: "#/" }, "Back to due soon"));
    return;
  }
  current = o;
  document.title = `Standin — order ${o.order_number}`;
  renderOrder(o);
}

function lineRow(o, l, open) {
  const left = l.remaining_qty;
  const id = `line-${l.line}`;
  const can = open && left > 0;
  const check = el("input", {
    type: "checkbox", id, class: "line-check", checked: can, disabled: !can,
    dataset: { line: String(l.line) }, "aria-describedby": `${id}-left`,
  });
  let qty = null;
  if (can && left > 1) {
    const input = el("input", {
      type: "number", class: "qty", min: "1", max: String(left), value: String(left), inputmode: "numeric",
      id: `${id}-qty`, "aria-label": `How many of ${l.description} to hand over`, dataset: { line: String(l.line) },
    });
    const step = (d) => () => {
      const v = Math.min(left, Math.max(1, (Number(input.value) || 0) + d));
      input.value = String(v);
      check.checked = true;
      update();
    };
    qty = el("span", { class: "stepper" },
      el("button", { type: "button", class: "step", "aria-label": `One fewer ${l.description}`, onclick: step(-1) }, "−"),
      input,
      el("button", { type: "button", class: "step", "aria-label": `One more ${l.description}`, onclick: step(1) }, "+"));
    input.addEventListener("input", () => {
      check.checked = Number(input.value) > 0;
      update();
    });
  } else {
    qty = el("span", { class: "qty-fixed" }, can ? "1" : "—");
  }
  return el("tr", { class: can ? "" : "done", dataset: { line: String(l.line) } },
    open ? el("td", { class: "pick" }, check) : null,
    el("td", {},
      el("label", { for: id }, el("strong", {}, l.description)),
      el("div", { class: "small" }, `SKU ${l.sku} · ${money(l.unit_price_minor, o.currency)} each`),
      l.requires_id_check ? badge("ID check", "id") : null),
    open ? el("td", { class: "qty-cell" }, qty) : null,
    el("td", { class: "small", id: `${id}-left` },
      !l.handed_over_qty ? `${l.qty} ordered` : left ? `${l.handed_over_qty} of ${l.qty} handed over, ${left} left` : `${l.qty} handed over`));
}

/** What the form would hand over: [{line, qty, requires_id_check, description}]. */
function chosen() {
  const out = [];
  for (const c of document.querySelectorAll("#view-order .line-check")) {
    if (!c.checked || c.disabled) continue;
    const line = Number(c.dataset.line);
    const l = current.lines.find((x) => x.line === line);
    const input = document.getElementById(`line-${line}-qty`);
    const qty = input ? Math.max(0, Math.min(l.remaining_qty, Math.floor(Number(input.value) || 0))) : 1;
    if (qty > 0) out.push({ line, qty, requires_id_check: l.requires_id_check, description: l.description });
  }
  return out;
}

function update() {
  const btn = $("handover-btn");
  if (!btn || !current) return;
  const picked = chosen();
  const n = picked.reduce((a, x) => a + x.qty, 0);
  const all = current.lines.reduce((a, l) => a + l.remaining_qty, 0);
  const label = n === 0 ? "Choose items to hand over" : n === all ? `Hand over everything (${plural(n, "item")})` : `Hand over ${plural(n, "item")}`;
  for (const b of [btn, $("handover-btn-end")]) {
    if (!b) continue;
    b.textContent = label;
    b.disabled = n === 0;
  }
  const needId = picked.filter((x) => x.requires_id_check);
  const box = $("idcheck");
  box.hidden = needId.length === 0;
  $("idcheck-what").textContent = [...new Set(needId.map((x) => x.description))].join(", ");
}

function orderError(text) {
  const e = $("order-error");
  if (e) e.textContent = text ?? "";
}

/** Who did it, in words: the name from the staff list, else the employee id. */
function byWho(x) {
  return personName(x.by, x.by_name);
}

function stopReason(o) {
  switch (o.status) {
    case "cancelled": return "Stop: this order was cancelled. Do not hand it over.";
    case "handed_over": {
      const last = (o.handovers ?? []).at(-1);
      const when_ = last ? ` at ${when(last.at)} by ${byWho(last)}` : "";
      return `Stop: this order was already collected${when_}. Do not hand anything over.`;
    }
    case "no_show": return o.payment_state === "pay_at_pickup"
      ? "This order is marked as a no-show, and it is not paid."
      : "This order is marked as a no-show. If the customer came after all, you can still hand it over.";
    default:
      if (o.payment_state === "pay_at_pickup") return "Not paid: the customer has to pay before you hand this order over.";
      return null;
  }
}

/** Central refused or found in conflict a hand-over of this order: said on the order, to everyone. */
function refusalWords(o) {
  const r = o.central_refusal ?? (o.conflict ? { outcome: "conflict", reason: o.conflict.reason } : null);
  if (!r && !o.needs_attention) return null;
  const why = r?.reason ? ` (${String(r.reason).replace(/_/g, " ")})` : "";
  const what = r?.outcome === "rejected" ? `central refused the hand-over${why}` : `central found the hand-over in conflict${why}: it may have cancelled the order`;
  return `Needs attention: ${what}. A lead or manager sorts it out in Reconciliation; do not hand it over again.`;
}

function renderOrder(o) {
  const view = $("view-order");
  const st = statusWords(o.status);
  const open = OPEN.has(o.status);
  const stop = stopReason(o);
  const attention = refusalWords(o);
  // A customer marked as a no-show may still turn up: the order can be handed over after all.
  const canHandOver = (open || o.status === "no_show") && o.payment_state !== "pay_at_pickup";
  const now = new Date();
  // An order already collected (or refused by central) is a stop, never green.
  const stateCls = attention || o.status === "handed_over" ? "stop" : st.cls;
  const stateText = attention ? `${st.text}, refused by central` : st.text;

  const facts = el("dl", { class: "facts" },
    el("div", {}, el("dt", {}, "Pickup code"), el("dd", { class: "code" }, o.pickup_code)),
    el("div", {}, el("dt", {}, "Due"), el("dd", {}, when(o.due_at, now), open ? el("span", { class: "small" }, dueWords(o.due_at, now)) : null)),
    el("div", {}, el("dt", {}, "State"), el("dd", { id: "order-state" }, badge(stateText, stateCls))),
    el("div", {}, el("dt", {}, "Payment"), el("dd", {}, badge(paymentWords(o.payment_state), o.payment_state === "paid" ? "done" : "stop"))),
    el("div", {}, el("dt", {}, "Total"), el("dd", {}, money(o.total_minor, o.currency), el("span", { class: "small" }, plural(o.items, "item")))),
    el("div", {}, el("dt", {}, "Phone"), el("dd", {}, `…${o.phone_last4}`)));

  const parts = [
    el("h1", { id: "order-h", tabindex: "-1" }, `${o.customer_name} · order ${o.order_number}`),
    facts,
    el("p", { class: "fresh small" }, `Order data as of ${clock(o.as_of)}, ${agoSecs(o.age_secs)}.`),
  ];
  if (attention) parts.push(el("p", { class: "callout stop", id: "order-attention", role: "note" }, attention));
  if (stop) parts.push(el("p", { class: `callout ${o.status === "no_show" && canHandOver ? "warn" : "stop"}`, id: "order-stop" }, stop));

  const rows = o.lines.map((l) => lineRow(o, l, canHandOver));
  const table = el("table", { class: "lines" },
    el("caption", { class: "visually-hidden" }, "Items on this order"),
    el("thead", {}, el("tr", {},
      canHandOver ? el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Hand over")) : null,
      el("th", { scope: "col" }, "Item"),
      canHandOver ? el("th", { scope: "col" }, "How many") : null,
      el("th", { scope: "col" }, "Ordered"))),
    el("tbody", {}, rows));

  const tickable = canHandOver && o.lines.some((l) => l.remaining_qty > 0);
  // The hand-over comes first after the facts, so from the search box (where the scan
  // landed) it is Tab, Tab, Enter; nothing sticks over the lines below.
  const form = el("form", { id: "handover-form", class: canHandOver ? "" : "readonly", novalidate: true },
    el("div", { class: "actionbar" },
      canHandOver ? el("div", { class: "idcheck", id: "idcheck", hidden: true },
        el("input", { type: "checkbox", id: "id-checked", "aria-describedby": "idcheck-what" }),
        el("label", { for: "id-checked" }, el("strong", {}, "ID checked: "), "I checked the customer's photo ID and they may have ",
          el("span", { class: "what", id: "idcheck-what" }), ".")) : null,
      el("p", { class: "form-error", id: "order-error", role: "alert" }),
      el("div", { class: "actions" },
        canHandOver ? el("button", { type: "submit", class: "button big primary", id: "handover-btn" }, "Hand over") : null,
        open ? el("button", { type: "button", class: "button big secondary", id: "noshow-btn", onclick: askNoShow }, "Mark as no-show") : null,
        el("a", { class: "button big secondary", href: "#/", id: "order-back" }, "Back (Esc)")),
      el("div", { class: "confirm", id: "noshow-confirm", hidden: true },
        el("p", {}, el("strong", {}, `Mark order ${o.order_number} as a no-show?`), " The customer did not come to collect it."),
        el("button", { type: "button", class: "button big danger", id: "noshow-yes", onclick: doNoShow }, "Yes, mark as no-show"),
        el("button", { type: "button", class: "button big secondary", onclick: cancelNoShow }, "Keep the order"))),
    el("fieldset", {},
      el("legend", { class: "visually-hidden" }, canHandOver ? "Tick what the customer takes" : "Items"),
      el("div", { class: "section-head lines-head" },
        el("span", { class: "lines-title", "aria-hidden": "true" }, canHandOver ? "Tick what the customer takes" : "Items"),
        tickable ? el("div", { class: "pickall" },
          el("button", { type: "button", class: "button secondary", onclick: () => tickAll(true) }, "Tick all"),
          el("button", { type: "button", class: "button secondary", onclick: () => tickAll(false) }, "Untick all")) : null),
      table),
    // A long order: the button again below its last line, so nobody scrolls back up for it.
    canHandOver && o.lines.length > 8 ? el("div", { class: "actionbar end" },
      el("div", { class: "actions" }, el("button", { type: "submit", class: "button big primary", id: "handover-btn-end" }, "Hand over"))) : null);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    doHandOver();
  });
  form.addEventListener("change", update);
  parts.push(form);

  const history = [];
  for (const h of o.handovers ?? []) {
    const n = h.lines.reduce((a, x) => a + x.qty, 0);
    const refused = h.central_outcome === "rejected" || h.central_outcome === "conflict";
    history.push(el("li", { class: refused ? "refused" : null },
      `${when(h.at, now)}: ${plural(n, "item")} handed over by ${byWho(h)}${h.id_checked ? ", ID checked" : ""}`,
      refused ? el("strong", {}, ` — ${h.central_outcome === "rejected" ? "refused" : "in conflict"} by central${h.central_reason ? ` (${String(h.central_reason).replace(/_/g, " ")})` : ""}`) : null));
  }
  if (o.no_show) history.push(el("li", {}, `${when(o.no_show.at, now)}: marked as a no-show by ${byWho(o.no_show)}`));
  if (history.length) parts.push(el("section", { "aria-labelledby": "history-h" }, el("h2", { id: "history-h" }, "What happened"), el("ul", { class: "history" }, history)));

  view.replaceChildren(...parts);
  update();
}

function tickAll(on) {
  for (const c of document.querySelectorAll("#view-order .line-check")) if (!c.disabled) c.checked = on;
  update();
}

// The hand-over attempt whose answer never came (network, timeout, 5xx): pressing "Hand over"
// again for the same order and the same items resends its request_id, so Standin answers it
// instead of recording it twice. A new attempt gets a new id.
let pendingHandOver = null; // { order_id, asked, request_id }

/** A random id (crypto.randomUUID needs a secure context; a store LAN may not be one). */
function newRequestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function doHandOver() {
  orderError("");
  clearMessages();
  const picked = chosen();
  if (!picked.length) {
    orderError("Tick at least one item.");
    return;
  }
  const idBox = $("id-checked");
  const needId = picked.some((x) => x.requires_id_check);
  if (needId && !idBox.checked) {
    orderError(words(new ApiError(422, "id_check_required", "")));
    idBox.setAttribute("aria-invalid", "true");
    idBox.focus();
    return;
  }
  const remaining = current.lines.reduce((a, l) => a + l.remaining_qty, 0);
  const n = picked.reduce((a, x) => a + x.qty, 0);
  const body = {
    lines: n === remaining ? [] : picked.map(({ line, qty }) => ({ line, qty })),
    id_checked: Boolean(idBox?.checked),
  };
  const asked = JSON.stringify(body);
  const retry = pendingHandOver?.order_id === current.order_id && pendingHandOver.asked === asked;
  if (!retry) pendingHandOver = { order_id: current.order_id, asked, request_id: newRequestId() };
  body.request_id = pendingHandOver.request_id;
  const btn = $("handover-btn");
  btn.disabled = true;
  btn.textContent = "Handing over…";
  let o;
  try {
    o = await api("POST", `/api/v1/pickups/${encodeURIComponent(current.order_id)}/handover`, body);
  } catch (e) {
    // A 4xx is a definite answer: nothing was recorded, the next press is a new attempt.
    if (e instanceof ApiError && e.status >= 400 && e.status < 500) pendingHandOver = null;
    if (e instanceof ApiError && e.status === 401) return;
    showRefusal(e);
    return;
  }
  pendingHandOver = null;
  refreshStatus();
  const what = `${plural(n, "item")} of order ${o.order_number} to ${o.customer_name}`;
  if (o.status === "handed_over") {
    current = null;
    go("#/");
    notice(`Handed over ${what}. Done.`, "desk");
    focusSearch({ clear: true });
  } else {
    current = o;
    renderOrder(o);
    const left = o.lines.reduce((a, l) => a + l.remaining_qty, 0);
    notice(`Handed over ${what}. ${plural(left, "item")} still to collect.`);
    focusSearch();
  }
}

async function showRefusal(e) {
  orderError(words(e));
  if (e.field === "id_checked") {
    const box = $("id-checked");
    if (box) {
      box.setAttribute("aria-invalid", "true");
      $("idcheck").hidden = false;
      box.focus();
    }
    update();
    return;
  }
  const m = /^lines\[(\d+)\]/.exec(e.field ?? "");
  if (m) {
    const picked = chosen()[Number(m[1])];
    const row = picked && document.querySelector(`#view-order tr[data-line="${picked.line}"]`);
    if (row) row.classList.add("invalid");
  }
  // The order changed under us (cancelled, handed over elsewhere): show it as it is now,
  // keeping the refusal on screen.
  if (e.status === 409) {
    const text = words(e);
    try {
      current = await api("GET", `/api/v1/pickups/${encodeURIComponent(current.order_id)}`);
      renderOrder(current);
    } catch {
      // keep what we have
    }
    orderError(text);
  } else {
    update();
  }
}

function askNoShow() {
  $("noshow-confirm").hidden = false;
  $("noshow-yes").focus();
}

function cancelNoShow() {
  $("noshow-confirm").hidden = true;
  $("noshow-btn")?.focus();
}

async function doNoShow() {
  orderError("");
  clearMessages();
  let o;
  try {
    o = await api("POST", `/api/v1/pickups/${encodeURIComponent(current.order_id)}/no-show`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    $("noshow-confirm").hidden = true;
    showRefusal(e);
    return;
  }
  refreshStatus();
  current = null;
  go("#/");
  notice(`Order ${o.order_number} (${o.customer_name}) is marked as a no-show.`, "desk");
  focusSearch({ clear: true });
}

// ---------- reconciliation ----------

const KIND_WORDS = {
  "pickup.handover": "Hand-over", "pickup.handed_over": "Hand-over", "pickup.no_show": "No-show",
  "return.taken": "Return", "return.refund_declined": "Return: card refund", "return.refund_failed": "Return: card refund",
};
const OUTCOME_WORDS = {
  rejected: "Refused by central", conflict: "Conflict with central",
  declined: "Card refund declined", failed: "Card refund not sent",
  declined_after_forward: "Card declined after the sale", expired: "Never reached the processor",
  paid_without_sale: "Paid, but no sale recorded",
};

const LANE_WORDS = { payments: "Payments", returns: "Returns", pickups: "Pickups", audit: "Audit" };

function kindWords(kind) {
  if (KIND_WORDS[kind]) return KIND_WORDS[kind];
  const s = String(kind).replace(/[._]/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function bodyWords(body) {
  if (!body || typeof body !== "object") return "";
  const out = [];
  if (body.order_number) out.push(`order ${body.order_number}`);
  if (body.payment) out.push(`basket ${body.basket_id}, ${money(body.amount_minor)}`);
  if (body.receipt_id) out.push(`receipt ${body.receipt_id}`);
  if (body.refund_key && body.amount_minor != null) out.push(`refund of ${money(body.amount_minor)} to ${body.tender?.brand ?? body.tender?.kind ?? "the card"} …${body.tender?.last4 ?? ""}`);
  if (body.customer_name) out.push(body.customer_name);
  if (Array.isArray(body.lines)) {
    const n = body.lines.reduce((a, l) => a + (Number(l.qty) || 0), 0);
    out.push(n ? plural(n, "item") : plural(body.lines.length, "line"));
  }
  if (body.id_checked) out.push("ID checked");
  if (out.length) return out.join(" · ");
  const s = JSON.stringify(body);
  return s.length > 120 ? `${s.slice(0, 117)}…` : s;
}

async function showRecon() {
  show("recon");
  document.title = "Standin — reconciliation";
  const body = $("recon-body");
  const csv = $("recon-csv");
  body.replaceChildren(el("p", { class: "summary" }, "Loading…"));
  let data;
  try {
    data = await api("GET", "/api/v1/reconciliation");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    csv.hidden = true;
    body.replaceChildren(el("p", { class: "callout stop", id: "recon-refused" },
      e.status === 403 ? "Only leads and managers can see reconciliation. Ask your lead." : words(e)));
    return;
  }
  csv.hidden = false;
  const now = new Date();
  // Card refunds the processor declined are listed with what central refused.
  // Kiosk payments approved offline that the processor then declined, or that expired before
  // they could be sent: money the store may not collect, with the basket, lane and time.
  const payments = (data.payments ?? []).map((p) => ({
    seq: "", occurred_at: p.created_at, lane: "payments", kind: `payment.${p.status}`,
    actor: laneName(p.lane) || deviceName(p.device_id), kiosk: true, device: null, outcome: p.status, reason: p.reason,
    body: { basket_id: p.basket_id, amount_minor: p.amount_minor, receipt_id: p.sale?.receipt_id, payment: true },
  }));
  data.items = [...data.items, ...(data.refunds ?? []), ...payments];
  if (!data.items.length) {
    body.replaceChildren(el("p", { class: "callout done" },
      `Nothing needs a person: everything the store did reached central. (Checked ${clock(data.generated_at)}.)`));
    return;
  }
  body.replaceChildren(
    el("p", { class: "summary" }, `${plural(data.items.length, "entry", "entries")} to look at · generated ${clock(data.generated_at)}`),
    el("table", { class: "recon" },
      el("thead", {}, el("tr", {}, ...["When", "What", "Who", "Outcome", "Reason", "Details"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, data.items.map((it) => el("tr", { dataset: { seq: String(it.seq) } },
        el("td", {}, when(it.occurred_at, now)),
        el("td", {}, `${kindWords(it.kind)}`, el("div", { class: "small" }, it.seq === "" ? `${LANE_WORDS[it.lane] ?? it.lane}` : `${LANE_WORDS[it.lane] ?? it.lane} · entry ${it.seq}`)),
        el("td", {}, it.kiosk ? it.actor : personName(it.actor, data.names?.[it.actor]), it.device ? el("div", { class: "small" }, deviceName(it.device)) : null),
        el("td", {}, badge(OUTCOME_WORDS[it.outcome] ?? it.outcome, "stop")),
        el("td", {}, it.reason ? String(it.reason).replace(/_/g, " ") : ""),
        el("td", { class: "small" }, bodyWords(it.body),
          it.body?.order_id ? el("div", {}, el("a", { href: `#/order/${encodeURIComponent(it.body.order_id)}` }, "Open the order")) : null,
          it.body?.receipt_id && !it.body?.payment ? el("div", {}, el("a", { href: `#/receipt/${encodeURIComponent(it.body.receipt_id)}` }, "Open the receipt")) : null))))));
}

// ---------- start ----------

window.addEventListener("hashchange", () => {
  alertMsg(null);
  route();
});

initReturns({ show, notice, alertMsg, clearMessages, focusSearch, go, session: () => session });

async function start() {
  try {
    signedIn(await api("GET", "/api/v1/session"));
  } catch {
    session = null;
  }
  route();
  if (session) focusSearch();
}

start();
