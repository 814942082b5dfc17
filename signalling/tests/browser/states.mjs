// Checks of the page's states for the browser scripts: axe-core (no serious or
// critical violation) and the phone-size fit (390x844: nothing scrolls sideways,
// every control on screen), each state's screenshots saved at desktop and phone size
// when SCREENSHOTS names a directory.
import { readFileSync } from "node:fs";

const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// axe-core's serious and critical violations of the page as it is.
async function axe(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ content: axeSource });
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

// At phone size: sideways scrolling, and controls out of reach (off screen).
function phoneFit(page) {
  return page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const off = [...document.querySelectorAll("button, input, select")]
      .filter((e) => e.offsetParent !== null)
      .filter((e) => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > w + 1; })
      .map((e) => e.id || e.textContent);
    return { scrolls: document.documentElement.scrollWidth > w, off };
  });
}

// Check `page` in state `state` at both sizes (into `found[state]`); throws on a
// violation or a misfit.
export async function check(page, state, found) {
  const shots = process.env.SCREENSHOTS;
  const f = { desktop: await axe(page) };
  if (shots) await page.screenshot({ path: `${shots}/${state}-desktop.png` });
  await page.setViewportSize(PHONE);
  await sleep(400);
  f.phone = await axe(page);
  f.fit = await phoneFit(page);
  if (shots) await page.screenshot({ path: `${shots}/${state}-phone.png` });
  await page.setViewportSize(DESKTOP);
  await sleep(200);
  found[state] = f;
  if (f.desktop.length || f.phone.length) throw new Error(`${state}: axe: ${JSON.stringify(f)}`);
  if (f.fit.scrolls || f.fit.off.length) throw new Error(`${state} at phone size: ${JSON.stringify(f.fit)}`);
}

// Waits for `cond` to be truthy (its value is returned) until `deadline`.
export async function until(deadline, what, cond) {
  for (;;) {
    const r = await cond();
    if (r) return r;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(250);
  }
}

// A page of its own (a browser context each: its own camera, storage) at `path`
// under `url`, at desktop size, its console errors printed with `name`.
export async function open(browser, url, name, path) {
  const page = await (await browser.newContext({ viewport: DESKTOP })).newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
  await page.goto(new URL(path, url).href);
  return page;
}
