// A return in real headless Chromium against the real `standin demo`, with central down: find
// the sale by its barcode, tick a line above the associate's offline cap, get a manager's
// override (a wrong PIN first), print the return slip; then central comes back and gets the
// return exactly once.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  apiGet, assertAxe, launchBrowser, newPage, shot, signIn, simulator, startDemo, status, until, who,
} from "./harness.js";

const usd = (minor) => new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" }).format(minor / 100);

/** A sale from central's receipts feed with a line that can come back and is worth more than `cap`. */
async function saleAboveCap(demo, cap) {
  const info = await simulator(demo, "GET", "/admin");
  const store = (await status(demo)).store_id;
  const now = Date.now();
  for (let after = 0; ; after += 100) {
    const r = await fetch(`${info.central_url}/v1/stores/${store}/feeds/receipts/batches?after=${after}&limit=100`);
    const { batches } = await r.json();
    if (!batches.length) return null;
    for (const b of batches) {
      for (const rec of b.upserts) {
        const sold = Date.parse(rec.sold_at);
        for (const l of rec.lines) {
          const unit = l.unit_price_minor - Math.ceil(l.discount_minor / l.qty) + Math.floor(l.tax_minor / l.qty);
          if (l.returnable && l.returned_qty < l.qty && unit > cap && sold + (l.return_window_days - 1) * 86_400_000 > now) {
            return { receipt: rec, line: l };
          }
        }
      }
    }
  }
}

/** Any sale paid by card in the last 80 days, with its card tender. */
async function cardSale(demo) {
  const info = await simulator(demo, "GET", "/admin");
  const store = (await status(demo)).store_id;
  const r = await fetch(`${info.central_url}/v1/stores/${store}/feeds/receipts/batches?after=0&limit=100`);
  for (const b of (await r.json()).batches) {
    for (const rec of b.upserts) {
      const card = rec.tenders.find((t) => t.brand && t.last4);
      if (card && Date.parse(rec.sold_at) > Date.now() - 80 * 86_400_000) return { receipt: rec, card };
    }
  }
  throw new Error("no card sale in the demo");
}

/** A returnable item the store sold recently for less than `cap` a unit (for store credit without a receipt). */
async function cheapSku(demo, cap) {
  const info = await simulator(demo, "GET", "/admin");
  const store = (await status(demo)).store_id;
  const r = await fetch(`${info.central_url}/v1/stores/${store}/feeds/receipts/batches?after=0&limit=100`);
  for (const b of (await r.json()).batches) {
    for (const rec of b.upserts) {
      const l = rec.lines.find((x) => x.returnable && x.unit_price_minor < cap / 2);
      if (l && Date.parse(rec.sold_at) > Date.now() - 60 * 86_400_000) return l.sku;
    }
  }
  throw new Error("no cheap returnable item in the demo");
}

describe("a return at the desk with central down", { timeout: 120_000 }, () => {
  let demo;
  let browser;

  before(async () => {
    [demo, browser] = await Promise.all([startDemo(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it("needs a manager's override above the associate's cap, then prints the slip and reaches central once", async () => {
    const found = await saleAboveCap(demo, 5_000);
    assert.ok(found, "the demo has a returnable sale above the cap");
    const { receipt, line } = found;
    const card = receipt.tenders.find((t) => t.brand && t.last4) ?? null;
    const byCard = card ? { receipt, card } : await cardSale(demo);
    const sku = await cheapSku(demo, 5_000);

    await simulator(demo, "PUT", "/admin/faults/central", { mode: "down" });
    await until("central down", async () => (await status(demo)).upstreams.central.state === "down", 30_000, 200);

    const desk = await newPage(browser);
    const associate = who(demo, "associate");
    const manager = who(demo, "manager");
    await signIn(desk, demo, associate);
    await desk.click("#nav-returns");
    await desk.locator("#view-returns").waitFor();

    // A customer without the receipt: the card they paid with finds the sale.
    await desk.click("#card-search summary");
    await desk.selectOption("#card-brand", byCard.card.brand.toLowerCase());
    await desk.fill("#card-last4", byCard.card.last4);
    await desk.click("#card-find");
    await desk.locator(`#receipt-results [data-receipt-id="${byCard.receipt.receipt_id}"]`).waitFor();
    assert.match(await desk.locator("#receipt-results-h").innerText(), new RegExp(`paid with .+ …${byCard.card.last4}`));
    await shot(desk, "returns-by-card");
    await assertAxe(desk, "returns-by-card");
    await desk.fill("#q", receipt.receipt_id);
    await desk.press("#q", "Enter");
    await desk.locator("#receipt-h").filter({ hasText: receipt.receipt_id }).waitFor();
    await desk.locator("#offline-limits").filter({ hasText: "Central is down" }).waitFor();
    await shot(desk, "returns-receipt-offline");
    await assertAxe(desk, "returns-receipt-offline");

    // Keyboard: the line's box, its reason.
    await desk.focus(`#rline-${line.line}`);
    await desk.keyboard.press("Space");
    assert.equal(await desk.isChecked(`#rline-${line.line}`), true);
    await desk.selectOption(`#rline-${line.line}-reason`, "defective");
    await desk.locator("#needs-manager").filter({ hasText: "manager" }).waitFor();
    const total = await desk.locator("#refund-total").innerText();
    await shot(desk, "returns-ticked");
    await assertAxe(desk, "returns-ticked");

    await desk.click("#return-btn");
    await desk.locator("#override-dialog[open]").waitFor();
    assert.match(await desk.locator("#override-reasons").innerText(), /above the \$50\.00 an associate may refund/);
    await shot(desk, "returns-override-dialog");
    await assertAxe(desk, "returns-override-dialog");

    // A wrong PIN: said in the dialog, the associate stays signed in.
    await desk.fill("#manager-id", manager.employee_id);
    await desk.fill("#manager-pin", manager.pin === "000000" ? "111111" : "000000");
    await desk.press("#manager-pin", "Enter");
    await desk.locator("#override-error").filter({ hasText: "do not match" }).waitFor();
    assert.equal(await desk.evaluate(() => document.activeElement?.id), "manager-pin");
    await shot(desk, "returns-override-refused");
    await assertAxe(desk, "returns-override-refused");

    await desk.fill("#manager-pin", manager.pin);
    await desk.press("#manager-pin", "Enter");
    await desk.locator("#view-slip").waitFor();
    await desk.locator("#slip-approved").filter({ hasText: "manager override" }).waitFor();
    assert.equal(await desk.locator("#slip-total").innerText(), total);
    assert.match(await desk.locator("#slip-state").innerText(), /To the original payment|Cash|Store credit/);
    await shot(desk, "returns-slip");
    await assertAxe(desk, "returns-slip");
    // Printed, the slip stands alone.
    await desk.emulateMedia({ media: "print" });
    assert.equal(await desk.locator("#banner").isVisible(), false);
    assert.equal(await desk.locator("#print-slip").isVisible(), false);
    assert.equal(await desk.locator("#slip").isVisible(), true);
    await shot(desk, "returns-slip-print");
    await assertAxe(desk, "returns-slip-print");
    await desk.emulateMedia({ media: "screen" });

    const after = (await apiGet(desk, `/api/v1/receipts/${receipt.receipt_id}`)).body;
    const l = after.lines.find((x) => x.line === line.line);
    assert.equal(l.returned_here_qty, 1);
    assert.equal(after.returns[0].approved_by, manager.employee_id);
    // The slip names the manager, as people know them, not by employee id.
    assert.ok(after.returns[0].approved_by_name);
    assert.equal(await desk.locator("#slip-approved").innerText(), `${after.returns[0].approved_by_name} (manager override)`);
    assert.equal(usd(after.returns[0].amount_minor), total);

    // The receipt scanned into the desk's one search box opens the sale again: the line now
    // says what is left (nothing, for a single unit, with the reason).
    await desk.click("#slip-done");
    await desk.locator("#view-returns").waitFor();
    await desk.fill("#q", receipt.receipt_id);
    await desk.press("#q", "Enter");
    await desk.locator("#receipt-h").filter({ hasText: receipt.receipt_id }).waitFor();
    const row = desk.locator(`#view-receipt tr[data-line="${line.line}"]`);
    if (line.qty - line.returned_qty === 1) {
      await row.locator(".refusal").filter({ hasText: "Already returned" }).waitFor();
      assert.equal(await desk.isDisabled(`#rline-${line.line}`), true);
    }
    assert.match(await row.innerText(), /1 returned|returned/);
    await desk.locator("#rhistory-h").waitFor();
    await shot(desk, "returns-receipt-after");
    await assertAxe(desk, "returns-receipt-after");
    await desk.keyboard.press("Escape");
    await desk.locator("#view-returns").waitFor();

    // No receipt, no card: store credit for an item, which policy allows offline.
    await desk.click("#no-receipt summary");
    await desk.fill("#nr-sku", sku);
    await desk.fill("#nr-qty", "1");
    await desk.selectOption("#nr-reason", "damaged");
    await desk.click("#nr-take");
    await desk.locator("#view-slip").waitFor();
    assert.match(await desk.locator("#slip-state").innerText(), /Store credit: Issued as store credit/);
    await shot(desk, "returns-no-receipt-slip");
    await assertAxe(desk, "returns-no-receipt-slip");
    await desk.click("#slip-done");
    await desk.locator("#view-returns").waitFor();

    // On a tablet held upright the receipt fits the screen, no sideways scrolling.
    const tablet = await newPage(browser, { width: 800, height: 1280 });
    await signIn(tablet, demo, associate);
    await tablet.goto(`${demo.url}/#/receipt/${receipt.receipt_id}`);
    await tablet.locator("#receipt-h").filter({ hasText: receipt.receipt_id }).waitFor();
    assert.equal(await tablet.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, "no sideways scrolling");
    await shot(tablet, "returns-tablet");
    await assertAxe(tablet, "returns-tablet");
    await tablet.context().close();

    // Central back: the return reaches it, once.
    await simulator(demo, "PUT", "/admin/faults/central", { mode: "ok" });
    const entry = await until("central to receive the return", async () => {
      const r = await simulator(demo, "GET", "/admin/received");
      return r.journal.find((e) => e.kind === "return.taken" && e.entry.body.receipt_id === receipt.receipt_id);
    }, 60_000, 250);
    assert.equal(entry.count, 1);
    assert.equal(entry.entry.body.override.approved_by, manager.employee_id);
    assert.deepEqual(desk.problems, []);
  });
});
