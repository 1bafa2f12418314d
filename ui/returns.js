// Returns at the desk: find the sale (barcode, order number, phone last 4, or the card and a
// date range), tick lines and quantities, see the refund and how it goes back, a manager's
// override when the offline limits need one, and a printable return slip.
// Routes: #/returns · #/returns/search/TEXT · #/receipt/ID · #/return-slip
import { api, ApiError, words } from "./api.js";
import { latestStatus, refreshStatus } from "./status.js";
import { agoSecs, clock, el, laneName, money, personName, plural, when } from "./format.js";

const $ = (id) => document.getElementById(id);

const REASONS = [
  ["changed_mind", "Changed mind"],
  ["defective", "Faulty or does not work"],
  ["damaged", "Damaged"],
  ["wrong_item", "Wrong item or size"],
  ["other", "Other"],
];

function reasonOptions() {
  return [el("option", { value: "" }, "Choose why…"), ...REASONS.map(([v, t]) => el("option", { value: v }, t))];
}

const REFUSAL_WORDS = {
  not_returnable: () => "Cannot be returned",
  return_window_passed: (l) => `Return window closed ${new Date(l.window_ends_at).toLocaleDateString([], { day: "numeric", month: "short" })}`,
  fully_returned: () => "Already returned",
};

const RETURN_WORDS = {
  override_required: "This refund needs a manager's approval.",
  override_not_accepted: "That manager ID and PIN do not match. Try again.",
  override_not_manager: "Only a manager can approve this. Ask a manager to enter their own ID and PIN.",
  too_many: "More than is left to return on a line. The receipt was reloaded: check the quantities.",
  fully_returned: "That item has already been returned. The receipt was reloaded.",
  return_window_passed: "The return window for that item has closed.",
  not_returnable: "That item cannot be returned.",
  no_receipt_offline: "Returns without a receipt are not possible while central is down.",
  no_lines: "Tick at least one item to return.",
  refund_exceeds_payment: "This refund would be more than was paid on the receipt. Call a manager.",
};

function returnWords(e) {
  return (e instanceof ApiError && RETURN_WORDS[e.code]) || words(e);
}

let ctx = null; // { show, notice, alertMsg, clearMessages, focusSearch, go, session }
let receipt = null; // the receipt shown
let requestId = null; // one per return attempt, reused for the override's retry
let lastSlip = null;

/** A random id for the request (crypto.randomUUID needs a secure context; a store LAN may not be one). */
function newRequestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function initReturns(context) {
  ctx = context;
  $("card-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchCard();
  });
  $("nr-reason").replaceChildren(...reasonOptions());
  $("nr-reason").addEventListener("change", () => $("nr-reason").removeAttribute("aria-invalid"));
  $("no-receipt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    takeNoReceipt(null);
  });
  $("override-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitOverride();
  });
  $("override-cancel").addEventListener("click", () => closeOverride());
  $("override-dialog").addEventListener("cancel", () => closeOverride());
}

/** #/returns and #/returns/search/TEXT */
export async function showReturns(q) {
  ctx.show("returns");
  document.title = "Standin — returns";
  const list = $("receipt-results");
  $("pickup-offer").hidden = true;
  if (!q) {
    $("receipt-results-h").textContent = "";
    list.replaceChildren();
    ctx.focusSearch();
    return;
  }
  $("q").value = q;
  await searchText(q, { stay: true });
}

/** The Returns screen's search (the one box at the top): a sale, or else the pickup order the
 * text names, offered as such. */
export function findSale(q) {
  return searchText(q);
}

async function searchText(q, { stay = false } = {}) {
  ctx.clearMessages();
  let data;
  try {
    data = await api("GET", `/api/v1/receipts?q=${encodeURIComponent(q)}`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) ctx.alertMsg(words(e));
    return;
  }
  if (data.receipts.length === 1 && !stay) {
    ctx.go(`#/receipt/${encodeURIComponent(data.receipts[0].receipt_id)}`);
    return;
  }
  if (!stay) history.replaceState(null, "", `#/returns/search/${encodeURIComponent(q)}`);
  const offer = data.receipts.length ? null : await pickupOffer(q);
  renderResults(data.receipts, data.receipts.length
    ? `${plural(data.receipts.length, "sale")} match “${q}”`
    : offer ? `No sale matches “${q}”, but it is a pickup order.`
      : `No sale matches “${q}”. Scan the receipt's barcode, or search by the card.`);
  const box = $("pickup-offer");
  box.hidden = !offer;
  box.replaceChildren(...(offer ? [offer] : []));
  if (offer) box.querySelector("a")?.focus();
}

/** A pickup code or order number typed on Returns: the order it names, to open instead. */
async function pickupOffer(q) {
  let orders;
  try {
    orders = (await api("GET", `/api/v1/pickups?q=${encodeURIComponent(q)}`)).orders;
  } catch {
    return null;
  }
  const key = q.trim().toUpperCase();
  const o = orders.find((x) => x.pickup_code === key || x.order_number.toUpperCase() === key);
  if (!o) return null;
  return el("div", { class: "callout warn pickup-offer", id: "pickup-offer-card" },
    el("p", {}, `“${q}” is the ${o.pickup_code === key ? "pickup code" : "number"} of pickup order ${o.order_number} for ${o.customer_name}, not a sale.`),
    el("a", { class: "button big primary", href: `#/order/${encodeURIComponent(o.order_id)}`, id: "open-pickup" }, `Open pickup order ${o.order_number}`));
}

async function searchCard() {
  ctx.clearMessages();
  const brand = $("card-brand").value;
  const last4 = $("card-last4").value.trim();
  if (!/^\d{4}$/.test(last4)) {
    $("card-error").textContent = "Enter the last 4 digits of the card.";
    $("card-last4").focus();
    return;
  }
  $("card-error").textContent = "";
  const params = new URLSearchParams({ card_brand: brand, last4 });
  if ($("card-from").value) params.set("from", $("card-from").value);
  if ($("card-to").value) params.set("to", $("card-to").value);
  let data;
  try {
    data = await api("GET", `/api/v1/receipts?${params}`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $("card-error").textContent = words(e);
    return;
  }
  const name = $("card-brand").selectedOptions[0]?.textContent ?? brand;
  renderResults(data.receipts, data.receipts.length
    ? `${plural(data.receipts.length, "sale")} paid with ${name} …${last4}`
    : `No sale paid with ${name} …${last4} in those dates.`);
}

function tenderWords(t) {
  if (t.kind === "cash") return "Cash";
  const name = { card: "Card", app_pay: "App pay", gift_card: "Gift card" }[t.kind] ?? t.kind;
  return [t.brand ? t.brand.toUpperCase() : name, t.last4 ? `…${t.last4}` : ""].filter(Boolean).join(" ");
}

function renderResults(receipts, heading) {
  const now = new Date();
  $("receipt-results-h").textContent = heading;
  $("receipt-results").replaceChildren(...receipts.map((r) => el("li", {},
    el("a", { class: "order-row receipt-row", href: `#/receipt/${encodeURIComponent(r.receipt_id)}`, dataset: { receiptId: r.receipt_id } },
      el("span", { class: "due" }, el("strong", {}, when(r.sold_at, now)), el("span", { class: "small" }, laneName(r.lane))),
      el("span", { class: "who" },
        el("strong", {}, `Receipt ${r.receipt_id}`),
        el("span", { class: "keys" }, [r.order_number ? `order ${r.order_number}` : null, r.customer_phone_last4 ? `phone …${r.customer_phone_last4}` : null,
          r.tenders.map(tenderWords).join(" + ")].filter(Boolean).join(" · "))),
      el("span", { class: "flags" }, money(r.total_minor, r.currency)),
      el("span", { class: "items" }, plural(r.items, "item"))))));
  $("receipt-results-h").focus();
}

// ---------- one receipt ----------

/** #/receipt/ID */
export async function showReceipt(id) {
  ctx.show("receipt");
  const view = $("view-receipt");
  if (!receipt || receipt.receipt_id !== id) view.replaceChildren(el("p", { class: "summary" }, "Loading the sale…"));
  let r;
  try {
    r = await api("GET", `/api/v1/receipts/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    view.replaceChildren(
      el("h1", { id: "receipt-h", tabindex: "-1" }, "Sale not found"),
      el("p", { class: "form-error" }, e.status === 404 ? "There is no such receipt in this store's data." : words(e)),
      el("a", { class: "button", href: "#/returns" }, "Back to returns"));
    return;
  }
  receipt = r;
  requestId = newRequestId();
  document.title = `Standin — receipt ${r.receipt_id}`;
  filterText = "";
  onlyTicked = false;
  renderReceipt(r);
  ctx.focusSearch();
}

// ---------- finding lines on a long receipt: scan an item, or type ----------

let filterText = ""; // what the box says, as typed
let onlyTicked = false; // after a scan: only the ticked lines, until "Show all lines"

function lineMatches(l, text) {
  const t = text.toLowerCase();
  return l.description.toLowerCase().includes(t) || l.sku.startsWith(text) || (l.upc ?? "").startsWith(text);
}

/** Shows the lines the box or a scan asks for, and says how many of how many. */
function applyFilter() {
  if (!receipt) return;
  const rows = document.querySelectorAll("#view-receipt tbody tr[data-line]");
  let shown = 0;
  for (const tr of rows) {
    const l = receipt.lines.find((x) => x.line === Number(tr.dataset.line));
    const ticked = tr.querySelector(".line-check")?.checked;
    const visible = filterText ? lineMatches(l, filterText) : !onlyTicked || ticked;
    tr.hidden = !visible;
    if (visible) shown += 1;
  }
  const status = $("line-filter-status");
  const all = $("show-all-lines");
  if (!status) return;
  const total = receipt.lines.length;
  if (filterText) status.textContent = `${shown} of ${plural(total, "line")} match “${filterText}”.`;
  else if (onlyTicked) status.textContent = `Showing the ${plural(shown, "ticked line")} of ${total}.`;
  else status.textContent = total > 8 ? `${plural(total, "line")}: scan an item to tick it, or type to find it.` : "";
  all.hidden = !(filterText || onlyTicked);
  all.textContent = `Show all ${plural(total, "line")}`;
}

/** Typing in the box on a receipt: only the lines that match. */
export function receiptFilter(text) {
  filterText = text.trim();
  applyFilter();
}

/** A scan on an open receipt: the item's line is ticked, one more unit per further scan.
 * False when the code is no item on this receipt (the desk then searches it as usual). */
export function receiptScan(code) {
  if (!receipt) return false;
  const c = code.trim();
  const l = receipt.lines.find((x) => x.sku === c || (x.upc && x.upc === c));
  if (!l) return false;
  const box = $("q");
  box.value = "";
  filterText = "";
  const say = $("line-filter-status");
  if (l.returnable_qty < 1) {
    returnError(`${l.description}: ${l.refusal ? (REFUSAL_WORDS[l.refusal.code] ?? (() => l.refusal.message))(l) : "cannot be returned"}.`);
    applyFilter();
    return true;
  }
  returnError("");
  const check = $(`rline-${l.line}`);
  const input = $(`rline-${l.line}-qty`);
  let n = 1;
  if (!check.checked) {
    check.checked = true;
    if (input) input.value = "1";
  } else if (input) {
    n = Math.min(l.returnable_qty, (Number(input.value) || 0) + 1);
    if (n === Number(input.value)) returnError(`All ${l.returnable_qty} of ${l.description} that can come back are ticked already.`);
    input.value = String(n);
  } else {
    returnError(`${l.description} is ticked already (1 bought).`);
  }
  onlyTicked = true;
  applyFilter();
  const row = document.querySelector(`#view-receipt tr[data-line="${l.line}"]`);
  for (const r of document.querySelectorAll("#view-receipt tr.scanned")) r.classList.remove("scanned");
  row.classList.add("scanned");
  row.scrollIntoView({ block: "nearest" });
  update();
  if (say) say.textContent = `Ticked ${l.description}: ${n} of ${l.returnable_qty}. ${say.textContent}`;
  return true;
}

function lineRow(r, l) {
  const id = `rline-${l.line}`;
  const can = l.returnable_qty > 0;
  const check = el("input", { type: "checkbox", id, class: "line-check", disabled: !can, dataset: { line: String(l.line) } });
  let qty;
  if (can && l.returnable_qty > 1) {
    const input = el("input", {
      type: "number", class: "qty", min: "1", max: String(l.returnable_qty), value: "1", inputmode: "numeric",
      id: `${id}-qty`, "aria-label": `How many ${l.description} to return`,
    });
    const step = (d) => () => {
      input.value = String(Math.min(l.returnable_qty, Math.max(1, (Number(input.value) || 0) + d)));
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
  // No reason is chosen for the associate: an unread default would become data.
  const reason = can ? el("select", { id: `${id}-reason`, class: "reason", "aria-label": `Why ${l.description} comes back`,
    onchange: (ev) => ev.target.removeAttribute("aria-invalid") }, reasonOptions()) : null;
  const bought = l.returned_qty ? `${l.qty} bought, ${l.returned_qty} returned` : `${l.qty} bought`;
  return el("tr", { class: can ? "" : "done", dataset: { line: String(l.line) } },
    el("td", { class: "pick" }, check),
    el("td", {},
      el("label", { for: id }, el("strong", {}, l.description)),
      el("div", { class: "small" }, `SKU ${l.sku} · ${money(l.paid_minor, r.currency)} paid for ${l.qty}`),
      l.refusal ? el("span", { class: "badge stop refusal" }, (REFUSAL_WORDS[l.refusal.code] ?? (() => l.refusal.message))(l)) : null),
    el("td", { class: "qty-cell" }, qty),
    el("td", {}, reason),
    el("td", { class: "small", id: `${id}-left` }, bought));
}

/** What the form would return: [{line, qty, reason, amount}]. */
function chosen() {
  const out = [];
  for (const c of document.querySelectorAll("#view-receipt .line-check")) {
    if (!c.checked || c.disabled) continue;
    const line = Number(c.dataset.line);
    const l = receipt.lines.find((x) => x.line === line);
    const input = document.getElementById(`rline-${line}-qty`);
    const qty = input ? Math.max(0, Math.min(l.returnable_qty, Math.floor(Number(input.value) || 0))) : 1;
    if (qty < 1) continue;
    const amount = l.next_unit_refunds_minor.slice(0, qty).reduce((a, x) => a + x, 0);
    const reasonBox = document.getElementById(`rline-${line}-reason`);
    const reason = REASONS.find(([v]) => v === reasonBox?.value)?.[1] ?? null;
    out.push({ line, qty, reason, amount, description: l.description });
  }
  return out;
}

function methodChosen() {
  return document.querySelector('#view-receipt input[name="method"]:checked')?.value ?? "original_tender";
}

/** What the offline limits will say (the server decides; this only warns ahead). */
function needsManager(total) {
  if (!receipt.offline) return null;
  const why = [];
  const cap = receipt.refund_cap_associate_minor;
  if (cap != null && ctx.session()?.role !== "manager" && total > cap) why.push(`above the ${money(cap, receipt.currency)} an associate may refund offline`);
  const budget = receipt.offline_refund_budget_minor;
  if (budget != null && total > 0 && receipt.offline_refunded_today_minor + total > budget) why.push("over today's offline refund budget");
  return why.length ? why.join(" and ") : null;
}

function update() {
  const btn = $("return-btn");
  if (!btn || !receipt) return;
  const picked = chosen();
  const total = picked.reduce((a, x) => a + x.amount, 0);
  const n = picked.reduce((a, x) => a + x.qty, 0);
  $("refund-total").textContent = money(total, receipt.currency);
  $("refund-items").textContent = n ? plural(n, "item") : "Tick the items coming back";
  btn.disabled = n === 0;
  const noReason = picked.filter((x) => !x.reason).length;
  btn.textContent = n === 0 ? "Choose items to return" : `Take the return · refund ${money(total, receipt.currency)}`;
  if (noReason) $("refund-items").textContent = `${plural(n, "item")} · choose why for ${plural(noReason, "line")}`;
  const mgr = needsManager(total);
  $("needs-manager").hidden = !mgr || n === 0;
  $("needs-manager").textContent = mgr ? `Needs a manager's approval: ${mgr}.` : "";
}

function renderReceipt(r) {
  const view = $("view-receipt");
  const now = new Date();
  const cards = r.tenders.filter((t) => t.kind !== "cash");
  const originalWords = cards.length ? `Back to ${cards.map(tenderWords).join(" + ")}` : "Back as paid (cash)";
  const returnable = r.lines.some((l) => l.returnable_qty > 0);
  const parts = [
    el("div", { class: "section-head" },
      el("h1", { id: "receipt-h", tabindex: "-1" }, `Receipt ${r.receipt_id}`),
      el("a", { class: "button secondary", href: "#/returns" }, "Back (Esc)")),
    el("dl", { class: "facts" },
      el("div", {}, el("dt", {}, "Sold"), el("dd", {}, when(r.sold_at, now), el("span", { class: "small" }, laneName(r.lane)))),
      el("div", {}, el("dt", {}, "Total"), el("dd", {}, money(r.total_minor, r.currency), el("span", { class: "small" }, plural(r.items, "item")))),
      el("div", {}, el("dt", {}, "Paid with"), el("dd", {}, r.tenders.map(tenderWords).join(" + "))),
      r.order_number ? el("div", {}, el("dt", {}, "Order"), el("dd", {}, r.order_number)) : null),
    el("p", { class: "fresh small" }, `Receipts as of ${clock(r.as_of)}, ${agoSecs(r.age_secs)}.`),
  ];
  if (r.offline) {
    parts.push(el("p", { class: "callout warn", id: "offline-limits" },
      el("strong", {}, "Central is down: "),
      `refunds above ${money(r.refund_cap_associate_minor, r.currency)} need a manager. `,
      r.offline_refund_budget_minor != null
        ? `${money(r.offline_refunded_today_minor, r.currency)} of today's ${money(r.offline_refund_budget_minor, r.currency)} offline budget used.` : ""));
  }
  // The card processor down changes one thing here: a refund to a card waits for it.
  const processor = latestStatus()?.upstreams?.payments;
  if (cards.length && processor?.configured && processor.state === "down") {
    parts.push(el("p", { class: "callout warn", id: "processor-down" },
      el("strong", {}, "Card processor down: "),
      "a refund to the card is queued and reaches the customer's card when the processor is back. Tell the customer; cash and store credit go as usual."));
  }
  const refused = (r.returns ?? []).filter((x) => x.central_outcome === "rejected" || x.central_outcome === "conflict");
  if (refused.length) {
    parts.push(el("p", { class: "callout stop", id: "receipt-attention", role: "note" },
      el("strong", {}, "Needs attention: "),
      `central ${refused.some((x) => x.central_outcome === "rejected") ? "refused" : "found in conflict"} ${plural(refused.length, "return")} taken here on this receipt`
      + `${refused[0].central_reason ? ` (${String(refused[0].central_reason).replace(/_/g, " ")})` : ""}. A lead or manager sorts it out in Reconciliation.`));
  }
  const filterBar = el("div", { class: "line-filter" },
    el("p", { id: "line-filter-status", role: "status", "aria-live": "polite" }),
    el("button", { type: "button", class: "button secondary", id: "show-all-lines", hidden: true, onclick: () => {
      filterText = "";
      onlyTicked = false;
      $("q").value = "";
      applyFilter();
      ctx.focusSearch();
    } }, "Show all lines"));
  const table = el("table", { class: "lines" },
    el("caption", { class: "visually-hidden" }, "Items on this receipt"),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Return")),
      el("th", { scope: "col" }, "Item"),
      el("th", { scope: "col" }, "How many"),
      el("th", { scope: "col" }, "Why"),
      el("th", { scope: "col" }, "Bought"))),
    el("tbody", {}, r.lines.map((l) => lineRow(r, l))));
  const method = (value, label, checked) => el("label", { class: "method" },
    el("input", { type: "radio", name: "method", value, checked }), el("span", {}, label));
  const form = el("form", { id: "return-form", novalidate: true },
    el("fieldset", {},
      el("legend", { class: "lines-title" }, returnable ? "Tick what the customer brings back" : "Nothing on this receipt can be returned"),
      filterBar,
      table),
    el("fieldset", { class: "methods" },
      el("legend", {}, "Refund"),
      method("original_tender", originalWords, true),
      method("store_credit", "Store credit", false),
      method("cash", "Cash", false)),
    el("div", { class: "actionbar return-bar" },
      el("p", { class: "refund-line" }, el("span", {}, "Refund "), el("strong", { id: "refund-total" }, money(0, r.currency)),
        el("span", { class: "small", id: "refund-items" }, "")),
      el("p", { class: "callout warn small-callout", id: "needs-manager", hidden: true }),
      el("p", { class: "form-error", id: "return-error", role: "alert" }),
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "button big primary", id: "return-btn", disabled: !returnable }, "Take the return"))));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    takeReturn(null);
  });
  form.addEventListener("change", update);
  parts.push(form);
  if (r.returns?.length) {
    parts.push(el("section", { "aria-labelledby": "rhistory-h" },
      el("h2", { id: "rhistory-h" }, "Returned here before"),
      el("ul", { class: "history" }, r.returns.map((x) => {
        const bad = x.central_outcome === "rejected" || x.central_outcome === "conflict";
        return el("li", { class: bad ? "refused" : null },
          `${when(x.taken_at, now)}: ${plural(x.lines.reduce((a, l) => a + l.qty, 0), "item")}, ${money(x.amount_minor, r.currency)} by ${personName(x.by, x.by_name)}`
          + `${x.approved_by ? `, approved by ${personName(x.approved_by, x.approved_by_name)}` : ""} (${x.method.replace("_", " ")}, ${x.refund_state.replace(/_/g, " ")})`,
          bad ? el("strong", {}, ` — ${x.central_outcome === "rejected" ? "refused" : "in conflict"} by central`) : null);
      }))));
  }
  view.replaceChildren(...parts);
  update();
  applyFilter();
}

function returnError(text) {
  const e = $("return-error");
  if (e) e.textContent = text ?? "";
}

/** A return without a receipt: store credit for a SKU (the server prices it). */
async function takeNoReceipt(override) {
  const err = $("nr-error");
  err.textContent = "";
  ctx.clearMessages();
  const sku = $("nr-sku").value.trim();
  const qty = Math.floor(Number($("nr-qty").value) || 0);
  if (!sku || qty < 1) {
    err.textContent = !sku ? "Enter the item's SKU (from its label)." : "Enter how many.";
    (!sku ? $("nr-sku") : $("nr-qty")).focus();
    return;
  }
  const reason = REASONS.find(([v]) => v === $("nr-reason").value)?.[1];
  if (!reason) {
    err.textContent = "Choose why the item comes back.";
    $("nr-reason").setAttribute("aria-invalid", "true");
    $("nr-reason").focus();
    return;
  }
  if (!override) requestId = newRequestId();
  const body = { lines: [{ sku, qty, reason }], refund: { method: "store_credit" }, request_id: requestId };
  if (override) body.override = override;
  let done;
  try {
    done = await api("POST", "/api/v1/returns", body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    if (e.code === "override_required") {
      retry = takeNoReceipt;
      openOverride(e, "USD");
      return;
    }
    if (override && (e.code === "override_not_accepted" || e.code === "override_not_manager" || e.status === 429)) {
      overrideError(returnWords(e));
      return;
    }
    closeOverride();
    err.textContent = e.code === "unknown_item" ? "This store has not sold that item in the last 90 days (or it cannot be returned)." : returnWords(e);
    return;
  }
  closeOverride();
  refreshStatus();
  lastSlip = done;
  ctx.go("#/return-slip");
}

async function takeReturn(override) {
  retry = takeReturn;
  returnError("");
  ctx.clearMessages();
  const picked = chosen();
  if (!picked.length) {
    returnError(RETURN_WORDS.no_lines);
    return;
  }
  const missing = picked.filter((x) => !x.reason);
  if (missing.length) {
    for (const x of missing) $(`rline-${x.line}-reason`)?.setAttribute("aria-invalid", "true");
    returnError(`Choose why ${missing.map((x) => x.description).join(", ")} ${missing.length === 1 ? "comes" : "come"} back.`);
    const first = $(`rline-${missing[0].line}-reason`);
    const row = first?.closest("tr");
    if (row?.hidden) { filterText = ""; onlyTicked = true; applyFilter(); }
    first?.focus();
    return;
  }
  const body = {
    receipt_id: receipt.receipt_id,
    lines: picked.map(({ line, qty, reason }) => ({ line, qty, reason })),
    refund: { method: methodChosen() },
    request_id: requestId,
  };
  if (override) body.override = override;
  const btn = $("return-btn");
  btn.disabled = true;
  btn.textContent = "Taking the return…";
  let done;
  try {
    done = await api("POST", "/api/v1/returns", body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    btn.disabled = false;
    update();
    if (e.code === "override_required") {
      openOverride(e);
      return;
    }
    if (override && (e.code === "override_not_accepted" || e.code === "override_not_manager" || e.status === 429)) {
      overrideError(returnWords(e));
      return;
    }
    closeOverride();
    returnError(returnWords(e));
    if (e.status === 422 || e.status === 409) {
      // The receipt changed under us (another desk): show it as it is now, keep the words.
      const text = returnWords(e);
      try {
        receipt = await api("GET", `/api/v1/receipts/${encodeURIComponent(receipt.receipt_id)}`);
        requestId = newRequestId();
        renderReceipt(receipt);
      } catch {
        // keep what we have
      }
      returnError(text);
    }
    return;
  }
  closeOverride();
  refreshStatus();
  lastSlip = { ...done, receipt };
  receipt = null;
  ctx.go("#/return-slip");
}

// ---------- the manager's override ----------

let pendingReasons = [];
let retry = null; // what the override dialog sends again: takeReturn or takeNoReceipt

function reasonWords(r, currency) {
  if (r.code === "over_associate_cap" && r.earlier_minor > 0) return `${money(r.earlier_minor, currency)} was already refunded on this receipt today; ${money(r.amount_minor, currency)} more is above the ${money(r.cap_minor, currency)} an associate may refund while central is down.`;
  if (r.code === "over_associate_cap") return `The refund of ${money(r.amount_minor, currency)} is above the ${money(r.cap_minor, currency)} an associate may refund while central is down.`;
  if (r.code === "over_offline_budget") return `${money(r.used_minor, currency)} has been refunded offline today; ${money(r.amount_minor, currency)} more would pass the store's ${money(r.budget_minor, currency)} budget.`;
  return r.code;
}

function openOverride(err, currency = receipt?.currency ?? "USD") {
  pendingReasons = err.details?.reasons ?? [];
  const d = $("override-dialog");
  $("override-reasons").replaceChildren(...(pendingReasons.length ? pendingReasons : [{ code: "needed" }])
    .map((r) => el("li", {}, r.code === "needed" ? err.message : reasonWords(r, currency))));
  overrideError("");
  $("manager-pin").value = "";
  if (!d.open) d.showModal();
  $("manager-id").focus();
}

function overrideError(text) {
  $("override-error").textContent = text ?? "";
  if (text) {
    $("manager-pin").value = "";
    $("manager-pin").focus();
  }
}

function closeOverride() {
  const d = $("override-dialog");
  if (d.open) d.close();
}

async function submitOverride() {
  const manager_id = $("manager-id").value.trim();
  const pin = $("manager-pin").value;
  if (!manager_id || !pin) {
    $("override-error").textContent = !manager_id ? "The manager enters their employee ID." : "The manager enters their PIN.";
    (!manager_id ? $("manager-id") : $("manager-pin")).focus();
    return;
  }
  $("override-approve").disabled = true;
  try {
    await (retry ?? takeReturn)({ manager_id, pin });
  } finally {
    $("override-approve").disabled = false;
  }
}

// ---------- the return slip ----------

const STATE_WORDS = {
  refunded: "Refunded to the card",
  refunded_and_paid_out: "Refunded to the card, and the rest in cash",
  queued: "Card refund queued: it goes through when the card processor is back",
  declined: "The card processor declined the refund: call a manager",
  failed: "The card refund could not be sent: call a manager",
  paid_out: "Paid out in cash",
  issued: "Issued as store credit",
};

/** #/return-slip */
export function showSlip() {
  ctx.show("slip");
  const view = $("view-slip");
  const s = lastSlip;
  if (!s) {
    ctx.go("#/returns");
    return;
  }
  document.title = `Standin — return ${s.return_id}`;
  const cur = s.currency;
  view.replaceChildren(
    el("div", { class: "section-head no-print" },
      el("h1", { id: "slip-h", tabindex: "-1" }, "Return taken"),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "button big primary", id: "print-slip", onclick: () => window.print() }, "Print the slip"),
        el("a", { class: "button big secondary", href: "#/returns", id: "slip-done" }, "Done"))),
    el("article", { class: "slip", id: "slip", "aria-labelledby": "slip-title" },
      el("h2", { id: "slip-title" }, "Return slip"),
      el("dl", { class: "slip-facts" },
        el("dt", {}, "Return"), el("dd", {}, s.return_id),
        el("dt", {}, "Taken"), el("dd", {}, new Date(s.taken_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })),
        el("dt", {}, "Receipt"), el("dd", {}, s.receipt_id ?? "none"),
        el("dt", {}, "By"), el("dd", { id: "slip-by" }, personName(s.taken_by, s.taken_by_name)),
        s.approved_by ? el("dt", {}, "Approved by") : null,
        s.approved_by ? el("dd", { id: "slip-approved" }, `${personName(s.approved_by, s.approved_by_name)} (manager override)`) : null),
      el("table", { class: "slip-lines" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Item"), el("th", { scope: "col" }, "Qty"), el("th", { scope: "col" }, "Reason"), el("th", { scope: "col" }, "Refund"))),
        el("tbody", {}, s.lines.map((l) => el("tr", {},
          el("td", {}, l.description), el("td", {}, String(l.qty)), el("td", {}, l.reason), el("td", { class: "num" }, money(l.amount_minor, cur))))),
        el("tfoot", {}, el("tr", {}, el("th", { scope: "row", colspan: "3" }, "Total refund"), el("td", { class: "num", id: "slip-total" }, money(s.refund_amount_minor, cur))))),
      el("p", { class: "slip-state", id: "slip-state" },
        `${{ original_tender: "To the original payment", store_credit: "Store credit", cash: "Cash" }[s.refund_method]}: ${STATE_WORDS[s.refund_state] ?? s.refund_state}.`,
        s.cash_minor > 0 ? ` Give the customer ${money(s.cash_minor, cur)} in cash.` : ""),
      s.refunds.map((f) => el("p", { class: "small" }, `${tenderWords(f)}: ${money(f.amount_minor, cur)}, ${f.state}`)),
      s.offline ? el("p", { class: "small" }, "Taken while central was down; it reaches central when central is back.") : null));
  ctx.notice(`Return taken: ${money(s.refund_amount_minor, cur)} ${s.refund_method === "store_credit" ? "as store credit" : s.refund_method === "cash" ? "in cash" : "to the original payment"}.`);
  $("print-slip").focus();
}
