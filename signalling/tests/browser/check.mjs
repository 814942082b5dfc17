// The check before a consultation (/check): with Chromium's fake camera and
// microphone (a beep), the page must say that the camera works, that it hears the
// microphone, and that the connection to the media node works directly (UDP), and
// sum it up as ready; it joins no meeting. It passes axe-core and fits a phone, in
// English and in Danish.
// Usage: node check.mjs URL. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";
import { check, DESKTOP } from "./states.mjs";

const [url] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond) {
  for (;;) {
    const r = await cond();
    if (r) return r;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(250);
  }
}

const report = { passed: false, states: {} };
try {
  for (const [lang, words] of [["en", "ready for your consultation"], ["da", "klar til din konsultation"]]) {
    const page = await (await browser.newContext({ viewport: DESKTOP })).newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[${lang}] ${m.text()}`); });
    await page.goto(new URL(`check${lang === "da" ? "?lang=da" : ""}`, url).href);
    const r = await until(`the ${lang} check is done`, () => page.evaluate(() => window.knudepunktCheck.done && {
      results: { ...window.knudepunktCheck },
      summary: document.getElementById("summary").textContent,
      lines: ["cam-result", "mic-result", "net-result"].map((id) => document.getElementById(id).textContent),
    }));
    report[lang] = r;
    if (!(r.results.camera && r.results.microphone && r.results.connection)) throw new Error(`${lang}: ${JSON.stringify(r)}`);
    if (!r.summary.includes(words)) throw new Error(`${lang} summary: ${r.summary}`);
    if (lang === "en" && !r.lines[2].includes("directly")) throw new Error(`not over UDP: ${r.lines[2]}`);
    await check(page, `check-${lang}`, report.states);
  }
  report.passed = true;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
