// Two headless Chromium pages in one room, their signalling node about to be killed
// and restarted by the test: once both play each other's video the script prints
// READY; then each page must resume its session over a new WebSocket (state.resumes)
// with the same peer connection, and the remote video must keep playing throughout.
// Usage: node resume.mjs URL ROOM TOKEN_A TOKEN_B. Prints a JSON report; exits 0 on
// pass, 1 on fail.
import { launch } from "./chromium.mjs";

const [url, room, ...tokens] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
if (!url || tokens.length !== 2) {
  console.error("usage: node resume.mjs http://HOST:PORT/ ROOM TOKEN_A TOKEN_B");
  process.exit(2);
}

const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function look(page) {
  return page.evaluate(async () => {
    const v = [...document.querySelectorAll("video.remote")].find((v) => v.videoWidth > 0);
    const k = window.knudepunkt;
    const inbound = {}, outbound = [];
    if (k.pc) {
      (await k.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.framesReceived) {
          for (const f of ["framesReceived", "framesDecoded", "framesDropped", "frameWidth", "keyFramesDecoded", "freezeCount", "pliCount", "nackCount", "packetsLost"]) {
            inbound[f] = s[f];
          }
        }
        if (s.type === "outbound-rtp" && s.kind === "video") {
          outbound.push([s.rid, s.framesSent, s.frameWidth, s.qualityLimitationReason]);
        }
      });
    }
    return {
      inbound, outbound,
      frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      resumes: k.resumes,
      samePc: !!(k.pc && k.pc.tag === "first"),
      me: k.me,
      status: document.getElementById("status").textContent,
    };
  });
}

const report = { passed: false };
try {
  const pages = [];
  for (const token of tokens) {
    const page = await (await browser.newContext()).newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[page] ${m.text()}`); });
    await page.goto(`${url}?room=${room}#token=${token}`);
    pages.push(page);
  }
  for (;;) {
    const s = await Promise.all(pages.map(look));
    if (s.every((x) => x.frames > 0)) break;
    if (Date.now() > deadline) throw new Error(`no remote video: ${JSON.stringify(s)}`);
    await sleep(250);
  }
  await Promise.all(pages.map((p) => p.evaluate(() => { window.knudepunkt.pc.tag = "first"; })));
  report.before = await Promise.all(pages.map(look));
  console.log("READY");
  // The test kills the signalling node now, and starts it again.
  let during = null;
  for (;;) {
    const s = await Promise.all(pages.map(look));
    if (!during && s.some((x) => x.status.startsWith("Connection to the server lost"))) during = s;
    if (s.every((x) => x.resumes >= 1)) break;
    if (Date.now() > deadline) throw new Error(`not resumed: ${JSON.stringify(s)}`);
    await sleep(200);
  }
  report.during = during;
  report.resumed = await Promise.all(pages.map(look));
  // Playing on: frames keep coming after the resume, 10 more on each page within
  // 8 s (a loaded CI machine decodes far fewer than the camera's 30 fps).
  const playing = (a, i) => a.samePc && a.resumes === 1 && a.me === report.before[i].me
    && a.frames > report.resumed[i].frames + 10 && report.resumed[i].frames > report.before[i].frames;
  const until = Date.now() + 8000;
  do {
    await sleep(500);
    report.after = await Promise.all(pages.map(look));
  } while (!report.after.every(playing) && Date.now() < until);
  const ok = report.after.every(playing);
  report.passed = ok && during !== null;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
