// Launch Debian's headless Chromium for the media tests: fake camera and microphone,
// media from 127.0.0.1 allowed, no background network (see shared/REAL-CLIENTS.md).
// A page served from another address than loopback (a test host in a network
// namespace) is no secure context: name its origin in ORIGIN to have the camera.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
      ...(process.env.ORIGIN ? [`--unsafely-treat-insecure-origin-as-secure=${process.env.ORIGIN}`] : []),
    ],
  });
}
