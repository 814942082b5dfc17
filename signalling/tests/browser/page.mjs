// The page a person uses. Bea opens the room's address with no name: she gets the
// form (her name, camera and microphone to choose, a preview playing) and joins with
// her microphone off; the form goes, and alice (who joined by a link with a name, at
// once) sees her as muted. Every state passes axe-core with no serious or critical
// violation, at desktop and at phone size (390x844, where nothing scrolls sideways
// and every control is on screen). The signalling connection lost, a banner says so
// until the page is back. ?lang=da speaks Danish.
// With SCREENSHOTS=DIR, each state is saved there at desktop and phone size.
// Usage: node page.mjs URL ROOM. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";
import { check as checkState, open as openPage, until as untilAt } from "./states.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();

const open = (name, path) => openPage(browser, url, name, path);

const until = (what, cond) => untilAt(deadline, what, cond);

const states = {};
const check = (page, state) => checkState(page, state, states);

const report = { passed: false, states };
try {
  const alice = await open("alice", `?room=${room}&name=alice`);
  await until("alice joined", () => alice.evaluate(() => window.knudepunkt.me));
  if (await alice.evaluate(() => !document.getElementById("pick").hidden)) throw new Error("a link with a name shows the form");

  const bea = await open("bea", `?room=${room}`);
  await until("bea's preview plays", () => bea.evaluate(() => {
    const v = document.getElementById("preview");
    return !document.getElementById("pick").hidden && v.videoWidth > 0;
  }));
  report.devices = await bea.evaluate(() => ({
    cameras: [...document.querySelectorAll("#pick-cam option")].map((o) => o.textContent),
    microphones: [...document.querySelectorAll("#pick-mic option")].map((o) => o.textContent),
  }));
  if (!report.devices.cameras.length || !report.devices.microphones.length) throw new Error("no devices to choose from");
  if (await bea.evaluate(() => !!window.knudepunkt.me)) throw new Error("bea joined before choosing");
  await check(bea, "prejoin");
  await bea.fill("#pick-name", "bea");
  await bea.check("#pick-muted");
  await bea.click("#pick-join");
  const b = await until("bea joined", () => bea.evaluate(() => window.knudepunkt.me));
  report.bea = await bea.evaluate(() => ({
    formHidden: document.getElementById("pick").hidden, mic: document.getElementById("mic").textContent,
    url: location.search,
  }));
  if (!report.bea.formHidden || report.bea.mic !== "Unmute") throw new Error(`bea in the meeting: ${JSON.stringify(report.bea)}`);
  await until("alice sees bea muted", () => alice.evaluate((b) => {
    const t = document.querySelector(`.tile[data-p="${b}"]`);
    return t && t.querySelector(".name").textContent === "bea" && t.querySelector(".note").textContent === "muted";
  }, b));
  await until("bea plays alice", () => bea.evaluate(() => [...document.querySelectorAll("video.remote")].some((v) => v.videoWidth > 0)));
  await check(bea, "meeting");

  // The signalling connection lost: a banner says so until the page is back.
  await bea.evaluate(() => window.knudepunkt.ws.close());
  report.lost = await until("the banner says the connection was lost", () => bea.evaluate(() => {
    const b = document.getElementById("banner");
    return !b.hidden && b.textContent;
  }));
  await check(bea, "reconnecting");
  await until("back in the meeting, the banner gone", () => bea.evaluate(() =>
    document.getElementById("banner").hidden && window.knudepunkt.pc.connectionState === "connected"
    && [...document.querySelectorAll("video.remote")].some((v) => v.videoWidth > 0)));

  // Danish.
  const da = await open("da", `?room=${room}&lang=da`);
  report.danish = await until("the Danish form", () => da.evaluate(() => !document.getElementById("pick").hidden && {
    lang: document.documentElement.lang, join: document.getElementById("pick-join").textContent,
    title: document.getElementById("pick-title").textContent,
  }));
  if (report.danish.lang !== "da" || report.danish.join !== "Deltag") throw new Error(`not Danish: ${JSON.stringify(report.danish)}`);
  await check(da, "prejoin-da");
  report.passed = true;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
