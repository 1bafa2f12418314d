// The kiosk payment queue as the desk and the status board show it, in real headless Chromium
// against the real `standin demo`: the card processor goes down, a kiosk takes a card payment
// in stand-in, the desk's banner and the board show the payment waiting with its deadline;
// the processor comes back and the queue empties.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { assertAxe, launchBrowser, newPage, shot, signIn, simulator, startDemo, status, until, who } from "./harness.js";

describe("kiosk payments at the desk", () => {
  let demo, browser;
  before(async () => {
    demo = await startDemo();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it("shows a stand-in payment waiting on the banner and the board, then gone once forwarded", async () => {
    const kiosk = demo.kiosks[0];
    assert.ok(kiosk?.token, "the demo lists a kiosk");
    await simulator(demo, "PUT", "/admin/faults/payments", { mode: "down" });
    await until("the processor to be seen down", async () => (await status(demo)).upstreams.payments.state === "down", 20_000);

    const pay = await fetch(`${demo.url}/kiosk/v1/payments`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${kiosk.token}` },
      body: JSON.stringify({
        idempotency_key: "ui-test-0001", basket_id: "basket-ui-1", amount_minor: 2_599, currency: "USD",
        tender: { kind: "card_token", token: "tok_ui", brand: "visa", last4: "4242", exp_month: 12, exp_year: 2030, entry_mode: "contactless" },
      }),
    });
    const answer = await pay.json();
    assert.equal(pay.status, 200, JSON.stringify(answer));
    assert.equal(answer.status, "approved_offline");

    const desk = await newPage(browser);
    await signIn(desk, demo, who(demo, "associate"));
    const chip = desk.locator("#banner-queue");
    await chip.filter({ hasText: "1 card payment waiting" }).waitFor({ timeout: 20_000 });
    assert.match(await chip.innerText(), /\$25\.99/);
    assert.match(await chip.innerText(), /send within/);
    assert.match(await desk.locator("#chip-payments").innerText(), /Card processor down/);
    await shot(desk, "payment-queue-banner");
    await assertAxe(desk, "payment-queue-banner");

    const board = await newPage(browser);
    await board.goto(`${demo.url}/status`);
    await until("the board to show the held payment", async () => /1 payment/.test(await board.locator("#exposure").innerText()));
    assert.match(await board.locator("#exposure").innerText(), /\$25\.99/);
    await shot(board, "payment-queue-board");
    await assertAxe(board, "payment-queue-board");

    await simulator(demo, "PUT", "/admin/faults/payments", { mode: "ok" });
    await until("the payment to be forwarded", async () => (await status(demo)).payments.count === 0, 60_000, 250);
    await chip.waitFor({ state: "hidden", timeout: 20_000 });
    await until("the board to show nothing held", async () => /none/.test(await board.locator("#exposure").innerText()), 20_000);
    assert.deepEqual(desk.problems, []);
    assert.deepEqual(board.problems, []);
  });
});
