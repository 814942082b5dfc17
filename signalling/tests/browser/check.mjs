// The check before a consultation (/check): with Chromium's fake camera and
// microphone (a beep), the page must say that the camera works, that it hears the
// microphone, and that the connection to the media node works directly (UDP), and
// sum it up as ready; it joins no meeting. It passes axe-core and fits a phone, in
// English and in Danish. MODE "relay": the page may use TURN relay candidates only
// (its RTCPeerConnection forced to iceTransportPolicy "relay", as on a network that
// lets nothing but the TURN server through): the direct try fails, and the check
// must find its way through the TURN server the answer named, and say so.
// Usage: node check.mjs URL [relay]. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";
import { check, open as openPage, until as untilAt } from "./states.mjs";

const [url, mode] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();

const until = (what, cond) => untilAt(deadline, what, cond);

const report = { passed: false, states: {} };
try {
  const langs = mode === "relay" ? [["en", "ready for your consultation"]]
    : [["en", "ready for your consultation"], ["da", "klar til din konsultation"]];
  for (const [lang, words] of langs) {
    const page = await openPage(browser, url, lang, "about:blank");
    if (mode === "relay") await page.context().addInitScript(() => {
      const Native = window.RTCPeerConnection;
      window.RTCPeerConnection = function (config) {
        return new Native({ ...(config || {}), iceTransportPolicy: "relay" });
      };
      window.RTCPeerConnection.prototype = Native.prototype;
      Object.setPrototypeOf(window.RTCPeerConnection, Native);
    });
    await page.goto(new URL(`check${lang === "da" ? "?lang=da" : ""}`, url).href);
    const r = await until(`the ${lang} check is done`, () => page.evaluate(() => window.knudepunktCheck.done && {
      results: { ...window.knudepunktCheck },
      summary: document.getElementById("summary").textContent,
      lines: ["cam-result", "mic-result", "net-result"].map((id) => document.getElementById(id).textContent),
    }));
    report[lang] = r;
    if (!(r.results.camera && r.results.microphone && r.results.connection)) throw new Error(`${lang}: ${JSON.stringify(r)}`);
    if (!r.summary.includes(words)) throw new Error(`${lang} summary: ${r.summary}`);
    const way = mode === "relay" ? "through a relay" : "directly";
    if (lang === "en" && !r.lines[2].includes(way)) throw new Error(`not ${way}: ${r.lines[2]}`);
    if (mode !== "relay") await check(page, `check-${lang}`, report.states);
  }
  report.passed = true;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
