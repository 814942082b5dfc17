#!/usr/bin/python3
"""A WHIP publisher on GStreamer's webrtcbin (a third-party WebRTC stack): VP8 test
video and Opus tone, offer POSTed to a WHIP endpoint, answer applied, media for a
while, then DELETE.

usage: whip_publish.py WHIP_URL TOKEN SECONDS

Stock webrtcbin: its own DTLS certificate (GStreamer 1.22 generates RSA-2048) and its
own SDP, as any user of it would publish.
"""
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])


def log(msg):
    print(f"whip_publish: {msg}", flush=True)


Gst.init(None)
pipe = Gst.parse_launch(
    "webrtcbin name=webrtc bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! webrtc. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc "
    "! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! webrtc."
)
webrtc = pipe.get_by_name("webrtc")
agent = webrtc.get_property("ice-agent")
# libnice skips loopback unless told; keep the reference (dropping it crashes).
agent.emit("add-local-ip-address", "127.0.0.1")
nice = agent.get_property("agent")
nice.set_property("upnp", False)
loop = GLib.MainLoop()
state = {"location": None, "failed": None}


def fail(msg):
    state["failed"] = msg
    loop.quit()


def post_offer(sdp_text):
    req = urllib.request.Request(url, data=sdp_text.encode(), method="POST", headers={
        "Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            loc = r.headers.get("Location")
            return r.status, loc, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None, e.read().decode()


def on_offer_created(promise, _):
    promise.wait()
    reply = promise.get_reply()
    offer = reply.get_value("offer")
    text = offer.sdp.as_text()
    webrtc.emit("set-local-description", offer, None)
    status, loc, body = post_offer(text)
    if status != 201:
        fail(f"WHIP answered {status}: {body}")
        return
    state["location"] = loc
    _, asdp = GstSdp.SDPMessage.new_from_text(body)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, asdp)
    webrtc.emit("set-remote-description", answer, None)
    log(f"published, resource {loc}")


def on_negotiation_needed(element):
    promise = Gst.Promise.new_with_change_func(on_offer_created, None)
    element.emit("create-offer", None, promise)


def on_state(element, _pspec):
    s = element.get_property("connection-state")
    log(f"connection state {s.value_nick}")
    if s == GstWebRTC.WebRTCPeerConnectionState.FAILED:
        fail("connection failed")


def on_message(_bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        fail(f"{err.message} ({dbg})")


def on_element_added(_bin, _sub, element):
    # Say which certificate webrtcbin made (not touched here): its key algorithm.
    factory = element.get_factory()
    if factory and factory.get_name() == "dtlssrtpdec":
        pem = element.get_property("pem")
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem,
                              capture_output=True, text=True).stdout
        algo = next((l.split(":", 1)[1].strip() for l in text.splitlines()
                     if "Public Key Algorithm" in l), "unknown")
        log(f"DTLS certificate key: {algo}")


pipe.connect("deep-element-added", on_element_added)
webrtc.connect("on-negotiation-needed", on_negotiation_needed)
webrtc.connect("notify::connection-state", on_state)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(int(seconds * 1000), loop.quit)
threading.Timer(seconds + 20, lambda: os._exit(3)).start()  # never hang
loop.run()
code = 0
if state["failed"]:
    log(f"error: {state['failed']}")
    code = 1
if state["location"]:
    base = url.split("/whip/")[0]
    req = urllib.request.Request(base + state["location"], method="DELETE",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(req, timeout=5)
        log("deleted")
    except Exception as e:  # noqa: BLE001
        log(f"delete failed: {e}")
pipe.set_state(Gst.State.NULL)
os._exit(code)
