// The desk in real headless Chromium against the real `standin demo`: sign in, scan a pickup
// code, hand the order over, see it leave the due-soon list; reconciliation for a lead and not
// for an associate; then take central down from the demo panel and keep trading.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  apiGet, assertAxe, launchBrowser, newPage, openDemoPanel, shot, signIn, simulator, startDemo, status, until, who,
} from "./harness.js";

const OPEN = ["placed", "ready", "partially_handed_over"];

describe("the service desk in a browser", { timeout: 120_000 }, () => {
  let demo;
  let browser;
  let desk; // the associate's page, kept across the tests like a desk left signed in
  let first; // the order handed over while central is up

  before(async () => {
    [demo, browser] = await Promise.all([startDemo(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it("signs in, scans a due-soon order's pickup code, hands it over, and the order leaves the due-soon list", async () => {
    desk = await newPage(browser);
    const associate = who(demo, "associate");
    // A wrong PIN is refused in plain words, and the PIN box is ready for another try.
    await desk.goto(`${demo.url}/`);
    await desk.fill("#employee_id", associate.employee_id);
    await desk.fill("#pin", associate.pin === "000000" ? "111111" : "000000");
    await desk.press("#pin", "Enter");
    await desk.locator("#signin-error").filter({ hasText: "do not match" }).waitFor();
    assert.equal(await desk.evaluate(() => document.activeElement?.id), "pin");
    await shot(desk, "signin-refused");
    await assertAxe(desk, "signin-refused");
    await signIn(desk, demo, associate, { screenshot: "signin" });
    assert.equal(await desk.locator("#nav-recon").isVisible(), false, "no reconciliation link for an associate");
    await desk.locator("#due-list .order-row").first().waitFor();
    assert.match(await desk.locator("#banner-heard").innerText(), /^Heard from central just now ·$/);
    assert.match(await desk.locator("#banner-fresh").innerText(), /^data as of \d{1,2}:\d\d( [AP]M)?$/);
    await shot(desk, "due-soon");
    await assertAxe(desk, "due-soon");

    // A paid, open order due soon; one that needs an ID check if there is one.
    const due = (await apiGet(desk, "/api/v1/pickups?due_within_hours=4")).body.orders;
    const candidates = due.filter((o) => o.payment_state === "paid" && OPEN.includes(o.status) && !o.needs_attention);
    first = candidates.find((o) => o.requires_id_check) ?? candidates[0];
    assert.ok(first, "the demo has a paid order due soon");
    const row = `#due-list [data-order-id="${first.order_id}"]`;
    await desk.locator(row).waitFor();

    // Central refuses this hand-over (a rule in the simulator), so reconciliation has a line.
    await simulator(demo, "PUT", "/admin/central/reject", { kinds: ["pickup.handed_over"] });

    // The scanner: the code typed into the focused box, then Enter. One match opens the order.
    assert.equal(await desk.evaluate(() => document.activeElement?.id), "q", "the search box has focus after sign-in");
    await desk.keyboard.type(first.pickup_code.toLowerCase(), { delay: 5 });
    await desk.keyboard.press("Enter");
    await desk.locator("#order-h").filter({ hasText: first.order_number }).waitFor();
    assert.equal(await desk.evaluate(() => document.activeElement?.id), "q", "the box keeps focus for the next scan");
    assert.match(await desk.locator("#view-order .fresh").innerText(), /^Order data as of .+, (just now|\d+ min ago)\.$/);
    await shot(desk, "order");
    await assertAxe(desk, "order");

    if (first.requires_id_check) {
      // Without the explicit confirmation the desk says what to do, in plain words.
      await desk.locator("#idcheck").waitFor();
      await desk.click("#handover-btn");
      await desk.locator("#order-error").filter({ hasText: "ID check" }).waitFor();
      await shot(desk, "order-id-check-needed");
      await assertAxe(desk, "order-id-check-needed");
      await desk.check("#id-checked");
    }
    await desk.click("#handover-btn");
    await desk.locator("#view-desk").waitFor();
    await desk.locator("#notice").filter({ hasText: `Handed over` }).waitFor();
    assert.match(await desk.locator("#notice").innerText(), new RegExp(first.order_number));
    await until("the order to leave the due-soon list", async () =>
      (await desk.locator("#due-list .order-row").count()) > 0 && (await desk.locator(row).count()) === 0);
    assert.equal(await desk.evaluate(() => document.activeElement?.id), "q", "back in the search box after the hand-over");
    await shot(desk, "handed-over");
    await assertAxe(desk, "handed-over");

    const after = (await apiGet(desk, `/api/v1/pickups/${first.order_id}`)).body;
    assert.equal(after.status, "handed_over");
    assert.equal(after.handovers.length, 1);

    // Scanning the same code again shows the order as done, with no way to hand it over twice;
    // the scan lands in the search box even when the focus was elsewhere.
    await desk.click("#due-h");
    assert.notEqual(await desk.evaluate(() => document.activeElement?.id), "q");
    await desk.keyboard.type(first.pickup_code, { delay: 5 });
    await desk.keyboard.press("Enter");
    await desk.locator("#order-stop").filter({ hasText: "already collected" }).waitFor();
    assert.equal(await desk.locator("#handover-btn").count(), 0);

    // The rejected entry reaches reconciliation (set aside) before the next test reads it.
    await until("central to refuse the hand-over", async () => (await status(demo)).journal.set_aside >= 1, 15_000, 200);
    await simulator(demo, "PUT", "/admin/central/reject", { kinds: [] });
    assert.deepEqual(desk.problems, []);
  });

  it("shows reconciliation, with its CSV, to a lead and refuses an associate", async () => {
    assert.ok(first, "the hand-over test ran first");
    // The associate's desk: no link, and the page itself says no.
    await desk.goto(`${demo.url}/#/reconciliation`);
    await desk.locator("#recon-refused").filter({ hasText: "Only leads and managers" }).waitFor();
    assert.equal(await desk.locator("#recon-csv").isVisible(), false);
    await shot(desk, "reconciliation-refused");
    await assertAxe(desk, "reconciliation-refused");

    const lead = await newPage(browser);
    await signIn(lead, demo, who(demo, "lead"));
    await lead.click("#nav-recon");
    const line = lead.locator("table.recon tbody tr").filter({ hasText: first.order_number });
    await line.waitFor();
    assert.match(await line.innerText(), /Refused by central/);
    await shot(lead, "reconciliation");
    await assertAxe(lead, "reconciliation");
    const href = await lead.locator("#recon-csv").getAttribute("href");
    const csv = await lead.evaluate(async (h) => {
      const r = await fetch(h);
      return { status: r.status, type: r.headers.get("content-type"), text: await r.text() };
    }, href);
    assert.equal(csv.status, 200);
    assert.match(csv.type, /text\/csv/);
    assert.match(csv.text, new RegExp(first.order_id));
    // A session that ends (here: its cookie gone) sends the desk back to the sign-in screen.
    await lead.context().clearCookies();
    await lead.click("#nav-desk");
    await lead.locator("#signin-error").filter({ hasText: "session ended" }).waitFor();
    assert.deepEqual(lead.problems, []);
    await lead.context().close();
  });

  it("takes central down from the demo panel: the banner says so while search and hand-over keep working", async () => {
    assert.ok(first, "the hand-over test ran first");
    await desk.goto(`${demo.url}/`);
    await desk.locator("#due-list .order-row").first().waitFor();
    await openDemoPanel(desk);
    await desk.locator('#demo button[data-upstream="central"][data-mode="down"]').click();
    await desk.locator('#demo button[data-upstream="central"][data-mode="down"][aria-pressed="true"]').waitFor();
    assert.equal((await simulator(demo, "GET", "/admin/faults")).central.mode, "down", "the panel reached the simulator");

    await desk.locator("#chip-central").filter({ hasText: "Central down" }).waitFor({ timeout: 20_000 });
    assert.match(await desk.locator("#banner").getAttribute("class"), /\bdown\b/);
    assert.match(await desk.locator("#banner-note").innerText(), /Central down since .*keep serving customers/);
    assert.match(await desk.locator("#chip-payments").innerText(), /Card processor up/);
    await shot(desk, "central-down");
    await assertAxe(desk, "central-down");

    // Search by the customer's name (a prefix) for another paid order due soon.
    const due = (await apiGet(desk, "/api/v1/pickups?due_within_hours=4")).body.orders;
    const second = due.find((o) => o.payment_state === "paid" && OPEN.includes(o.status) && o.order_id !== first.order_id && o.items > 1);
    assert.ok(second, "another paid order due soon");
    const prefix = second.customer_name.split(" ")[0];
    await desk.fill("#q", prefix);
    await desk.press("#q", "Enter");
    const hit = `#results-list [data-order-id="${second.order_id}"]`;
    if (await desk.locator("#view-order").isHidden()) {
      await desk.locator(hit).waitFor();
      await shot(desk, "search-results");
      await assertAxe(desk, "search-results");
      await desk.click(hit);
    }
    await desk.locator("#order-h").filter({ hasText: second.order_number }).waitFor();

    // Keyboard only: Tab from the search box to each control, Space on the ID confirmation,
    // Enter on the hand-over button.
    await desk.focus("#q");
    await until("the keyboard to reach the hand-over button", async () => {
      await desk.keyboard.press("Tab");
      const id = await desk.evaluate(() => document.activeElement?.id);
      if (id === "id-checked") await desk.keyboard.press("Space");
      return id === "handover-btn";
    }, 10_000, 0);
    if (second.requires_id_check) assert.equal(await desk.isChecked("#id-checked"), true);
    await shot(desk, "order-offline");
    await assertAxe(desk, "order-offline");
    await desk.keyboard.press("Enter");
    await desk.locator("#notice").filter({ hasText: second.order_number }).waitFor();
    await until("the second order to leave the due-soon list", async () =>
      (await desk.locator(`#due-list [data-order-id="${second.order_id}"]`).count()) === 0
      && (await desk.locator("#due-list .order-row").count()) > 0);
    assert.equal((await apiGet(desk, `/api/v1/pickups/${second.order_id}`)).body.status, "handed_over");
    assert.match(await desk.locator("#chip-central").innerText(), /Central down/);
    await shot(desk, "handed-over-offline");
    await assertAxe(desk, "handed-over-offline");

    // The status board, from across the room: central down, the hand-over waiting for it.
    const board = await newPage(browser);
    await board.goto(`${demo.url}/status`);
    await board.locator('.upstream.down[data-upstream="central"]').waitFor();
    await until("the pickups lane to show a waiting entry", async () =>
      /Pickups\s+1\s/.test(await board.locator("#lanes").innerText()));
    await shot(board, "status-board");
    await assertAxe(board, "status-board");
    assert.deepEqual(board.problems, []);
    await board.context().close();

    // A tablet held upright: part of an order (one line left behind), still offline.
    const third = await until("an open paid order with several lines", async () => {
      for (const o of due) {
        if (o.payment_state !== "paid" || !OPEN.includes(o.status) || [first, second].some((x) => x.order_id === o.order_id)) continue;
        const full = (await apiGet(desk, `/api/v1/pickups/${o.order_id}`)).body;
        if (full.lines.filter((l) => l.remaining_qty > 0).length >= 2) return full;
      }
      return null;
    });
    const tablet = await newPage(browser, { width: 800, height: 1280 });
    await signIn(tablet, demo, who(demo, "associate"));
    await tablet.goto(`${demo.url}/#/order/${third.order_id}`);
    await tablet.locator("#order-h").filter({ hasText: third.order_number }).waitFor();
    assert.equal(await tablet.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, "no sideways scrolling");
    const kept = third.lines.find((l) => l.remaining_qty > 0);
    await tablet.uncheck(`#line-${kept.line}`);
    if (await tablet.locator("#idcheck").isVisible()) await tablet.check("#id-checked");
    await shot(tablet, "tablet-order");
    await assertAxe(tablet, "tablet-order");
    await tablet.click("#handover-btn");
    await tablet.locator("#notice").filter({ hasText: "still to collect" }).waitFor();
    const partly = (await apiGet(tablet, `/api/v1/pickups/${third.order_id}`)).body;
    assert.equal(partly.status, "partially_handed_over");
    assert.equal(partly.lines.find((l) => l.line === kept.line).remaining_qty, kept.remaining_qty);
    await shot(tablet, "tablet-partly-handed-over");
    await assertAxe(tablet, "tablet-partly-handed-over");

    // No-show, by order number: asked once more before it is recorded.
    const fourth = due.find((o) => OPEN.includes(o.status) && ![first, second, third].some((x) => x.order_id === o.order_id));
    await tablet.fill("#q", fourth.order_number);
    await tablet.press("#q", "Enter");
    await tablet.locator("#order-h").filter({ hasText: fourth.order_number }).waitFor();
    await tablet.click("#noshow-btn");
    await tablet.locator("#noshow-yes").waitFor();
    await tablet.click("#noshow-yes");
    await tablet.locator("#notice").filter({ hasText: "no-show" }).waitFor();
    assert.equal((await apiGet(tablet, `/api/v1/pickups/${fourth.order_id}`)).body.status, "no_show");

    // Two desks, one order: the desk that comes second is told in plain words, and sees the
    // order as it now is.
    const fifth = due.find((o) => o.payment_state === "paid" && OPEN.includes(o.status)
      && ![first, second, third, fourth].some((x) => x.order_id === o.order_id));
    await desk.goto(`${demo.url}/#/order/${fifth.order_id}`);
    await desk.locator("#order-h").filter({ hasText: fifth.order_number }).waitFor();
    const elsewhere = await tablet.evaluate(async (id) => {
      const { csrf_token } = await (await fetch("/api/v1/session")).json();
      const r = await fetch(`/api/v1/pickups/${id}/handover`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": csrf_token },
        body: JSON.stringify({ lines: [], id_checked: true }),
      });
      return r.status;
    }, fifth.order_id);
    assert.equal(elsewhere, 200);
    if (await desk.locator("#idcheck").isVisible()) await desk.check("#id-checked");
    await desk.click("#handover-btn");
    await desk.locator("#order-error").filter({ hasText: "already handed over" }).waitFor();
    await desk.locator("#order-stop").filter({ hasText: "already collected" }).waitFor();
    await shot(desk, "refused-already-handed-over");
    await assertAxe(desk, "refused-already-handed-over");
    assert.deepEqual(tablet.problems, []);
    await tablet.context().close();

    // Bring central back from the panel.
    await desk.locator('#demo button[data-upstream="central"][data-mode="ok"]').click();
    await until("central back up in the simulator", async () =>
      (await simulator(demo, "GET", "/admin/faults")).central.mode === "ok");
    assert.deepEqual(desk.problems, []);
  });
});
