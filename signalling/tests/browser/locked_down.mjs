// Two headless Chromium pages on a locked-down network: each must play the other's
// video, and each page's selected candidate pair must be the way the network leaves
// open. MODE "relay": the pages may only use TURN relay candidates (their
// RTCPeerConnection forced to iceTransportPolicy "relay", as on a network that lets
// nothing but the TURN server through). MODE "tcp": the browser runs where UDP to the
// node is dropped (a network namespace, nftables): the pair must be ICE-TCP.
// Prints a JSON report; exits 0 on pass, 1 on fail. A node that is not in dev mode
// (not on loopback) needs join tokens: TOKENS="alice's,bob's" (put in the fragment).
// Usage: node locked_down.mjs http://HOST:PORT/ ROOM relay|tcp
import { launch } from "./chromium.mjs";

const [url, room, mode] = process.argv.slice(2);
if (mode !== "relay" && mode !== "tcp") throw new Error(`MODE must be relay or tcp, not ${mode}`);
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
      remote: remote && { type: remote.candidateType, protocol: remote.protocol, port: remote.port },
      status: document.getElementById("status").textContent,
    };
  });
}

const report = { passed: false };
try {
  const pages = [];
  const tokens = (process.env.TOKENS || "").split(",");
  for (const [i, name] of ["alice", "bob"].entries()) {
    const ctx = await browser.newContext();
    // Only relay candidates: as if the network blocked everything but the TURN server.
    if (mode === "relay") await ctx.addInitScript(() => {
      const Native = window.RTCPeerConnection;
      window.RTCPeerConnection = function (config) {
        return new Native({ ...(config || {}), iceTransportPolicy: "relay" });
      };
      window.RTCPeerConnection.prototype = Native.prototype;
      Object.setPrototypeOf(window.RTCPeerConnection, Native);
    });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
    await page.goto(`${url}?room=${room}&name=${name}` + (tokens[i] ? `#token=${tokens[i]}` : ""));
    pages.push(page);
  }
  let first;
  for (;;) {
    first = await Promise.all(pages.map(look));
    if (first.every((s) => s.frames > 0 && s.local)) break;
    if (Date.now() > deadline) throw new Error(`no remote video (${mode}): ${JSON.stringify(first)}`);
    await sleep(250);
  }
  // Frames keep coming: 10 more on each page, within 10 s (a loaded 2-core CI
  // machine relaying through coturn decodes far fewer than the camera's 30 fps).
  const way = (s) => mode === "relay"
    ? s.policy === "relay" && s.local && s.local.type === "relay"
    : s.local && s.local.protocol === "tcp" && s.remote && s.remote.protocol === "tcp";
  const playing = (s, i) => way(s) && s.frames > first[i].frames + 10;
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
