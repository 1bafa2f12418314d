// The hub's fleet page in real headless Chromium against the real `standin hub demo`
// (PostgreSQL, the hub, three Standin stores sending heartbeats): the three stores show OK;
// a fourth store registered with `standin hub store add` reports itself offline, then stops
// reporting and shows silent within one health interval of crossing the silent threshold;
// axe-core finds no WCAG 2.2 AA violation. Then the demo with virtual stores: every state
// shows on the page, the console's `down` takes the hub away from the stores and every one
// goes silent while the page stays up, and after `up` they come back and drain: each
// store's whole journal, the outage's entries included, verified at HQ.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ROOT, assertAxe, launchBrowser, newPage, shot, until } from "./harness.js";

const BIN = process.env.STANDIN_BIN
  ?? join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "debug", "standin");

const freePort = () => new Promise((ok, fail) => {
  const s = createServer();
  s.once("error", fail);
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
});

async function startHubDemo(virtualStores) {
  const dir = mkdtempSync(join(tmpdir(), "standin-fleet-ui-"));
  // PostgreSQL runs as `nobody` when the tests run as root: it must reach its directory.
  chmodSync(dir, 0o755);
  const data = join(dir, "demo");
  const pgPort = await freePort();
  const out = [];
  const child = spawn(BIN, [
    "hub", "demo", "--listen", "127.0.0.1:0", "--stores-listen", "127.0.0.1:0", "--pg-port", String(pgPort),
    "--data-dir", data, "--receipts", "50", "--pickup-orders", "10",
    "--stores-link", "127.0.0.1:0", "--virtual-stores", String(virtualStores),
  ], { cwd: dir, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  for (const s of [child.stdout, child.stderr]) s.on("data", (b) => out.push(b.toString()));
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  const kill = () => { if (!exited) child.kill("SIGKILL"); };
  process.once("exit", kill);
  const text = () => out.join("");
  await until("the hub demo to be running", () => exited || /Stop with Ctrl-C/.test(text()), 180_000, 100);
  if (exited) throw new Error(`standin hub demo exited (${JSON.stringify(exited)}):\n${text()}`);
  const fleetUrl = /FLEET PAGE:\s+(\S+)/.exec(text())[1];
  const pgUrl = /PostgreSQL:\s+(\S+)/.exec(text())[1];
  return {
    fleetUrl,
    hubUrl: fleetUrl.replace(/\/fleet$/, ""),
    pgUrl,
    text,
    /** Types `line` at the demo's console. */
    command(line) {
      child.stdin.write(`${line}\n`);
    },
    async stop() {
      process.removeListener("exit", kill);
      if (!exited) {
        child.kill("SIGTERM");
        await until("the demo to stop", () => exited, 20_000, 50).catch(() => child.kill("SIGKILL"));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function heartbeat(store, seq, payments) {
  const now = new Date().toISOString();
  return {
    store_id: store, sent_at: now, version: "ui-test", seq,
    upstreams: { central: { state: "up", since: now }, payments: { state: payments, since: now } },
    journal: { pending: 0, oldest_pending_at: null, lanes: {} },
    payments: { offline_count: payments === "down" ? 3 : 0, offline_total_minor: payments === "down" ? 7_500 : 0, currency: "USD", tightest_deadline: null },
    refunds: { queued: 0, queued_total_minor: 0 },
    feeds: {},
  };
}

describe("the fleet page", () => {
  let demo, browser;
  before(async () => {
    demo = await startHubDemo(0);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it("shows the fleet by state, a store offline, then the same store silent within one interval", async () => {
    const add = spawnSync(BIN, ["hub", "store", "add", "store-ui", "--database-url", demo.pgUrl], { encoding: "utf8" });
    assert.equal(add.status, 0, add.stderr);
    const token = add.stdout.trim().split("\n").pop();
    let seq = 0;
    const send = async (payments) => {
      const r = await fetch(`${demo.hubUrl}/v1/stores/store-ui/status`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(heartbeat("store-ui", ++seq, payments)),
      });
      assert.equal(r.status, 204, await r.text());
    };
    await send("down");

    const page = await newPage(browser, { width: 1600, height: 1000 });
    await page.goto(demo.fleetUrl);
    const row = (store) => page.locator(`tr[data-store="${store}"]`);
    await until("the three demo stores to show OK", async () => {
      for (const s of ["store-0001", "store-0002", "store-0003"]) {
        if ((await row(s).getAttribute("data-state")) !== "ok") return false;
      }
      return true;
    }, 60_000, 250);
    await until("store-ui to show offline", async () => (await row("store-ui").getAttribute("data-state")) === "offline", 10_000);
    // In words, not colour alone.
    assert.match(await row("store-ui").innerText(), /Offline/);
    assert.match(await row("store-ui").innerText(), /Down/);
    assert.equal(await page.locator("#n-offline").innerText(), "1");
    assert.match(await page.locator("#t-exposure").innerText(), /USD 75\.00/);
    await shot(page, "fleet-one-offline");
    await assertAxe(page, "the fleet page, one store offline");

    // It stops reporting: silent after silent_after_intervals × the interval without contact.
    const fleet = await (await fetch(`${demo.hubUrl}/v1/fleet`)).json();
    const interval = fleet.health_interval_secs;
    const threshold = fleet.silent_after_intervals * interval;
    await send("up");
    const lastContact = performance.now();
    await until("store-ui back to OK", async () => (await row("store-ui").getAttribute("data-state")) === "ok", 10_000);
    await until("store-ui to show silent", async () => (await row("store-ui").getAttribute("data-state")) === "silent", (threshold + 3 * interval) * 1000, 100);
    const shownAfter = (performance.now() - lastContact) / 1000;
    // Silent once more than `threshold` whole seconds have passed; the page polls every interval.
    assert.ok(shownAfter <= threshold + 1 + interval + 0.5, `silent shown ${shownAfter.toFixed(1)} s after the last contact (threshold ${threshold} s, interval ${interval} s)`);
    assert.match(await row("store-ui").innerText(), /Silent/);
    assert.equal(await page.locator("#n-silent").innerText(), "1");
    await shot(page, "fleet-one-silent");
    await assertAxe(page, "the fleet page, one store silent");

    // The filter shows only the silent store.
    await page.goto(`${demo.fleetUrl}?state=silent`);
    await until("the filtered table", async () => (await page.locator("tbody tr").count()) === 1 && (await row("store-ui").count()) === 1);
    assert.match(await page.locator("#stores-title").innerText(), /Silent stores/);
    await assertAxe(page, "the fleet page filtered to silent stores");
    assert.deepEqual(page.problems, []);
  });
});

const fleetJson = async (hubUrl) => (await fetch(`${hubUrl}/v1/fleet`)).json();

describe("the demo's virtual stores through the hub going down and coming back", () => {
  const VIRTUAL = 40;
  const ALL = VIRTUAL + 3;
  let demo, browser;
  before(async () => {
    demo = await startHubDemo(VIRTUAL);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it("shows every state, every store silent while the hub is down, then the fleet drained", async () => {
    const page = await newPage(browser, { width: 1600, height: 1000 });
    await page.goto(demo.fleetUrl);
    const row = (store) => page.locator(`tr[data-store="${store}"]`);
    const n = async (id) => Number((await page.locator(`#${id}`).innerText()).replace(/,/g, ""));

    // Every state populated: stores start cut (silent), with the processor down and
    // payments held offline, and with a hand-over of an order HQ cancelled (set aside).
    await until("every store on the page, in each state", async () =>
      (await page.locator("tbody tr").count()) === ALL
        && await n("n-ok") > 0 && await n("n-offline") > 0 && await n("n-silent") > 0
        && await n("t-set-aside") > 0, 30_000, 250);
    let fleet = await fleetJson(demo.hubUrl);
    assert.equal(fleet.totals.stores, ALL);
    const virtual = fleet.stores.filter((s) => s.store_id.startsWith("vstore-"));
    assert.equal(virtual.length, VIRTUAL);
    const offline = virtual.find((s) => s.state === "offline" && s.flags.includes("exposure"));
    assert.ok(offline, "a virtual store offline with payments held");
    assert.equal(offline.reported.upstreams.payments.state, "down");
    assert.ok(offline.reported.payments.offline_total_minor > 0);
    assert.ok(offline.reported.payments.tightest_deadline);
    assert.ok(fleet.totals.offline_payments > 0);
    assert.match(await page.locator("#t-exposure").innerText(), /EUR \d/);
    // The page refreshes on its own interval: it may still show this store as it was a
    // moment before the JSON above was read.
    await until("the offline store's row shows it", async () =>
      /Offline[\s\S]*Down/.test(await row(offline.store_id).innerText()), 15_000, 250);
    const setAside = virtual.find((s) => s.set_aside_count > 0);
    assert.ok(setAside, "a virtual store with an entry set aside");
    assert.equal(setAside.set_aside[0].reason, "order_cancelled");
    assert.ok(virtual.some((s) => s.state === "silent"), "a virtual store silent");
    await shot(page, "fleet-virtual-stores");
    await assertAxe(page, "the fleet page with virtual stores");

    // The hub goes away from the stores; the page stays up and every store goes silent.
    demo.command("down");
    const down = performance.now();
    await until("every store silent", async () => await n("n-silent") === ALL, 40_000, 250);
    console.log(`every store silent ${((performance.now() - down) / 1000).toFixed(1)} s after down`);
    fleet = await fleetJson(demo.hubUrl);
    assert.equal(fleet.totals.by_state.silent, ALL);
    await shot(page, "fleet-hub-down");

    // Back: the stores find the hub in their breakers' time and drain what they journalled
    // meanwhile. Drained: in a report sent after the return, the store has nothing waiting,
    // and HQ has verified its chain at least up to the last entry it reported (the store
    // journals on, so HQ may be ahead of its last report).
    demo.command("up");
    const up = performance.now();
    let maxBacklog = 0;
    const drained = (s) => s.reported && s.reported.journal.pending === 0
      && s.verified_seq >= s.reported.journal.last_seq;
    await until("the fleet back and drained", async () => {
      fleet = await fleetJson(demo.hubUrl);
      maxBacklog = Math.max(maxBacklog, fleet.totals.backlog);
      const back = fleet.stores.filter((s) => s.state !== "silent");
      // The stores cut by the demo's own dice stay silent until their link returns.
      return back.length >= ALL - 3 && back.every(drained)
        && back.every((s) => new Date(s.reported_at) > new Date(up));
    }, 90_000, 500);
    console.log(`back and drained ${((performance.now() - up) / 1000).toFixed(1)} s after up (largest backlog reported: ${maxBacklog})`);
    const landed = fleet.stores.filter((s) => s.store_id.startsWith("vstore-") && s.state !== "silent")
      .reduce((sum, s) => sum + s.verified_seq, 0);
    assert.ok(landed > 0);
    await until("the page to show them", async () => await n("n-silent") <= 3, 10_000, 250);
    await shot(page, "fleet-hub-back");
    assert.deepEqual(page.problems, []);
  });
});
