// Issue 16, "the desk at the pace of a queue", in real headless Chromium against the real
// `standin demo`, on a 1280×800 desktop and a 1024×768 touch screen: a 44-line receipt worked
// by scan and filter, a 28-item order with nothing hidden and handed over in three keys, more
// than 500 orders due, one focused search box per screen, notices that stay on their screen,
// each outage told apart, refusals flagged for everyone, names instead of ids, and axe-core's
// WCAG 2.2 AA rules on every screen in every state.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  SCREENS, apiGet, assertAxe, launchBrowser, newPage, openDemoPanel, shot, signIn, simulator, startDemo, status, until,
  who,
} from "./harness.js";

const OPEN = ["placed", "ready", "partially_handed_over"];

/** The visible search boxes on the page (there must be one). */
const searchBoxes = (page) => page.evaluate(() => [...document.querySelectorAll('input[type="search"], input[role="searchbox"]')]
  .filter((e) => e.offsetParent !== null).map((e) => e.id));

/** Every element matching `selector` scrolled into view in turn: those another element covers
 * at their centre (a sticky bar, say). */
async function covered(page, selector) {
  return page.evaluate((sel) => {
    const hidden = [];
    for (const e of document.querySelectorAll(sel)) {
      if (e.offsetParent === null) continue;
      e.scrollIntoView({ block: "end" });
      const r = e.getBoundingClientRect();
      const x = r.left + Math.min(r.width / 2, 40), y = r.top + r.height / 2;
      const hit = document.elementFromPoint(x, y);
      if (!hit || !(e === hit || e.contains(hit))) hidden.push(`${e.id || e.textContent.trim().slice(0, 30)} under ${hit?.className || hit?.tagName}`);
      e.scrollIntoView({ block: "start" });
      const r2 = e.getBoundingClientRect();
      const hit2 = document.elementFromPoint(r2.left + Math.min(r2.width / 2, 40), r2.top + r2.height / 2);
      if (!hit2 || !(e === hit2 || e.contains(hit2))) hidden.push(`${e.id || e.textContent.trim().slice(0, 30)} (top) under ${hit2?.className || hit2?.tagName}`);
    }
    window.scrollTo(0, 0);
    return hidden;
  }, selector);
}

const bannerHeight = (page) => page.evaluate(() => document.getElementById("banner").getBoundingClientRect().height);
const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

describe("the desk at the pace of a queue", { timeout: 600_000 }, () => {
  let demo;
  let browser;
  let samples; // the 44-line receipt and the 28-item order
  const handedOver = new Set();

  before(async () => {
    [demo, browser] = await Promise.all([startDemo(), launchBrowser()]);
    samples = await simulator(demo, "POST", "/admin/central/samples", { receipt_lines: 44, order_lines: 28, due_orders: 600 });
    // They arrive with the next feed pull.
    await until("the samples in the store's copy", async () => (await status(demo)).feeds.pickup_orders.records >= 800
      && (await status(demo)).feeds.receipts.records >= 501, 30_000, 250);
  });

  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  /** A paid, open, simple order due soon (no ID check), not handed over by an earlier test. */
  async function simpleOrder(page) {
    const due = (await apiGet(page, "/api/v1/pickups?due_within_hours=4")).body.orders;
    const o = due.find((x) => x.payment_state === "paid" && OPEN.includes(x.status) && !x.requires_id_check
      && !x.needs_attention && !handedOver.has(x.order_id) && x.order_id !== samples.order.order_id);
    assert.ok(o, "a simple order due soon");
    handedOver.add(o.order_id);
    return o;
  }

  for (const screen of SCREENS) {
    describe(`on a ${screen.name} screen`, () => {
      const at = (name) => `${name}-${screen.name}`;

      it("works a 44-line receipt by scan and by typing, and refuses a return without a reason", async () => {
        const page = await newPage(browser, screen.viewport, { touch: screen.touch });
        await signIn(page, demo, who(demo, "associate"));
        await page.click("#nav-returns");
        await page.locator("#view-returns").waitFor();
        // One search box, focused, saying what it finds here.
        assert.deepEqual(await searchBoxes(page), ["q"]);
        assert.equal(await page.evaluate(() => document.activeElement?.id), "q", "the Returns box has the focus");
        assert.match(await page.locator("#q-label").innerText(), /Find the sale/);
        await shot(page, at("returns"));
        await assertAxe(page, `Returns (${screen.name})`);

        await page.keyboard.type(samples.receipt.receipt_id);
        await page.keyboard.press("Enter");
        await page.locator("#receipt-h").filter({ hasText: samples.receipt.receipt_id }).waitFor();
        const r = (await apiGet(page, `/api/v1/receipts/${samples.receipt.receipt_id}`)).body;
        assert.equal(r.lines.length, 44);
        assert.equal(await page.locator("#view-receipt tbody tr").count(), 44);
        assert.equal(await page.evaluate(() => document.activeElement?.id), "q", "the box is ready for the item scans");
        assert.match(await page.locator("#q-label").innerText(), /Scan an item/);
        assert.ok(await noSidewaysScroll(page), "no sideways scrolling");
        // The lane in words, not its id.
        assert.match(await page.locator("#view-receipt .facts").innerText(), /Register 4/);
        // No reason is chosen for the associate.
        assert.deepEqual(await page.$$eval("#view-receipt select.reason", (s) => [...new Set(s.map((x) => x.value))]), [""]);
        await shot(page, at("receipt-44-lines"));
        await assertAxe(page, `a 44-line receipt (${screen.name})`);

        // Scan the item bought three times: ticked, one; again: two. Only ticked lines show.
        const multi = r.lines.find((l) => l.qty === 3 && l.returnable_qty === 3);
        const one = r.lines.find((l) => l.qty === 1 && l.returnable_qty === 1 && l.line > 30);
        assert.ok(multi?.upc && one, "the sample receipt has a 3-unit line with a UPC and single lines");
        await page.keyboard.type(multi.upc);
        await page.keyboard.press("Enter");
        await until("the scanned line ticked", () => page.isChecked(`#rline-${multi.line}`));
        assert.equal(await page.inputValue(`#rline-${multi.line}-qty`), "1");
        await page.keyboard.type(multi.upc);
        await page.keyboard.press("Enter");
        await until("a second unit", async () => (await page.inputValue(`#rline-${multi.line}-qty`)) === "2");
        assert.equal(await page.locator("#view-receipt tbody tr:not([hidden])").count(), 1, "only the ticked line shows");
        assert.equal(await page.inputValue("#q"), "", "the box is empty for the next scan");
        // The SKU printed on the label scans as well as the barcode.
        await page.keyboard.type(one.sku);
        await page.keyboard.press("Enter");
        await until("the second item ticked", () => page.isChecked(`#rline-${one.line}`));
        assert.equal(await page.locator("#view-receipt tbody tr:not([hidden])").count(), 2);
        assert.deepEqual(await covered(page, "#view-receipt tbody tr:not([hidden])"), []);
        await shot(page, at("receipt-scanned"));
        await assertAxe(page, `a receipt with scanned items (${screen.name})`);

        // Typing filters: a few letters of a line's description show it among the 44.
        const wanted = r.lines[20];
        const word = wanted.description.split(/[ ,]/).find((w) => w.length >= 5) ?? wanted.description.slice(0, 6);
        await page.fill("#q", word);
        const shown = r.lines.filter((l) => l.description.toLowerCase().includes(word.toLowerCase())).length;
        await until("the lines filtered", async () => (await page.locator("#view-receipt tbody tr:not([hidden])").count()) === shown);
        assert.ok(shown < 44 && shown >= 1);
        assert.match(await page.locator("#line-filter-status").innerText(), new RegExp(`${shown} of 44 lines match`));
        await shot(page, at("receipt-filtered"));
        await page.click("#show-all-lines");
        assert.equal(await page.locator("#view-receipt tbody tr:not([hidden])").count(), 44);
        // Every line can be brought into view without anything covering it.
        assert.deepEqual(await covered(page, "#view-receipt tbody tr"), []);

        // No reason chosen: refused, in words, and nothing is taken.
        await page.click("#return-btn");
        await page.locator("#return-error").filter({ hasText: "Choose why" }).waitFor();
        assert.equal(await page.locator(`#rline-${multi.line}-reason`).getAttribute("aria-invalid"), "true");
        await shot(page, at("receipt-no-reason"));
        await assertAxe(page, `a return refused for want of a reason (${screen.name})`);
        const still = (await apiGet(page, `/api/v1/receipts/${samples.receipt.receipt_id}`)).body;
        assert.equal(still.returns.length, r.returns.length, "nothing was taken");
        assert.deepEqual(page.problems, []);
        await page.context().close();
      });

      it("shows every line of a 28-item order, keeps the banner one line in an outage, and keeps a lead's navigation on one row", async (t) => {
        t.after(allWell);
        const lead = await newPage(browser, screen.viewport, { touch: screen.touch });
        await signIn(lead, demo, who(demo, "lead"));
        // One row: every item's middle at the same height (within a few pixels).
        const mids = await lead.evaluate(() => ["nav-desk", "nav-returns", "nav-recon", "nav-status", "who", "signout"]
          .map((id) => { const r = document.getElementById(id).getBoundingClientRect(); return Math.round(r.top + r.height / 2); }));
        assert.ok(Math.max(...mids) - Math.min(...mids) <= 6, `navigation on one row: ${mids}`);
        await shot(lead, at("lead-nav"));
        await assertAxe(lead, `a lead's due-soon list (${screen.name})`);

        await lead.goto(`${demo.url}/#/order/${samples.order.order_id}`);
        await lead.locator("#order-h").filter({ hasText: samples.order.order_number }).waitFor();
        assert.equal(await lead.locator("#view-order tbody tr").count(), 28);
        assert.ok(await bannerHeight(lead) <= 64, `banner one line: ${await bannerHeight(lead)} px`);
        assert.deepEqual(await covered(lead, "#view-order tbody tr"), [], "no line under a bar");
        assert.deepEqual(await covered(lead, "#view-order button, #view-order .line-check"), [], "no control under a bar");
        // The hand-over is in view when the order opens.
        assert.ok(await lead.locator("#handover-btn").evaluate((b) => b.getBoundingClientRect().bottom <= window.innerHeight));
        // Checkboxes and their targets: at least 44 px.
        const sizes = await lead.$$eval("#view-order .line-check", (cs) => cs.map((c) => Math.min(c.getBoundingClientRect().width, c.getBoundingClientRect().height)));
        assert.ok(sizes.every((x) => x >= 44), `checkbox sizes ${Math.min(...sizes)}`);
        await shot(lead, at("order-28-items"));
        await assertAxe(lead, `a 28-item order (${screen.name})`);

        // Central down: the banner says so, in one line; the words sit below it, not over the lines.
        await simulator(demo, "PUT", "/admin/faults/central", { mode: "down" });
        await lead.locator("#chip-central").filter({ hasText: "Central down" }).waitFor({ timeout: 30_000 });
        assert.ok(await bannerHeight(lead) <= 64, `banner one line while central is down: ${await bannerHeight(lead)} px`);
        assert.deepEqual(await covered(lead, "#view-order tbody tr"), []);
        await shot(lead, at("order-28-items-central-down"));
        await assertAxe(lead, `a 28-item order, central down (${screen.name})`);
        await simulator(demo, "PUT", "/admin/faults/central", { mode: "ok" });
        await lead.locator("#chip-central").filter({ hasText: "Central up" }).waitFor({ timeout: 30_000 });
        assert.deepEqual(lead.problems, []);
        await lead.context().close();
      });

      it("hands a simple order over in three keys after the scan", async () => {
        const page = await newPage(browser, screen.viewport, { touch: screen.touch });
        await signIn(page, demo, who(demo, "associate"));
        // On the touch screen: the 28-item order (all of it); on the desktop, a small one.
        const o = screen.touch ? (await apiGet(page, `/api/v1/pickups/${samples.order.order_id}`)).body : await simpleOrder(page);
        await page.keyboard.type(o.pickup_code);
        await page.keyboard.press("Enter");
        await page.locator("#order-h").filter({ hasText: o.order_number }).waitFor();
        const keys = ["Tab", "Tab", "Enter"];
        for (const k of keys) await page.keyboard.press(k);
        await page.locator("#notice").filter({ hasText: o.order_number }).waitFor();
        assert.equal((await apiGet(page, `/api/v1/pickups/${o.order_id}`)).body.status, "handed_over");
        assert.equal(keys.length, 3);
        await shot(page, at("handed-over-3-keys"));
        await assertAxe(page, `due soon after a hand-over (${screen.name})`);

        // The notice belongs to Due soon: it does not follow the associate to Returns.
        await page.click("#nav-returns");
        await page.locator("#view-returns").waitFor();
        assert.equal(await page.locator("#notice").isVisible(), false, "no hand-over notice on Returns");

        // Scanned again, the collected order is a stop, not green.
        await page.click("#nav-desk");
        await page.locator("#view-desk").waitFor();
        await page.keyboard.type(o.pickup_code);
        await page.keyboard.press("Enter");
        await page.locator("#order-stop").filter({ hasText: "already collected" }).waitFor();
        assert.match(await page.locator("#order-stop").getAttribute("class"), /\bstop\b/);
        assert.equal(await page.locator("#view-order .callout.done, #order-state .badge.done").count(), 0, "nothing green");
        assert.equal(await page.locator("#handover-btn").count(), 0);
        await shot(page, at("rescanned-collected"));
        await assertAxe(page, `a re-scanned collected order (${screen.name})`);
        assert.deepEqual(page.problems, []);
        await page.context().close();
      });

      it("says where the due-soon list is cut and shows the rest", async () => {
        const page = await newPage(browser, screen.viewport, { touch: screen.touch });
        await signIn(page, demo, who(demo, "associate"));
        await page.click('.seg-btn[data-hours="24"]');
        const first = (await apiGet(page, "/api/v1/pickups?due_within_hours=24")).body;
        assert.equal(first.truncated, true);
        assert.ok(first.total > 500, `more than 500 due: ${first.total}`);
        const cut = page.locator("#due-cut");
        await cut.filter({ hasText: `first 500 of ${first.total.toLocaleString("en-US")}` }).waitFor();
        assert.match(await cut.innerText(), /due up to/);
        await page.locator("#due-list .order-row").nth(499).waitFor();
        // Readable order keys: not small grey text.
        const keys = await page.locator("#due-list .order-row .keys").first().evaluate((e) => {
          const cs = getComputedStyle(e);
          return { size: parseFloat(cs.fontSize), color: cs.color };
        });
        assert.ok(keys.size >= 16, `order keys ${keys.size}px`);
        assert.equal(keys.color, "rgb(28, 28, 28)");
        await shot(page, at("due-cut"));
        await assertAxe(page, `a cut due-soon list (${screen.name})`);
        await page.click("#due-more");
        await until("the rest of the list", async () => (await page.locator("#due-list .order-row").count()) === first.total, 20_000);
        assert.equal(await cut.isVisible(), false);
        await shot(page, at("due-all"));
        assert.deepEqual(page.problems, []);
        await page.context().close();
      });

      it("offers the pickup for a pickup code typed on Returns, and keeps search text to its screen", async () => {
        const page = await newPage(browser, screen.viewport, { touch: screen.touch });
        await signIn(page, demo, who(demo, "associate"));
        const o = (await apiGet(page, "/api/v1/pickups?due_within_hours=8")).body.orders.find((x) => !handedOver.has(x.order_id));
        await page.fill("#q", "Smith");
        await page.click("#nav-returns");
        await page.locator("#view-returns").waitFor();
        assert.equal(await page.inputValue("#q"), "", "the desk's search text stays on the desk");
        await page.fill("#q", o.pickup_code);
        await page.press("#q", "Enter");
        await page.locator("#open-pickup").waitFor();
        assert.match(await page.locator("#pickup-offer").innerText(), new RegExp(o.order_number));
        await shot(page, at("returns-pickup-offer"));
        await assertAxe(page, `Returns offering a pickup (${screen.name})`);
        await page.click("#open-pickup");
        await page.locator("#order-h").filter({ hasText: o.order_number }).waitFor();
        assert.equal(await page.inputValue("#q"), "", "no Returns text on the order");
        assert.equal(await page.evaluate(() => document.activeElement?.id), "q", "the order screen's box has the focus");
        assert.deepEqual(await searchBoxes(page), ["q"]);
        assert.deepEqual(page.problems, []);
        await page.context().close();
      });
    });
  }

  /** Central, the processor and HQ's feeds all back to normal (after a test that broke them). */
  async function allWell() {
    await simulator(demo, "PUT", "/admin/faults/central", { mode: "ok" });
    await simulator(demo, "PUT", "/admin/faults/payments", { mode: "ok" });
    await simulator(demo, "PUT", "/admin/central/feeds/stall", { stalled: false });
    await simulator(demo, "PUT", "/admin/central/reject", { kinds: [] });
    await until("central up again", async () => {
      const s = await status(demo);
      return s.upstreams.central.state === "up" && s.upstreams.payments.state === "up" && !s.hq_updates_stalled;
    }, 60_000, 250);
  }

  it("tells each outage apart on the banner and the status board, on both screens", async (t) => {
    t.after(allWell);
    const pages = [];
    for (const screen of SCREENS) {
      const page = await newPage(browser, screen.viewport, { touch: screen.touch });
      await signIn(page, demo, who(demo, "associate"));
      const board = await newPage(browser, screen.viewport, { touch: screen.touch });
      await board.goto(`${demo.url}/status`);
      pages.push({ screen, page, board });
    }
    const each = async (what, fn) => {
      for (const { screen, page, board } of pages) await fn(page, board, `${what}-${screen.name}`);
    };

    // All up: heard from central and data as of, apart.
    await each("all-up", async (page, board, name) => {
      await page.locator("#banner.up").waitFor({ timeout: 20_000 });
      assert.match(await page.locator("#banner-heard").innerText(), /Heard from central just now/);
      assert.match(await page.locator("#banner-fresh").innerText(), /^data as of \d{1,2}:\d\d( [AP]M)?$/);
      await board.locator('.upstream.up[data-upstream="central"]').waitFor();
      assert.match(await board.locator('.upstream[data-upstream="central"] .heard').innerText(), /Last heard from central/);
      await shot(page, `${name}-desk`);
      await assertAxe(page, `the desk, all up (${name})`);
      await shot(board, `${name}-board`);
      await assertAxe(board, `the board, all up (${name})`);
    });

    // The processor down: amber, not red, and about card refunds; central still up.
    await simulator(demo, "PUT", "/admin/faults/payments", { mode: "down" });
    await each("processor-down", async (page, board, name) => {
      await page.locator("#chip-payments").filter({ hasText: "Card processor down" }).waitFor({ timeout: 30_000 });
      assert.match(await page.locator("#banner").getAttribute("class"), /\bwarn\b/);
      assert.doesNotMatch(await page.locator("#banner").getAttribute("class"), /\bdown\b/);
      assert.match(await page.locator("#chip-central").innerText(), /Central up/);
      assert.match(await page.locator("#banner-note").innerText(), /card refunds are queued/i);
      assert.doesNotMatch(await page.locator("#banner-note").innerText(), /Central down/);
      assert.ok(await bannerHeight(page) <= 64);
      await board.locator('.upstream.down[data-upstream="payments"]').waitFor();
      await board.locator('.upstream.up[data-upstream="central"]').waitFor();
      assert.match(await board.locator('.upstream[data-upstream="payments"] .what').innerText(), /Card refunds are queued/);
      await shot(page, `${name}-desk`);
      await assertAxe(page, `the desk, processor down (${name})`);
      // On a card sale, the return screen says what changes: the card refund is queued.
      await page.goto(`${demo.url}/#/receipt/${samples.receipt.receipt_id}`);
      await page.locator("#processor-down").filter({ hasText: "queued" }).waitFor();
      await shot(page, `${name}-receipt`);
      await assertAxe(page, `a card receipt, processor down (${name})`);
      await page.goto(`${demo.url}/#/`);
      await page.locator("#view-desk").waitFor();
      await shot(board, `${name}-board`);
      await assertAxe(board, `the board, processor down (${name})`);
    });
    await simulator(demo, "PUT", "/admin/faults/payments", { mode: "ok" });

    // Central down: red, with what it changes at the desk.
    await simulator(demo, "PUT", "/admin/faults/central", { mode: "down" });
    await each("central-down", async (page, board, name) => {
      await page.locator("#chip-central").filter({ hasText: "Central down" }).waitFor({ timeout: 30_000 });
      await page.locator("#chip-payments").filter({ hasText: "Card processor up" }).waitFor({ timeout: 30_000 });
      assert.match(await page.locator("#banner").getAttribute("class"), /\bdown\b/);
      // One line on the banner; what it changes at the desk one tap away.
      assert.ok(await page.locator("#banner-note summary").evaluate((e) => e.getBoundingClientRect().height) <= 50);
      assert.match(await page.locator("#banner-note").textContent(), /Central down since .*saved here.*manager's PIN.*store credit only/s);
      await page.locator("#banner-note summary").click();
      assert.match(await page.locator("#banner-note-body").innerText(), /store credit only/);
      assert.doesNotMatch(await page.locator("#banner-note").innerText(), /card refunds are queued/i);
      assert.ok(await bannerHeight(page) <= 64);
      await board.locator('.upstream.down[data-upstream="central"]').waitFor();
      await shot(page, `${name}-desk`);
      await assertAxe(page, `the desk, central down (${name})`);
      await shot(board, `${name}-board`);
      await assertAxe(board, `the board, central down (${name})`);
    });
    await simulator(demo, "PUT", "/admin/faults/central", { mode: "ok" });

    // Central answers but HQ's updates stopped half an hour ago: amber, heard just now, data old.
    await simulator(demo, "PUT", "/admin/central/feeds/stall", { stalled: true, since_secs_ago: 1800 });
    await each("feeds-stalled", async (page, board, name) => {
      // Central was down a moment ago: its breaker and the next feed pull decide how soon the
      // store hears the old as_of (seconds on a quiet machine, more under load).
      await page.locator("#chip-central").filter({ hasText: "updates stopped" }).waitFor({ timeout: 90_000 });
      assert.match(await page.locator("#banner").getAttribute("class"), /\bwarn\b/);
      assert.match(await page.locator("#banner-heard").innerText(), /Heard from central just now/);
      const asOf = (await status(demo)).feeds.pickup_orders.data_as_of;
      assert.ok(Date.now() - Date.parse(asOf) > 25 * 60_000, `data as of ${asOf}`);
      assert.match(await page.locator("#banner-note").innerText(), /HQ's updates stopped/);
      assert.ok(await bannerHeight(page) <= 64);
      await board.locator('.upstream.degraded[data-upstream="central"]').waitFor();
      assert.match(await board.locator("#feeds").innerText(), /updates stopped/);
      await shot(page, `${name}-desk`);
      await assertAxe(page, `the desk, HQ's updates stalled (${name})`);
      await shot(board, `${name}-board`);
      await assertAxe(board, `the board, HQ's updates stalled (${name})`);
    });
    await simulator(demo, "PUT", "/admin/central/feeds/stall", { stalled: false });
    await each("recovered", async (page) => {
      await page.locator("#banner.up").waitFor({ timeout: 30_000 });
    });
    for (const { page, board } of pages) {
      assert.deepEqual(page.problems, []);
      assert.deepEqual(board.problems, []);
      await page.context().close();
      await board.context().close();
    }
  });

  it("flags a hand-over and a return central refused for everyone, and names people, lanes and desks", async (t) => {
    t.after(allWell);
    await simulator(demo, "PUT", "/admin/central/reject", { kinds: ["pickup.handed_over", "return.taken"] });
    const page = await newPage(browser, SCREENS[1].viewport, { touch: true });
    await signIn(page, demo, who(demo, "associate"));
    const o = await simpleOrder(page);
    await page.goto(`${demo.url}/#/order/${o.order_id}`);
    await page.locator("#handover-btn").click();
    await page.locator("#notice").filter({ hasText: o.order_number }).waitFor();

    // A return on the sample receipt, with a reason, to be refused too.
    const r = (await apiGet(page, `/api/v1/receipts/${samples.receipt.receipt_id}`)).body;
    const line = r.lines.find((l) => l.returnable_qty === 1 && l.next_unit_refunds_minor[0] < 5_000);
    await page.goto(`${demo.url}/#/receipt/${r.receipt_id}`);
    await page.locator("#receipt-h").waitFor();
    await page.keyboard.type(line.sku);
    await page.keyboard.press("Enter");
    await until("the line ticked", () => page.isChecked(`#rline-${line.line}`));
    await page.selectOption(`#rline-${line.line}-reason`, "wrong_item");
    const radios = await page.$$eval('#view-receipt input[type="radio"]', (rs) => rs.map((x) => Math.min(x.getBoundingClientRect().width, x.getBoundingClientRect().height)));
    assert.ok(radios.every((x) => x >= 44), `radio sizes ${radios}`);
    await page.click("#return-btn");
    await page.locator("#view-slip").waitFor();
    const slip = (await apiGet(page, `/api/v1/receipts/${r.receipt_id}`)).body.returns.at(-1);
    assert.ok(slip.by_name, "the staff list names the associate");
    assert.equal(await page.locator("#slip-by").innerText(), slip.by_name);
    assert.notEqual(slip.by_name, slip.by);
    await shot(page, "slip-with-names");
    await assertAxe(page, "the return slip");

    await until("central to refuse both", async () => (await status(demo)).journal.set_aside >= 2, 30_000, 250);
    // The associate, not only a lead, sees the refusals where they work.
    await page.goto(`${demo.url}/#/order/${o.order_id}`);
    await page.locator("#order-attention").filter({ hasText: "central refused the hand-over" }).waitFor();
    assert.equal(await page.locator("#order-state .badge.done").count(), 0, "not green");
    assert.match(await page.locator("#order-state").innerText(), /refused by central/);
    await shot(page, "order-refused-by-central");
    await assertAxe(page, "an order whose hand-over central refused");
    await page.goto(`${demo.url}/#/receipt/${r.receipt_id}`);
    await page.locator("#receipt-attention").filter({ hasText: "refused" }).waitFor();
    assert.match(await page.locator("#view-receipt .history").innerText(), /refused by central/);
    await shot(page, "receipt-return-refused");
    await assertAxe(page, "a receipt whose return central refused");
    await page.context().close();

    // Reconciliation: people's names and "Service desk", not ids and 127.0.0.1.
    const lead = await newPage(browser, SCREENS[0].viewport);
    await signIn(lead, demo, who(demo, "lead"));
    await lead.click("#nav-recon");
    const row = lead.locator("table.recon tbody tr").filter({ hasText: o.order_number });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, new RegExp(slip.by_name));
    assert.match(text, /Service desk/);
    assert.doesNotMatch(text, /127\.0\.0\.1/);
    assert.doesNotMatch(text, /pickups lane/);
    await shot(lead, "reconciliation-names");
    await assertAxe(lead, "reconciliation");
    await simulator(demo, "PUT", "/admin/central/reject", { kinds: [] });
    assert.deepEqual(lead.problems, []);
    await lead.context().close();
  });

  it("lets a person try it by hand from the demo panel: HQ's updates stalled, and the samples added", async (t) => {
    t.after(allWell);
    const page = await newPage(browser, SCREENS[1].viewport, { touch: true });
    await signIn(page, demo, who(demo, "associate"));
    await openDemoPanel(page);
    await page.locator('#demo button[data-stall="on"]').click();
    await page.locator("#chip-central").filter({ hasText: "updates stopped" }).waitFor({ timeout: 30_000 });
    assert.match(await page.locator("#banner").getAttribute("class"), /\bwarn\b/);
    await page.locator('#demo button[data-stall="on"][aria-pressed="true"]').waitFor();
    await shot(page, "demo-panel-stalled");
    await assertAxe(page, "the demo panel, HQ's updates stalled");
    await page.locator('#demo button[data-stall="off"]').click();
    await page.locator("#banner.up").waitFor({ timeout: 30_000 });
    const before = (await status(demo)).feeds.receipts.records;
    await page.click("#demo-samples");
    await page.locator(".demo-msg").filter({ hasText: "44 lines" }).waitFor();
    await until("the panel's samples in the store", async () => (await status(demo)).feeds.receipts.records === before + 1, 30_000, 250);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it("keeps each test file's screenshots in a folder of its own", async () => {
    const page = await newPage(browser);
    await page.goto(`${demo.url}/status`);
    const path = await shot(page, "folder-check");
    assert.match(path, /test-artifacts\/ui\/queue\/\d\d-folder-check\.png$/);
    await page.context().close();
  });
});
