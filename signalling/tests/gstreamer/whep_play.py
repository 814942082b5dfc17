#!/usr/bin/python3
"""A WHEP player on GStreamer's webrtcbin: a receive-only offer (VP8 video, Opus
audio) POSTed to a WHEP endpoint, the answer applied, the video depayloaded and
decoded by vp8dec; prints how many frames were decoded, then DELETEs its session.

usage: whep_play.py WHEP_URL TOKEN SECONDS

Exits 0 after SECONDS with "decoded N frames" on stdout, 1 on an error.
"""
import os
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
    print(f"whep_play: {msg}", flush=True)


Gst.init(None)
pipe = Gst.Pipeline.new("player")
webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
webrtc.set_property("bundle-policy", "max-bundle")
pipe.add(webrtc)
agent = webrtc.get_property("ice-agent")
# libnice skips loopback unless told; keep the reference (dropping it crashes).
agent.emit("add-local-ip-address", "127.0.0.1")
agent.get_property("agent").set_property("upnp", False)
loop = GLib.MainLoop()
state = {"location": None, "failed": None, "decoded": 0}
RECVONLY = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
webrtc.emit("add-transceiver", RECVONLY, Gst.Caps.from_string(
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"))
webrtc.emit("add-transceiver", RECVONLY, Gst.Caps.from_string(
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"))


def fail(msg):
    state["failed"] = msg
    loop.quit()


def post_offer(sdp_text):
    req = urllib.request.Request(url, data=sdp_text.encode(), method="POST", headers={
        "Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Location"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, None, f"no answer: {e}"


def on_offer_created(promise, _):
    promise.wait()
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply and reply.has_field("offer") else None
    if offer is None:
        fail(f"webrtcbin made no offer: {reply.to_string() if reply else 'no reply'}")
        return
    webrtc.emit("set-local-description", offer, None)
    status, loc, body = post_offer(offer.sdp.as_text())
    if status != 201:
        fail(f"WHEP answered {status}: {body}")
        return
    state["location"] = loc
    _, asdp = GstSdp.SDPMessage.new_from_text(body)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, asdp)
    webrtc.emit("set-remote-description", answer, None)
    log(f"playing, resource {loc}")


def on_negotiation_needed(element):
    # One offer: WHEP has no renegotiation (webrtcbin asks again once answered).
    if state.get("offered"):
        return
    state["offered"] = True
    element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer_created, None))


def on_frame(_sink, _buffer, _pad):
    state["decoded"] += 1


def on_pad_added(_element, pad):
    if pad.direction != Gst.PadDirection.SRC:
        return
    caps = pad.get_current_caps() or pad.query_caps(None)
    media = caps.get_structure(0).get_string("media")
    if media == "video":
        chain = "rtpvp8depay ! vp8dec ! fakesink name=frames signal-handoffs=true sync=false"
    else:
        chain = "fakesink sync=false"
    sink_bin = Gst.parse_bin_from_description(chain, True)
    pipe.add(sink_bin)
    if media == "video":
        sink_bin.get_by_name("frames").connect("handoff", on_frame)
    sink_bin.sync_state_with_parent()
    pad.link(sink_bin.get_static_pad("sink"))
    log(f"receiving {media}")


def on_state(element, _pspec):
    s = element.get_property("connection-state")
    log(f"connection state {s.value_nick}")
    if s == GstWebRTC.WebRTCPeerConnectionState.FAILED:
        fail("connection failed")


def on_message(_bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        fail(f"{err.message} ({dbg})")


webrtc.connect("on-negotiation-needed", on_negotiation_needed)
webrtc.connect("pad-added", on_pad_added)
webrtc.connect("notify::connection-state", on_state)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(int(seconds * 1000), loop.quit)
threading.Timer(seconds + 20, lambda: os._exit(3)).start()  # never hang
loop.run()
log(f"decoded {state['decoded']} frames")
code = 0
if state["failed"]:
    log(f"error: {state['failed']}")
    code = 1
if state["location"]:
    base = url.split("/whep/")[0]
    req = urllib.request.Request(base + state["location"], method="DELETE",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(req, timeout=5)
    except Exception as e:  # noqa: BLE001
        log(f"delete failed: {e}")
pipe.set_state(Gst.State.NULL)
os._exit(code)
