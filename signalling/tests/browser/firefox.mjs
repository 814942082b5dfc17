// Launch Debian's Firefox ESR headless through puppeteer-core over WebDriver BiDi (no
// browser download): fake camera and microphone without a prompt, autoplay allowed.
// Firefox sends no ICE checks to a loopback candidate, so its tests run the node
// and the browsers on test hosts in network namespaces; a page served from such a
// host is no secure context: name its origin's host in ORIGIN to have the camera.
import puppeteer from "puppeteer-core";

export function launchFirefox() {
  const host = process.env.ORIGIN ? new URL(process.env.ORIGIN).hostname : "";
  return puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
    headless: true,
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true,
      "media.navigator.permission.disabled": true,
      "media.autoplay.default": 0,
      "media.autoplay.blocking_policy": 0,
      ...(host ? { "dom.securecontext.allowlist": host } : {}),
      "network.captive-portal-service.enabled": false,
      "app.update.enabled": false,
      "browser.shell.checkDefaultBrowser": false,
    },
  });
}
