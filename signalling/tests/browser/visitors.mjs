// Alice's page stays in a room while bob, carol and dave visit one after another
// (each joins, is seen, clicks Leave). The node reuses the m-lines of a visitor's
// tracks for the next visitor's (their msid still names the first visitor): alice's
// page must show each visitor's video in that visitor's own tile, named right, and
// the reuse must really happen (a later visitor's tracks on an earlier one's mids).
// Usage: node visitors.mjs URL ROOM. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";

const [url, room] = process.argv.slice(2);
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const browser = await launch();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function open(name) {
  const page = await (await browser.newContext()).newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
  await page.goto(`${url}?room=${room}&name=${name}`);
  return page;
}

// Alice's view of participant `who`: its tile's name and video frames, and the mids
// carrying its tracks.
function view(page, who) {
  return page.evaluate((who) => {
    const t = document.querySelector(`.tile[data-p="${who}"]`);
    const v = t && t.querySelector("video");
    const k = window.knudepunkt;
    return {
      name: t ? t.querySelector(".name").textContent : null,
      frames: v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      mids: Object.values(k.mids).filter((m) => m.participant === who).map((m) => m.mid).sort(),
      tiles: [...document.querySelectorAll(".tile")].map((t) => t.dataset.p).filter((p) => p !== "self"),
    };
  }, who);
}

async function until(what, cond) {
  for (;;) {
    const r = await cond();
    if (r) return r;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(250);
  }
}

const report = { passed: false, visits: [] };
try {
  const alice = await open("alice");
  await until("alice joined", () => alice.evaluate(() => window.knudepunkt.me));
  for (const name of ["bob", "carol", "dave"]) {
    const page = await open(name);
    const who = await until(`${name} joined`, () => page.evaluate(() => window.knudepunkt.me));
    // Alice plays the visitor's video in its own tile, under its name, frames growing.
    const seen = await until(`alice sees ${name}`, async () => {
      const v = await view(alice, who);
      return v.frames > 0 && v.mids.length === 2 && v.name === name && v;
    });
    await sleep(2000);
    const later = await view(alice, who);
    report.visits.push({ name, mids: seen.mids, frames: [seen.frames, later.frames], tiles: later.tiles });
    if (later.frames < seen.frames + 10) throw new Error(`${name}'s video stalled on alice's page: ${JSON.stringify(later)}`);
    if (later.tiles.length !== 1) throw new Error(`alice shows other tiles than ${name}'s: ${later.tiles}`);
    await page.click("#leave");
    await page.close();
    // Its m-lines inactive on alice's side (the node's offer answered), and its tile gone.
    await until(`${name} gone from alice's page`, async () => {
      const v = await view(alice, who);
      return v.mids.length === 0 && v.tiles.length === 0;
    });
  }
  const [bob, carol, dave] = report.visits.map((v) => v.mids.join(","));
  report.reused = carol === bob && dave === bob;
  report.passed = report.reused;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
