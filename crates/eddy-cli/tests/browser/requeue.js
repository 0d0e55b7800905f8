// Drives `eddy dashboard` in headless Chromium: checks the queues table,
// enters the token, requeues one dead-letter message of a queue through the
// page and waits for the page to show it, then takes a screenshot.
//
// Env: DASHBOARD_URL, DASHBOARD_TOKEN, SCREENSHOT (a .png path),
// EXPECT (JSON: {"QUEUE": {"ready": N, "dlq": N}, ...}), REQUEUE_QUEUE.
// Prints one JSON line: {"requeued": ID}. Exits non-zero on any failure.
"use strict";

const { chromium } = require("playwright-core");

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function until(check, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("the page did not show the requeue within " + timeoutMs + " ms");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const url = env("DASHBOARD_URL");
  const token = env("DASHBOARD_TOKEN");
  const screenshot = env("SCREENSHOT");
  const expect = JSON.parse(env("EXPECT"));
  const queue = env("REQUEUE_QUEUE");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    for (const [name, want] of Object.entries(expect)) {
      const row = page.locator(`#queues tr[data-queue="${name}"]`);
      await row.waitFor({ timeout: 10000 });
      const ready = (await row.locator("td.ready").textContent()).replace("~", "");
      const dlq = await row.locator("td.dlq-count").textContent();
      if (Number(ready) !== want.ready || Number(dlq) !== want.dlq) {
        throw new Error(`${name}: the page shows ready ${ready}, DLQ ${dlq}; expected ${JSON.stringify(want)}`);
      }
    }
    await page.fill("#token", token);
    await page.click("#token-form button[type=submit]");
    await page.click(`#queues tr[data-queue="${queue}"]`);
    const rows = page.locator("#dlq tbody tr[data-id]");
    await rows.first().waitFor({ timeout: 10000 });
    const before = await rows.count();
    const first = rows.first();
    const id = await first.getAttribute("data-id");
    await first.locator("button.requeue").click();
    // Polled from here: the page's CSP forbids the eval waitForFunction needs.
    await until(async () =>
      (await rows.count()) === before - 1 &&
      (await page.locator(`#dlq tbody tr[data-id="${id}"]`).count()) === 0 &&
      (await page.textContent("#action-result")).includes("requeued 1"),
    );
    // Let the chart get a few samples and the table its next refresh.
    await page.waitForTimeout(Number(process.env.SETTLE_MS || 2500));
    await page.screenshot({ path: screenshot, fullPage: true });
    if (errors.length) throw new Error("errors on the page: " + errors.join("; "));
    console.log(JSON.stringify({ requeued: id, before }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
