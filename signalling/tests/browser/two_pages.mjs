// Two headless Chromium pages join one room through the served client page and each
// must show the other's video playing: a remote <video> with videoWidth > 0 whose
// decoded frame count keeps growing, and getStats reporting framesDecoded and a frame
// width for inbound video. Then the room is closed: both pages must say the meeting
// is over and not rejoin. Prints a JSON report; exits 0 on pass, 1 on fail.
import { launch } from "./chromium.mjs";

const url = process.argv[2];
const room = process.argv[3] || "browser-test";
const deadline = Date.now() + Number(process.env.BROWSER_TEST_TIMEOUT_MS || 45000);
if (!url) {
  console.error("usage: node two_pages.mjs http://127.0.0.1:PORT/ [room]");
  process.exit(2);
}

const browser = await launch();

async function remoteVideo(page) {
  return page.evaluate(async () => {
    const v = [...document.querySelectorAll("video.remote")].find((v) => v.videoWidth > 0);
    const pc = window.knudepunkt && window.knudepunkt.pc;
    let framesDecoded = 0, frameWidth = 0;
    if (pc) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          framesDecoded += s.framesDecoded || 0;
          frameWidth = Math.max(frameWidth, s.frameWidth || 0);
        }
      });
    }
    return {
      videoWidth: v ? v.videoWidth : 0,
      frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
      framesDecoded, frameWidth,
      status: document.getElementById("status").textContent,
    };
  });
}

const report = { passed: false, pages: [] };
try {
  const pages = [];
  for (const name of ["alice", "bob"]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") console.error(`[${name}] ${m.text()}`); });
    if (name === "bob") {
      // Bob's token comes in the URL's fragment, as a booking system would hand it
      // out: the page must read it there (it never reaches the server's logs).
      const q = new URLSearchParams({ room, identity: name });
      const { token } = await (await fetch(`${url}api/dev-token?${q}`)).json();
      await page.goto(`${url}?room=${room}#token=${token}`);
    } else {
      await page.goto(`${url}?room=${room}&name=${name}`);
    }
    pages.push({ name, page });
  }
  // Wait for each page to show the other's video, then check frames keep coming.
  const first = {};
  for (;;) {
    const states = await Promise.all(pages.map((p) => remoteVideo(p.page)));
    states.forEach((s, i) => { if (s.videoWidth > 0 && first[i] === undefined) first[i] = s; });
    if (Object.keys(first).length === pages.length) break;
    if (Date.now() > deadline) {
      report.pages = states;
      throw new Error(`no remote video on every page: ${JSON.stringify(states)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 3000));
  const later = await Promise.all(pages.map((p) => remoteVideo(p.page)));
  report.pages = pages.map((p, i) => ({ name: p.name, first: first[i], later: later[i] }));
  const playing = later.every((s, i) => s.videoWidth > 0 && s.frames > first[i].frames + 10 && s.framesDecoded > 0 && s.frameWidth > 0);
  // Alice sees bob under the identity of the token from his fragment.
  const names = await pages[0].page.evaluate(() => [...document.querySelectorAll(".tile .name")].map((n) => n.textContent));
  report.alice_sees = names;
  const fragmentUsed = names.includes("bob");
  // An admin closes the room (dev mode: a local caller needs no token): each page
  // says the meeting is over and stays out, instead of rejoining.
  const closed = await fetch(`${url}api/rooms/${room}`, { method: "DELETE" });
  await new Promise((r) => setTimeout(r, 3000));
  const after = await Promise.all(pages.map((p) => p.page.evaluate(() => document.getElementById("status").textContent)));
  const roomsLeft = await (await fetch(`${url}api/rooms`)).json();
  report.closed = { status: closed.status, pages: after, rooms: roomsLeft.rooms };
  const stayedOut = closed.status === 204 && after.every((t) => t.startsWith("The meeting is over")) && !roomsLeft.rooms.includes(room);
  report.passed = playing && fragmentUsed && stayedOut;
} catch (e) {
  report.error = String(e && e.message || e);
}
console.log(JSON.stringify(report, null, 1));
await browser.close();
process.exit(report.passed ? 0 : 1);
