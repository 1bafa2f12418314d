// The desk's calls to Standin: JSON in and out, the CSRF token on every change, errors as
// ApiError, and a "signed-out" event on any 401 so the app goes back to the sign-in screen.

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, code, message, field = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

export const signedOut = new EventTarget();

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "Cannot reach Standin on this server. Check the network and try again.");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data?.error ?? {};
    const err = new ApiError(res.status, e.code ?? `http_${res.status}`, e.message ?? `HTTP ${res.status}`,
      e.field ?? null, res.headers.get("retry-after"));
    err.details = e; // the whole error object: extra fields such as `reasons` or `remaining`
    // A refused sign-in is the sign-in screen's to explain; any other 401 means the session ended.
    if (res.status === 401 && !(method === "POST" && path === "/api/v1/session")) {
      csrf = null;
      signedOut.dispatchEvent(new CustomEvent("signed-out", { detail: err }));
    }
    throw err;
  }
  return data;
}

const WORDS = {
  invalid_credentials: "That employee ID and PIN do not match. Try again.",
  order_cancelled: "This order was cancelled. Do not hand it over.",
  already_handed_over: "This order was already handed over. Nothing is left to hand over.",
  not_paid: "This order is not paid yet. The customer has to pay before you hand it over.",
  id_check_required: "Some items need an ID check. Check the customer's photo ID, then tick “ID checked”.",
  invalid_line: "One of the lines is not on this order any more. Reload the order and try again.",
  too_many: "You chose more than is left on a line. Lower the quantity.",
  forbidden: "Only leads and managers can open this page.",
  not_found: "There is no such order in this store's data.",
  csrf: "Your session needs refreshing. Sign out and in again.",
  network: "Cannot reach Standin on this server. Check the network and try again.",
  payment_not_collected_yet: "This sale was paid by card at a kiosk while the card processor was down, and the payment is not confirmed yet. Refund it to the original card: it goes once the payment is confirmed.",
  payment_not_collected: "The card payment for this sale never went through. Do not refund it: call a manager (it is on the reconciliation page).",
  tender_not_refundable: "This receipt's card cannot be refunded from here. Choose cash or store credit, or call a manager.",
};

/** Plain words for a refusal, for an associate (falls back to the server's message). */
export function words(err) {
  if (!(err instanceof ApiError)) return "Something went wrong. Try again.";
  if (err.code === "too_many_attempts") {
    const mins = err.retryAfter ? Math.ceil(Number(err.retryAfter) / 60) : null;
    return `Too many wrong PINs. This employee ID is locked${mins ? ` for ${mins} min` : " for a while"}. Ask a manager if you need in now.`;
  }
  if (WORDS[err.code]) return WORDS[err.code];
  if (err.status === 403) return WORDS.forbidden;
  if (err.status === 404) return WORDS.not_found;
  if (err.status >= 500) return "Standin could not do that just now. Try again; if it keeps failing, tell your lead.";
  return err.message;
}
