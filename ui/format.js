// Words and numbers an associate reads at a glance: times, ages, money, order states.

/** "just now", "3 min ago", "2 h 10 min ago", "3 days ago" from a number of seconds. */
export function agoSecs(secs) {
  if (secs == null || Number.isNaN(secs)) return "never";
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return "just now";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 6 && m % 60) return `${h} h ${m % 60} min ago`;
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

/** Seconds from `from` to `to` (ISO strings or Dates). */
export function secsBetween(from, to) {
  return (new Date(to) - new Date(from)) / 1000;
}

/** Age of an ISO time, measured against `now` (the server's clock when we have it). */
export function ago(iso, now = new Date()) {
  return iso ? agoSecs(secsBetween(iso, now)) : "never";
}

/** "10:42" (the desk's own locale and time zone). */
export function clock(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

/** "10:42" today, "Thu 09:30" another day. */
export function when(iso, now = new Date()) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (d.toDateString() === new Date(now).toDateString()) return clock(iso);
  return `${d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${clock(iso)}`;
}

/** "in 25 min", "in 2 h 5 min", "overdue by 10 min". */
export function dueWords(iso, now = new Date()) {
  const secs = secsBetween(now, iso);
  const m = Math.round(Math.abs(secs) / 60);
  const span = m < 60 ? `${m} min` : `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ""}`;
  if (secs < -60) return `overdue by ${span}`;
  if (secs < 60) return "due now";
  return `in ${span}`;
}

export function money(minor, currency = "USD") {
  if (minor == null) return "";
  try {
    return new Intl.NumberFormat([], { style: "currency", currency }).format(minor / 100);
  } catch {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

export function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** The effective order state, in words, and a class for its badge. */
export const ORDER_STATUS = {
  placed: { text: "Not staged yet", cls: "todo" },
  ready: { text: "Staged, ready", cls: "ready" },
  cancelled: { text: "Cancelled", cls: "stop" },
  handed_over: { text: "Handed over", cls: "done" },
  partially_handed_over: { text: "Partly handed over", cls: "todo" },
  no_show: { text: "No-show", cls: "stop" },
};

export function statusWords(status) {
  return ORDER_STATUS[status] ?? { text: status, cls: "" };
}

export const PAYMENT_WORDS = {
  paid: "Paid",
  pay_at_pickup: "Not paid",
};

export function paymentWords(state) {
  return PAYMENT_WORDS[state] ?? state;
}

/** Builds an element: el("td", {class: "x"}, "text", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** A till or kiosk lane in words: "register-4" → "Register 4", "sco-3" → "Self-checkout 3". */
export function laneName(lane) {
  if (!lane) return "";
  const m = /^(register|sco|kiosk|desk)-0*(\d+)$/i.exec(String(lane));
  if (!m) return String(lane);
  const kind = { register: "Register", sco: "Self-checkout", kiosk: "Self-checkout", desk: "Desk" }[m[1].toLowerCase()];
  return `${kind} ${m[2]}`;
}

/** Where a journal entry was made, in words: a desk's network address is "Service desk",
 * a kiosk's id ("sco-01") its lane. */
export function deviceName(device) {
  if (!device) return "";
  const d = String(device);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(d) || d.includes(":")) return "Service desk";
  return laneName(d);
}

/** A person's name where we have it, else their employee id. */
export function personName(id, name) {
  return name || id || "—";
}
