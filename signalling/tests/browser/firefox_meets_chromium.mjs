// A Firefox ESR page and a Chromium page join one room through the served client
// page (both publish camera and microphone; Chromium in VP8 simulcast, Firefox as it
// offers) and each must play the other's video: a remote <video> whose frame count
// keeps growing, and inbound video decoded per getStats. Run where Firefox reaches the
// node over a real link (network namespaces: it sends no ICE checks to loopback).
// Prints a JSON report; exits 0 on pass, 1 on fail. Join tokens for a node that is
// not in dev mode: TOKENS="firefox's,chromium's".
// Usage: node firefox_meets_chromium.mjs http://HOST:PORT/ ROOM
import { launch } from "./chromium.mjs";
import { launchFirefox } from "./firefox.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tokens = (process.env.TOKENS || "").split(",");

function look(page) {
  return page.evaluate(async () => {
    const v = [...document.querySelectorAll("video.remote")].find((v) => v.videoWidth > 0);
    const pc = window.knudepunkt && window.knudepunkt.pc;
    let framesDecoded = 0, bytesSent = 0, pair = null;
    if (pc) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded += s.framesDecoded || 0;
        if (s.type === "outbound-rtp") bytesSent += s.bytesSent || 0;
        if (s.type === "candidate-pair" && (s.selected || s.nominated) && s.state === "succeeded") {
          const l = stats.get(s.localCandidateId), r = stats.get(s.remoteCandidateId);
          pair = { local: l && `${l.protocol} ${l.candidateType}`, remote: r && `${r.protocol} ${r.address}:${r.port}` };
        }
      });
    }
    // Firefox counts a MediaStream's frames in mozPaintedFrames (its
    // getVideoPlaybackQuality stays at 0 for a stream); Chromium in the quality API.
    const frames = v ? Math.max(v.getVideoPlaybackQuality().totalVideoFrames, v.mozPaintedFrames || 0) : 0;
    return {
      frames,
      paused: v ? v.paused : null,
      currentTime: v ? v.currentTime : 0,
      videoWidth: v ? v.videoWidth : 0,
      framesDecoded, bytesSent, pair,
      status: document.getElementById("status").textContent,
    };
  });
}

const report = { passed: false };
let chromium, firefox;
try {
  firefox = await launchFirefox();
  chromium = await launch();
  report.firefox = await firefox.version();
  const ffPage = await firefox.newPage();
  ffPage.on("console", (m) => { if (m.type() === "error") console.error(`[firefox] ${m.text()}`); });
  const crPage = await (await chromium.newContext()).newPage();
  crPage.on("console", (m) => { if (m.type() === "error") console.error(`[chromium] ${m.text()}`); });
  const open = (page, name, i) =>
    page.goto(`${url}?room=${room}&name=${name}` + (tokens[i] ? `#token=${tokens[i]}` : ""));
  await open(ffPage, "firefox", 0);
  await open(crPage, "chromium", 1);
  const pages = [ffPage, crPage];
  let first;
  for (;;) {
    first = await Promise.all(pages.map(look));
    if (first.every((s) => s.frames > 0)) break;
    if (Date.now() > deadline) throw new Error(`no remote video: ${JSON.stringify(first)}`);
    await sleep(250);
  }
  // Frames keep coming: 10 more on each page within 10 s.
  const until = Date.now() + 10000;
  let later;
  const playing = (s, i) => s.frames > first[i].frames + 10 && s.framesDecoded > first[i].framesDecoded;
  do {
    await sleep(500);
    later = await Promise.all(pages.map(look));
  } while (!later.every(playing) && Date.now() < until);
  report.first = { firefox: first[0], chromium: first[1] };
  report.later = { firefox: later[0], chromium: later[1] };
  report.passed = later.every(playing);
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await Promise.allSettled([firefox && firefox.close(), chromium && chromium.close()]);
process.exit(report.passed ? 0 : 1);
