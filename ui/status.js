// Status banner, feed freshness and the upstream board: everything from /api/v1/status.
const FEED_NAMES = {
  pickup_orders: "Pickup orders", receipts: "Receipts", staff: "Staff", devices: "Kiosks", policy: "Policy",
};
const LANE_NAMES = { payments: "Payments", returns: "Returns", pickups: "Pickups", audit: "Audit" };
const LANE_ORDER = ["payments", "returns", "pickups", "audit"];
const UPSTREAM_NAMES = { central: "Central systems", payments: "Card processor" };

export function ago(iso, now = new Date()) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - new Date(iso)) / 1000));
  if (s < 60) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} days ago`;
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "—";
}

function stateWord(h) {
  if (!h.configured) return "not configured";
  return { up: "up", degraded: "having trouble", down: "DOWN", unknown: "checking" }[h.state] ?? h.state;
}

function render(s) {
  const c = s.upstreams.central, p = s.upstreams.payments;
  const orders = s.feeds.pickup_orders;
  const bad = [c, p].some((h) => h.configured && h.state === "down");
  const warn = [c, p].some((h) => h.configured && h.state === "degraded");
  const banner = document.getElementById("banner");
  banner.className = "banner " + (bad ? "down" : warn ? "warn" : "up");
  document.getElementById("banner-text").textContent =
    `Central ${stateWord(c)} · Processor ${stateWord(p)} · Orders as of ${clock(orders.applied_at)}, ${ago(orders.applied_at)}`;

  const tbody = document.querySelector("#feeds tbody");
  tbody.replaceChildren(...Object.entries(s.feeds).map(([name, f]) => {
    const tr = document.createElement("tr");
    for (const text of [FEED_NAMES[name] ?? name, f.records.toLocaleString(), `${clock(f.applied_at)} (${ago(f.applied_at)})`]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    if (f.last_error) tr.className = "error";
    return tr;
  }));

  const ups = document.getElementById("upstreams");
  if (ups) {
    ups.replaceChildren(...Object.entries(s.upstreams).map(([name, h]) => {
      const div = document.createElement("div");
      div.className = "upstream " + (h.configured ? h.state : "unknown");
      const title = document.createElement("div");
      title.className = "name";
      title.textContent = UPSTREAM_NAMES[name] ?? name;
      const st = document.createElement("div");
      st.className = "state";
      st.textContent = stateWord(h);
      const since = document.createElement("div");
      since.className = "since";
      since.textContent = `since ${clock(h.since)} (${ago(h.since)})`;
      div.append(title, st, since);
      return div;
    }));
  }
  const lanes = document.querySelector("#lanes tbody");
  if (lanes && s.journal) {
    lanes.replaceChildren(...LANE_ORDER.filter((l) => s.journal.lanes[l]).map((l) => {
      const b = s.journal.lanes[l];
      const tr = document.createElement("tr");
      for (const text of [LANE_NAMES[l], b.pending.toLocaleString(), b.pending ? ago(b.oldest_occurred_at) : "—"]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
    document.getElementById("set-aside").textContent = s.journal.set_aside
      ? `${s.journal.set_aside} entries central refused are waiting for a manager (reconciliation).`
      : "";
  }
  const upd = document.getElementById("updated");
  if (upd) upd.textContent = `Store ${s.store_id} · Standin ${s.version} · updated ${clock(s.now)}`;
}

async function refresh() {
  try {
    const res = await fetch("/api/v1/status", { headers: { accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (e) {
    document.getElementById("banner").className = "banner down";
    document.getElementById("banner-text").textContent = "Cannot reach Standin on this server";
  }
}

refresh();
setInterval(refresh, 3000);
