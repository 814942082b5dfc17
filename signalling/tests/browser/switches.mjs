// Two headless Chromium pages in one room; bob's page asks the node again and again
// to cap alice's video at layer 0, then 1 (the WebSocket "preference" message), so
// the node switches bob between alice's simulcast layers, each numbering its VP8
// pictures on its own. Bob's decoder must go on through every switch: frames decoded
// in every interval, few dropped, keyframes only for the switches (no storm).
// Usage: node switches.mjs URL ROOM. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 45000);
const STEP_MS = 3500;
const CAPS = [0, 1, 0, 1, 0, 1, 0, 1];
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Bob's view of alice's video: the inbound stream's counters, and the layer changes
// the node announced.
function look(page) {
  return page.evaluate(async () => {
    const k = window.knudepunkt;
    const s = { framesDecoded: 0, framesDropped: 0, keyFramesDecoded: 0, pliCount: 0, frameWidth: 0, track: null };
    if (k.pc) {
      (await k.pc.getStats()).forEach((x) => {
        if (x.type === "inbound-rtp" && x.kind === "video" && x.framesReceived) {
          for (const f of ["framesDecoded", "framesDropped", "keyFramesDecoded", "pliCount", "frameWidth"]) s[f] = x[f] || 0;
        }
      });
      const t = Object.values(k.mids).find((t) => t.kind === "video");
      s.track = t ? t.track : null;
    }
    s.layerChanges = window.layerChanges.length;
    return s;
  });
}

const report = { passed: false, steps: [] };
try {
  const pages = [];
  for (const name of ["alice", "bob"]) {
    const ctx = await browser.newContext();
    // Count the node's "layer_changed" messages as the page receives them.
    await ctx.addInitScript(() => {
      window.layerChanges = [];
      const Native = window.WebSocket;
      window.WebSocket = function (...args) {
        const ws = new Native(...args);
        ws.addEventListener("message", (e) => {
          try {
            const m = JSON.parse(e.data);
            if (m.type === "layer_changed") window.layerChanges.push(m.layer);
          } catch {}
        });
        return ws;
      };
      window.WebSocket.prototype = Native.prototype;
      Object.setPrototypeOf(window.WebSocket, Native);
    });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
    await page.goto(`${url}?room=${room}&name=${name}`);
    pages.push(page);
  }
  const bob = pages[1];
  // Bob plays alice's video on a layer above 0 first (the node climbs as the
  // estimate grows), so that a cap of 0 is a switch.
  let s;
  for (;;) {
    s = await look(bob);
    if (s.track !== null && s.frameWidth > 320) break;
    if (Date.now() > deadline) throw new Error(`bob never got alice's video above layer 0: ${JSON.stringify(s)}`);
    await sleep(250);
  }
  report.start = s;
  let prev = s;
  for (const cap of CAPS) {
    await bob.evaluate(({ track, cap }) => {
      window.knudepunkt.ws.send(JSON.stringify({ type: "preference", track, max_layer: cap }));
    }, { track: s.track, cap });
    await sleep(STEP_MS);
    const now = await look(bob);
    report.steps.push({ cap, ...now, decoded: now.framesDecoded - prev.framesDecoded });
    prev = now;
  }
  const end = prev;
  const widths = report.steps.map((x) => x.frameWidth);
  const switches = widths.filter((w, i) => i > 0 && w !== widths[i - 1]).length + (widths[0] !== s.frameWidth);
  report.summary = {
    switches,
    layerChanges: end.layerChanges - s.layerChanges,
    dropped: end.framesDropped - s.framesDropped,
    keyframes: end.keyFramesDecoded - s.keyFramesDecoded,
    plis: end.pliCount - s.pliCount,
    leastDecodedPerStep: Math.min(...report.steps.map((x) => x.decoded)),
  };
  const m = report.summary;
  // Several switches: going back up waits for the estimate to climb again (a cap
  // lowers what the node probes for), which a loaded machine can make slow.
  report.passed = m.switches >= 3 && m.layerChanges >= 3
    // Decoding goes on at every step (a loaded CI machine decodes fewer than 30 fps).
    && m.leastDecodedPerStep >= 10
    // A switch may abandon the frame it interrupted; nothing more is dropped ...
    && m.dropped <= CAPS.length
    // ... and each switch costs a keyframe or two of the layer switched to, no more.
    && m.keyframes <= 2 * CAPS.length + 2 && m.plis <= CAPS.length;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
