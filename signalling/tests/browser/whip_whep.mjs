// A browser as a standard WHIP publisher and a standard WHEP player (RFC 9725 style:
// POST application/sdp with a Bearer token, 201 + Location, DELETE at the end).
// Passes when the player's <video> has videoWidth > 0 and its frame count grows.
// BROWSER=chromium (default) or firefox (Firefox ESR over WebDriver BiDi; it must
// reach the node over a real link, see firefox.mjs). Tokens come from the node's
// dev mode, or TOKENS="whip's,whep's" for a node with a secret.
import { launch } from "./chromium.mjs";
import { launchFirefox } from "./firefox.mjs";

const [url, room = "whip"] = process.argv.slice(2);
const firefox = process.env.BROWSER === "firefox";
const browser = firefox ? await launchFirefox() : await launch();
const newPage = async () => (firefox ? browser.newPage() : (await browser.newContext()).newPage());
const [whipToken, whepToken] = (process.env.TOKENS || "").split(",");

// Runs in the page: WHIP publish or WHEP play; returns the resource URL.
const session = async ({ room, mode, token }) => {
  const tok = token ? { token } : await (await fetch(`/api/dev-token?room=${room}&identity=${mode}`)).json();
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  window.pc = pc;
  if (mode === "whip") {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: "sendonly" });
  } else {
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
    const v = document.createElement("video");
    v.id = "player"; v.autoplay = true; v.muted = true; v.playsInline = true;
    document.body.appendChild(v);
    const ms = new MediaStream();
    pc.ontrack = (e) => { ms.addTrack(e.track); v.srcObject = ms; v.play().catch(() => {}); };
  }
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(`/${mode}/${room}`, {
    method: "POST",
    headers: { "content-type": "application/sdp", authorization: `Bearer ${tok.token}` },
    body: pc.localDescription.sdp,
  });
  if (r.status !== 201) throw new Error(`${mode} POST answered ${r.status}: ${await r.text()}`);
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  return { location: r.headers.get("location"), token: tok.token };
};

const report = { passed: false };
try {
  report.browser = await browser.version();
  const pub = await newPage();
  await pub.goto(url);
  report.whip = await pub.evaluate(session, { room, mode: "whip", token: whipToken });
  const play = await newPage();
  await play.goto(url);
  report.whep = await play.evaluate(session, { room, mode: "whep", token: whepToken });
  const frames = () => play.evaluate(() => {
    const v = document.getElementById("player");
    // Firefox counts a MediaStream's frames in mozPaintedFrames only.
    const frames = Math.max(v.getVideoPlaybackQuality().totalVideoFrames, v.mozPaintedFrames || 0);
    return { w: v.videoWidth, frames, state: window.pc.connectionState };
  });
  const deadline = Date.now() + 30000;
  let first = await frames();
  while (first.w === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    first = await frames();
  }
  // Frames keep coming: 10 more within 10 s (a loaded 2-core machine decodes far
  // fewer than the camera's 30 fps).
  let later;
  const until = Date.now() + 10000;
  do {
    await new Promise((r) => setTimeout(r, 500));
    later = await frames();
  } while (!(later.w > 0 && later.frames > first.frames + 10) && Date.now() < until);
  report.first = first;
  report.later = later;
  // End both sessions the WHIP/WHEP way.
  for (const [page, s] of [[pub, report.whip], [play, report.whep]]) {
    report[`delete_${s.location.split("/")[1]}`] = await page.evaluate(async (s) =>
      (await fetch(s.location, { method: "DELETE", headers: { authorization: `Bearer ${s.token}` } })).status, s);
  }
  report.passed = later.w > 0 && later.frames > first.frames + 10 && report.delete_whip === 200 && report.delete_whep === 200;
} catch (e) {
  report.error = String((e && e.message) || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
