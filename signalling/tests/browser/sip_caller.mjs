// A Chromium page meets a SIP caller: the page joins the room through the served
// client page (VP8 simulcast from the fake camera), the test dials the same room from
// baresip (VP8 from its test pattern) through the gateway. The page must play the
// caller's video (a remote <video> whose decoded frames keep growing) and list the
// caller as a SIP call by its display name. With EXPECT_CODEC (e.g. video/H264, a room
// created with that codec) the page must send and receive it. Prints a JSON report;
// exits 0 on pass.
import { launch } from "./chromium.mjs";

const url = process.argv[2];
const room = process.argv[3] || "sip-page";
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 45000);
if (!url) {
  console.error("usage: node sip_caller.mjs http://127.0.0.1:PORT/ [room]");
  process.exit(2);
}

const browser = await launch();
const report = { passed: false };
try {
  const page = await (await browser.newContext()).newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`[page] ${m.text()}`); });
  await page.goto(`${url}?room=${room}&name=nurse`);
  // Ready for the caller: the test starts baresip once this line is out.
  console.error("page joined");
  const state = () => page.evaluate(async () => {
    const v = [...document.querySelectorAll("video.remote")].find((v) => v.videoWidth > 0);
    const pc = window.knudepunkt && window.knudepunkt.pc;
    let framesDecoded = 0, sent = 0;
    const codecs = { inbound: [], outbound: [] };
    if (pc) {
      const stats = await pc.getStats();
      const mime = (id) => (stats.get(id) || {}).mimeType;
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          framesDecoded += s.framesDecoded || 0;
          if (s.codecId && s.framesDecoded) codecs.inbound.push(mime(s.codecId));
        }
        if (s.type === "outbound-rtp" && s.kind === "video") {
          sent += s.framesEncoded || 0;
          if (s.codecId && s.framesEncoded) codecs.outbound.push(mime(s.codecId));
        }
      });
    }
    return {
      videoWidth: v ? v.videoWidth : 0,
      frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      framesDecoded, sent, codecs,
      names: [...document.querySelectorAll(".tile .name")].map((n) => n.textContent),
    };
  });
  let first;
  for (;;) {
    const s = await state();
    if (s.videoWidth > 0) { first = s; break; }
    if (Date.now() > deadline) { report.page = s; throw new Error("the caller's video never played"); }
    await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 3000));
  const later = await state();
  report.page = { first, later };
  const playing = later.frames > first.frames + 10 && later.framesDecoded > 0;
  const listed = later.names.some((n) => n.includes("SIP caller"));
  const want = process.env.EXPECT_CODEC;
  const codecsRight = !want || (later.codecs.inbound.length > 0 && later.codecs.outbound.length > 0
    && [...later.codecs.inbound, ...later.codecs.outbound].every((c) => c === want));
  report.passed = playing && listed && later.sent > 0 && codecsRight;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
