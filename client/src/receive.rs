//! The streams a peer receives: each SSRC's m-line and kind, learnt from str0m when its
//! first packet comes; audio packets are frames, video packets are judged into frames
//! (`frames`); what completed is counted per stream, for drivers that check which
//! sender and layer reached which m-line.

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::{RedDecoder, RtpPacket, Ssrc};
use str0m::Rtc;

use crate::frames::FrameAssembler;
use crate::media::{opus_probe, Probe, VideoCodec};
use crate::stats::StreamKind;

/// What arrived on one received stream (one SSRC on one m-line).
#[derive(Clone, Debug)]
pub struct Received {
    pub mid: Mid,
    pub kind: StreamKind,
    /// Frames completed (audio: packets).
    pub frames: u64,
    /// The sender and layer of the newest frame (by RTP timestamp: a frame that
    /// completes late, after a retransmission, does not count as the newest).
    pub from: Option<u32>,
    pub last_layer: Option<u8>,
    pub frames_by_layer: [u64; 3],
    /// Video frames that completed without a probe (from senders other than this
    /// crate's clients, e.g. GStreamer over WHIP); not in `frames`.
    pub unprobed: u64,
    /// Audio packets that came in RED (RFC 2198).
    pub red_packets: u64,
    newest_ts: Option<u32>,
}

/// How a stream's packets become frames.
enum Judge {
    /// Opus, or RED around it on this payload type (RFC 2198).
    Audio(Option<Pt>),
    Video(Box<FrameAssembler>),
    /// Not one of the m-lines this peer receives on.
    Other,
}

struct Stream {
    ssrc: Ssrc,
    judge: Judge,
    received: Option<Received>,
}

impl Stream {
    /// A frame completed, with the RTP timestamp of the packet that completed it.
    fn count(&mut self, probe: &Probe, ts: u32) {
        if let Some(r) = self.received.as_mut() {
            r.frames += 1;
            r.frames_by_layer[(probe.layer as usize).min(2)] += 1;
            if r.newest_ts.is_none_or(|t| ts.wrapping_sub(t) as i32 > 0) {
                r.newest_ts = Some(ts);
                r.from = Some(probe.sender);
                r.last_layer = Some(probe.layer);
            }
        }
    }
}

/// The received streams, by SSRC (a handful per peer: a scan beats hashing).
#[derive(Default)]
pub(crate) struct Incoming {
    streams: Vec<Stream>,
}

impl Incoming {
    /// A received packet: `frame` gets the probe of each frame it completes, with
    /// the stream's kind and whether the frame was recovered (by a retransmission,
    /// or from a RED packet's redundancy): the newest first.
    pub(crate) fn on_packet(
        &mut self,
        rtc: &mut Rtc,
        codec: VideoCodec,
        p: &RtpPacket,
        mut frame: impl FnMut(StreamKind, Probe, bool),
    ) -> Option<()> {
        let ssrc = p.header.ssrc;
        let i = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None => {
                let mid = rtc.direct_api().stream_rx(&ssrc).map(|rx| rx.mid())?;
                let media = rtc.media(mid)?;
                let (judge, kind) = match (media.kind(), media.direction()) {
                    (_, Direction::SendOnly | Direction::Inactive) => (Judge::Other, None),
                    (MediaKind::Audio, _) => {
                        let red = rtc
                            .codec_config()
                            .find(|p| p.spec().codec == Codec::Opus)
                            .and_then(|p| p.red());
                        (Judge::Audio(red), Some(StreamKind::Audio))
                    }
                    (MediaKind::Video, _) => (
                        Judge::Video(Box::new(FrameAssembler::new(codec))),
                        Some(StreamKind::Video),
                    ),
                };
                let received = kind.map(|kind| Received {
                    mid,
                    kind,
                    frames: 0,
                    from: None,
                    last_layer: None,
                    frames_by_layer: [0; 3],
                    unprobed: 0,
                    red_packets: 0,
                    newest_ts: None,
                });
                self.streams.push(Stream {
                    ssrc,
                    judge,
                    received,
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[i];
        let (kind, probe, recovered) = match &mut stream.judge {
            // Audio is not retransmitted; RED repeats earlier frames, which come after
            // the newest (duplicates of frames received are not counted twice).
            Judge::Audio(Some(red)) if *red == p.header.payload_type => {
                let blocks = RedDecoder::decode(&p.payload).ok()?;
                let (primary, earlier) = blocks.split_last()?;
                let probe = opus_probe(primary.payload)?;
                stream.count(&probe, p.header.timestamp);
                if let Some(r) = stream.received.as_mut() {
                    r.red_packets += 1;
                }
                frame(StreamKind::Audio, probe, false);
                for b in earlier.iter().rev() {
                    if let Some(probe) = opus_probe(b.payload) {
                        frame(StreamKind::Audio, probe, true);
                    }
                }
                return Some(());
            }
            Judge::Audio(_) => (StreamKind::Audio, opus_probe(&p.payload)?, false),
            Judge::Video(frames) if !p.payload.is_empty() => {
                let completed =
                    frames.push(*p.seq_no, p.header.timestamp, p.header.marker, &p.payload)?;
                let Some(probe) = completed.probe else {
                    if let Some(r) = stream.received.as_mut() {
                        r.unprobed += 1;
                    }
                    return None;
                };
                (StreamKind::Video, probe, completed.recovered)
            }
            _ => return None,
        };
        stream.count(&probe, p.header.timestamp);
        frame(kind, probe, recovered);
        Some(())
    }

    /// What arrived on each stream so far.
    pub(crate) fn received(&self) -> impl Iterator<Item = &Received> {
        self.streams.iter().filter_map(|s| s.received.as_ref())
    }
}
