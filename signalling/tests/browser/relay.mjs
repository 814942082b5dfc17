// Two headless Chromium pages that may only use TURN relay candidates (their
// RTCPeerConnection forced to iceTransportPolicy "relay", as on a network that lets
// nothing but the TURN server through): each must play the other's video, and each
// page's selected candidate pair must be a relay one. Prints a JSON report; exits 0
// on pass, 1 on fail. Usage: node relay.mjs http://HOST:PORT/ ROOM
import { launch } from "./chromium.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 45000);
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function look(page) {
  return page.evaluate(async () => {
    const v = [...document.querySelectorAll("video.remote")].find((v) => v.videoWidth > 0);
    const pc = window.knudepunkt && window.knudepunkt.pc;
    let local = null, remote = null, policy = null;
    if (pc) {
      policy = pc.getConfiguration().iceTransportPolicy;
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
          local = stats.get(s.localCandidateId);
          remote = stats.get(s.remoteCandidateId);
        }
      });
    }
    return {
      frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      policy,
      local: local && { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol },
      remote: remote && { type: remote.candidateType, port: remote.port },
      status: document.getElementById("status").textContent,
    };
  });
}

const report = { passed: false };
try {
  const pages = [];
  for (const name of ["alice", "bob"]) {
    const ctx = await browser.newContext();
    // Only relay candidates: as if the network blocked everything but the TURN server.
    await ctx.addInitScript(() => {
      const Native = window.RTCPeerConnection;
      window.RTCPeerConnection = function (config) {
        return new Native({ ...(config || {}), iceTransportPolicy: "relay" });
      };
      window.RTCPeerConnection.prototype = Native.prototype;
      Object.setPrototypeOf(window.RTCPeerConnection, Native);
    });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
    await page.goto(`${url}?room=${room}&name=${name}`);
    pages.push(page);
  }
  let first;
  for (;;) {
    first = await Promise.all(pages.map(look));
    if (first.every((s) => s.frames > 0 && s.local)) break;
    if (Date.now() > deadline) throw new Error(`no remote video over TURN: ${JSON.stringify(first)}`);
    await sleep(250);
  }
  // Frames keep coming: 10 more on each page, within 10 s (a loaded 2-core CI
  // machine relaying through coturn decodes far fewer than the camera's 30 fps).
  const playing = (s, i) => s.policy === "relay" && s.local && s.local.type === "relay" && s.frames > first[i].frames + 10;
  const until = Date.now() + 10000;
  let later;
  do {
    await sleep(500);
    later = await Promise.all(pages.map(look));
  } while (!later.every(playing) && Date.now() < until);
  report.first = first;
  report.pages = later;
  report.passed = later.every(playing);
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
