// What the browser tests share: the real `standin demo` binary on free ports, Debian's
// Chromium driven by playwright-core, sign-in, screenshots into test-artifacts/ui/FILE/ (one
// folder per test file, so files never overwrite each other's), axe-core's WCAG checks.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const ARTIFACTS = join(ROOT, "test-artifacts", "ui");
const BIN = process.env.STANDIN_BIN
  ?? join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "debug", "standin");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls fn until it returns something truthy; throws with `what` after `ms`. Timed on the
 * monotonic clock: this VM's wall clock once jumped 45 s ahead in a 15 s wait, and a wait
 * timed by `Date.now()` gave up early.
 */
export async function until(what, fn, ms = 15_000, every = 100) {
  const end = performance.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(every);
  }
}

/** Starts `standin demo` (small data set, ports chosen by the OS) and waits for its credentials. */
export async function startDemo({ pickupOrders = 200 } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build first`);
  const dir = mkdtempSync(join(tmpdir(), "standin-ui-"));
  const data = join(dir, "data");
  const log = [];
  const child = spawn(BIN, [
    "demo", "--listen", "127.0.0.1:0", "--data-dir", data,
    "--receipts", "500", "--pickup-orders", String(pickupOrders), "--simulator-listen", "127.0.0.1:0",
  ], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  for (const s of [child.stdout, child.stderr]) s.on("data", (b) => log.push(b.toString()));
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  const kill = () => { if (!exited) child.kill("SIGKILL"); };
  process.once("exit", kill);
  const credsPath = join(data, "demo-credentials.json");
  try {
    await until("demo-credentials.json", () => {
      if (exited) throw new Error(`standin demo exited (${JSON.stringify(exited)}):\n${log.join("")}`);
      return existsSync(credsPath);
    }, 30_000, 50);
  } catch (e) {
    kill();
    throw e;
  }
  // Written in one go, but be safe against reading it mid-write.
  const creds = await until("readable credentials", () => JSON.parse(readFileSync(credsPath, "utf8")), 5_000, 50);
  return {
    url: creds.url,
    simulatorUrl: creds.simulator_url,
    staff: creds.staff,
    kiosks: creds.kiosks,
    log,
    async stop() {
      process.removeListener("exit", kill);
      if (!exited) {
        child.kill("SIGTERM");
        await until("standin to stop", () => exited, 10_000, 50).catch(() => child.kill("SIGKILL"));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/test does)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** The two desk screens every point is tried on: a 1280×800 desktop, and a 1024×768 touch
 * screen (the common service-desk terminal). */
export const SCREENS = [
  { name: "1280x800", viewport: { width: 1280, height: 800 }, touch: false },
  { name: "1024x768-touch", viewport: { width: 1024, height: 768 }, touch: true },
];

/** A fresh browser context (its own cookies) and page, recording page errors and CSP refusals. */
export async function newPage(browser, viewport = { width: 1280, height: 800 }, { touch = false } = {}) {
  const context = await browser.newContext({ viewport, locale: "en-US", timezoneId: "UTC", hasTouch: touch });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(15_000);
  return page;
}

/** The test file calling in: its name ("desk" for desk.test.js) is its screenshots' folder. */
function callerFile() {
  for (const line of String(new Error().stack).split("\n")) {
    const m = /([\w.-]+)\.test\.js/.exec(line);
    if (m) return m[1];
  }
  return basename(process.argv[1] ?? "ui", ".js");
}

const shots = new Map();
/** Saves what the page shows to test-artifacts/ui/FILE/NN-name.png (numbered per test file). */
export async function shot(page, name) {
  const file = callerFile();
  const dir = join(ARTIFACTS, file);
  // A run starts its file's folder afresh: no picture left from an earlier run.
  if (!shots.has(file)) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const n = (shots.get(file) ?? 0) + 1;
  shots.set(file, n);
  const path = join(dir, `${String(n).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/** axe-core's WCAG 2.2 A and AA rules on the page as it is now: the violations, in words. */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags } }), AXE_TAGS);
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
}

/** Fails the test when axe-core finds any WCAG 2.2 AA violation on the page now. */
export async function assertAxe(page, where) {
  const found = await axeViolations(page);
  if (found.length) throw new Error(`axe-core: ${found.length} violation(s) on ${where}:\n${found.join("\n")}`);
}

export function who(demo, role) {
  const s = demo.staff.find((x) => x.role === role);
  if (!s) throw new Error(`the demo has no ${role}`);
  return s;
}

/** Signs in through the sign-in screen and waits for the desk. */
export async function signIn(page, demo, person, { screenshot } = {}) {
  await page.goto(`${demo.url}/`);
  await page.locator("#view-signin").waitFor();
  await page.fill("#employee_id", person.employee_id);
  await page.fill("#pin", person.pin);
  if (screenshot) {
    await shot(page, screenshot);
    await assertAxe(page, screenshot);
  }
  await page.press("#pin", "Enter");
  await page.locator("#view-desk").waitFor();
}

/**
 * Opens the demo panel (a `<details>`) the way a person does, by its summary, and waits until
 * it is open and its controls are drawn: a click that landed while the page was still settling
 * after sign-in once left it closed (CI, 2026-12-08), and the next click timed out on a button
 * that was there but not visible. Clicked again (at most three times) until it is open.
 */
export async function openDemoPanel(page) {
  const panel = page.locator("#demo");
  for (let i = 0; i < 3; i++) {
    if (await panel.evaluate((d) => d.open)) break;
    await page.locator("#demo summary").click();
    await page.locator("#demo[open]").waitFor({ timeout: 3_000 }).catch(() => {});
  }
  assert.ok(await panel.evaluate((d) => d.open), "the demo panel opens from its summary");
  await page.locator("#demo .demo-body button").first().waitFor();
}

/** A GET to Standin's API from inside the page, so with the page's session cookie. */
export async function apiGet(page, path) {
  return page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { accept: "application/json" } });
    return { status: r.status, body: await r.json().catch(() => null), type: r.headers.get("content-type") };
  }, path);
}

/** The simulator's controls, from the test itself. */
export async function simulator(demo, method, path, body) {
  const r = await fetch(`${demo.simulatorUrl}${path}`, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export async function status(demo) {
  return (await fetch(`${demo.url}/api/v1/status`)).json();
}
