// A consultation in a room with a waiting room, as a booking system sets it up: the
// room is created with a lobby and a host's and two guests' links are minted (one
// API call each). The patient waits (and sees that they wait) until the clinician
// lets them in; then they see each other. A second guest is turned away. The host
// mutes the patient (the node stops forwarding the patient's audio: the host's page
// receives no more of it) until the patient unmutes, and at last removes them.
// Each state passes axe-core and fits a phone; with SCREENSHOTS=DIR, each is saved
// there at desktop and phone size.
// Usage: node lobby.mjs URL ROOM. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";
import { check as checkState, open as openPage, until as untilAt } from "./states.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(path, body) {
  const r = await fetch(new URL(path, url), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const open = (name, link) => openPage(browser, url, name, link);

const until = (what, cond) => untilAt(deadline, what, cond);

// Each state: axe-core and the phone-size fit, and its screenshots.
const states = {};
const shot = (page, state) => checkState(page, state, states);

const banner = (page) => page.evaluate(() => { const b = document.getElementById("banner"); return b.hidden ? "" : b.textContent; });
const me = (page) => page.evaluate(() => window.knudepunkt.me);
const waiting = (page) => page.evaluate(() => [...document.querySelectorAll("#waiting li span")].map((s) => s.textContent));
const playing = (page, who) => page.evaluate((who) => {
  const v = document.querySelector(`.tile[data-p="${who}"] video`);
  return v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
}, who);
// Audio packets the page received, all remote tracks.
const audioIn = (page) => page.evaluate(async () => {
  let n = 0;
  (await window.knudepunkt.pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") n += s.packetsReceived || 0; });
  return n;
});
async function audioGrowth(page, ms) {
  const a = await audioIn(page);
  await sleep(ms);
  return (await audioIn(page)) - a;
}

const report = { passed: false, states };
try {
  const created = await api("/api/rooms", { name: room, lobby: true });
  if (!created.lobby) throw new Error(`room not created with a lobby: ${JSON.stringify(created)}`);
  const hostLink = await api(`/api/rooms/${room}/links`, { role: "host", name: "Dr Hansen" });
  const annLink = await api(`/api/rooms/${room}/links`, { role: "guest", name: "Patient Ann" });
  const boLink = await api(`/api/rooms/${room}/links`, { role: "guest", name: "Bo" });
  if (!hostLink.url.includes("#token=")) throw new Error(`the link carries its token in the fragment: ${hostLink.url}`);

  const host = await open("host", hostLink.url);
  const h = await until("the host joined", () => me(host));
  if (!(await host.evaluate(() => window.knudepunkt.host))) throw new Error("the host's page does not know it hosts");

  // The patient waits, and sees it; the host sees the patient waiting.
  const ann = await open("ann", annLink.url);
  report.ann_waiting = await until("ann sees she waits", async () => { const b = await banner(ann); return b.includes("Waiting") && b; });
  if (await me(ann)) throw new Error("ann joined without a host's word");
  report.lobby = await until("the host sees ann waiting", async () => { const w = await waiting(host); return w.includes("Patient Ann") && w; });
  await shot(ann, "guest-waiting");
  await shot(host, "host-lobby");

  // Let in: they see each other.
  await host.click('button[aria-label="Let in: Patient Ann"]');
  const a = await until("ann joined", () => me(ann));
  await until("the host plays ann", async () => (await playing(host, a)) > 0);
  await until("ann plays the host", async () => (await playing(ann, h)) > 0);
  if ((await banner(ann)) !== "") throw new Error("ann's page still says she waits");
  if ((await waiting(host)).length) throw new Error("the waiting list was not emptied");
  await shot(host, "host-in-meeting");
  await shot(ann, "guest-in-meeting");

  // Bo is turned away.
  const bo = await open("bo", boLink.url);
  await until("the host sees bo waiting", async () => (await waiting(host)).includes("Bo"));
  await host.click('button[aria-label="Turn away: Bo"]');
  report.bo = await until("bo is told", async () => { const b = await banner(bo); return b.includes("did not let you in") && b; });
  await shot(bo, "guest-turned-away");
  if (await me(bo)) throw new Error("bo joined though turned away");

  // Muted by the host: nothing of ann's audio reaches the host until she unmutes.
  report.audio_before = await audioGrowth(host, 1000);
  await host.click('button[aria-label="Mute Patient Ann"]');
  report.ann_muted = await until("ann is told", async () => { const b = await banner(ann); return b.includes("muted") && b; });
  await sleep(500);
  report.audio_muted = await audioGrowth(host, 1500);
  report.ann_button = await ann.evaluate(() => document.getElementById("mic").textContent);
  await shot(ann, "guest-muted-by-host");
  await ann.click("#mic");
  await sleep(500);
  report.audio_unmuted = await audioGrowth(host, 1000);
  if (!(report.audio_before > 30 && report.audio_muted <= 2 && report.audio_unmuted > 30)) {
    throw new Error(`ann's audio at the host: ${report.audio_before} packets/s, muted ${report.audio_muted} in 1.5 s, unmuted ${report.audio_unmuted}/s`);
  }

  // Muted again, and unmuted by the host this time.
  await host.click('button[aria-label="Mute Patient Ann"]');
  await until("the host's button says Unmute", () => host.$('button[aria-label="Unmute Patient Ann"]'));
  await sleep(500);
  report.audio_muted_again = await audioGrowth(host, 1000);
  await host.click('button[aria-label="Unmute Patient Ann"]');
  await sleep(500);
  report.audio_host_unmuted = await audioGrowth(host, 1000);
  if (!(report.audio_muted_again <= 2 && report.audio_host_unmuted > 30)) {
    throw new Error(`the host's unmute: muted ${report.audio_muted_again}, then ${report.audio_host_unmuted}/s`);
  }

  // The host shows a scan: the patient's page plays the shared screen, large.
  await host.click("#share");
  await until("ann plays the host's screen", () => ann.evaluate((h) => {
    const v = document.querySelector(`.tile.screen[data-p="${h}:screen"] video`);
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 5;
  }, h));
  await shot(ann, "guest-sees-screen");
  await host.click("#share");

  // Removed.
  await host.click('button[aria-label="Remove Patient Ann"]');
  report.ann_removed = await until("ann is told she was removed", async () => { const b = await banner(ann); return b.includes("removed") && b; });
  await until("ann's tile gone from the host's page", async () => !(await host.$(`.tile[data-p="${a}"]`)));
  await sleep(1500);
  if (await ann.evaluate(() => !!window.knudepunkt.ws && window.knudepunkt.ws.readyState === 1)) throw new Error("ann's page rejoined after removal");
  await shot(ann, "guest-removed");

  // The consultation ends: the host ends the meeting for everyone (a relative who was
  // let in meanwhile is told), and neither page rejoins.
  const cyLink = await api(`/api/rooms/${room}/links`, { role: "guest", name: "Cy" });
  // Cy's page speaks Danish: the node's reason is told in Danish too.
  const cy = await open("cy", cyLink.url.replace("?", "?lang=da&"));
  await until("the host sees cy waiting", async () => (await waiting(host)).includes("Cy"));
  await host.click('button[aria-label="Let in: Cy"]');
  await until("cy joined", () => me(cy));
  // (The page asks "End the meeting for everyone?" first: the host says yes.)
  host.once("dialog", (d) => d.accept());
  await host.click("#end");
  report.cy_ended = await until("cy is told (in Danish) the meeting ended", async () => {
    const b = await banner(cy);
    return b.includes("Mødet er slut for dig: værten afsluttede mødet") && b;
  });
  await until("the host's page left too", () => host.evaluate(() => window.knudepunkt.left));
  await sleep(1500);
  if (await me(cy) && await cy.evaluate(() => !!window.knudepunkt.ws && window.knudepunkt.ws.readyState === 1)) throw new Error("cy rejoined after the end");
  report.passed = report.ann_button === "Unmute";
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
