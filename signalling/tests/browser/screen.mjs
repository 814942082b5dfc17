// Alice shares her screen: bob's page plays one more video, alice's screen, in a
// large tile of its own (above and wider than the camera tiles), named as hers; when
// she stops, the tile goes and her camera plays on. Headless Chromium's
// getDisplayMedia gives a synthetic screen (--use-fake-ui-for-media-stream picks it).
// Usage: node screen.mjs URL ROOM. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";
import { check, open as openPage, until as untilAt } from "./states.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const open = (name) => openPage(browser, url, name, `?room=${room}&name=${name}`);

// What a page plays: each remote tile's name, size, class and decoded frames.
function tiles(page) {
  return page.evaluate(() => [...document.querySelectorAll(".tile")].filter((t) => t.dataset.p !== "self").map((t) => {
    const v = t.querySelector("video");
    const r = t.getBoundingClientRect();
    return {
      key: t.dataset.p, name: t.querySelector(".name").textContent, screen: t.classList.contains("screen"),
      width: Math.round(r.width), top: Math.round(r.top),
      frames: v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      size: v ? `${v.videoWidth}x${v.videoHeight}` : null,
    };
  }));
}

const until = (what, cond) => untilAt(deadline, what, cond);

const report = { passed: false, states: {} };
try {
  const alice = await open("alice");
  const bob = await open("bob");
  const a = await until("alice joined", () => alice.evaluate(() => window.knudepunkt.me));
  await until("bob joined", () => bob.evaluate(() => window.knudepunkt.me));
  await until("bob plays alice's camera", async () => (await tiles(bob)).some((t) => t.key === a && t.frames > 0));
  report.before = await tiles(bob);

  await alice.click("#share");
  const shared = await until("bob plays alice's screen", async () => {
    const t = await tiles(bob);
    const s = t.find((x) => x.key === `${a}:screen`);
    return s && s.frames > 0 && t;
  });
  await sleep(2000);
  const later = await tiles(bob);
  report.sharing = later;
  const screen = later.find((x) => x.key === `${a}:screen`);
  const camera = later.find((x) => x.key === a);
  const first = shared.find((x) => x.key === `${a}:screen`);
  if (!camera || camera.frames === 0) throw new Error("alice's camera stopped playing on bob's page");
  if (screen.frames < first.frames + 5) throw new Error("alice's screen stalled on bob's page");
  if (!screen.screen || screen.name !== "alice: screen") throw new Error(`the screen's tile: ${JSON.stringify(screen)}`);
  if (!(screen.width > camera.width && screen.top < camera.top)) throw new Error("the screen is not shown large and first");
  report.alice_button = await alice.evaluate(() => document.getElementById("share").textContent);
  await check(bob, "screen-shared", report.states);
  await check(alice, "screen-sharing", report.states);

  await alice.click("#share");
  await until("the screen's tile gone from bob's page", async () => !(await tiles(bob)).some((x) => x.key === `${a}:screen`));
  const camFrames = (await tiles(bob)).find((x) => x.key === a).frames;
  await sleep(1500);
  const after = await tiles(bob);
  report.after = after;
  if (after.find((x) => x.key === a).frames < camFrames + 10) throw new Error("alice's camera stalled after the share ended");
  // Shared again, then ended by the browser's own "stop sharing" (the track ends):
  // unpublished the same way. (Headless Chromium has no bar to click: the test ends
  // the track as the browser would, with its `ended` event.)
  await sleep(1200);
  await alice.click("#share");
  await until("bob plays alice's screen again", async () => (await tiles(bob)).some((x) => x.key === `${a}:screen` && x.frames > 0));
  await alice.evaluate(() => window.knudepunkt.screen.dispatchEvent(new Event("ended")));
  await until("the screen's tile gone after the browser's stop", async () => !(await tiles(bob)).some((x) => x.key === `${a}:screen`));
  report.after_browser_stop = await alice.evaluate(() => document.getElementById("share").textContent);
  report.passed = report.alice_button === "Stop sharing" && report.after_browser_stop === "Share screen";
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
