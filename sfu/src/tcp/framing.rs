//! RFC 4571 framing, as ICE-TCP (RFC 6544) carries STUN, DTLS and SRTP on a TCP
//! stream: each packet preceded by its length, 16 bits big-endian. Sans-IO: bytes in,
//! packets out; packets in, bytes out.

use std::net::SocketAddr;
use std::ops::Range;

/// The largest packet a frame can carry.
pub const MAX_PACKET: usize = u16::MAX as usize;

/// Cuts one connection's received bytes into packets. Whole frames are handed on
/// from the bytes as read; only a frame split across reads is copied (and kept).
#[derive(Debug, Default)]
pub struct Deframer {
    partial: Vec<u8>,
}

impl Deframer {
    /// Hand each complete packet in `data` (after what earlier reads left) to
    /// `packet`, which says whether to go on; keep an incomplete one for the next
    /// read. False when `packet` stopped it (the rest is discarded).
    pub fn push(&mut self, mut data: &[u8], mut packet: impl FnMut(&[u8]) -> bool) -> bool {
        if !self.partial.is_empty() {
            if self.partial.len() < 2 {
                let take = (2 - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() < 2 {
                    return true;
                }
            }
            let want = 2 + frame_len(&self.partial);
            let take = (want - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < want {
                return true;
            }
            let go_on = packet(&self.partial[2..]);
            self.partial.clear();
            if !go_on {
                return false;
            }
        }
        while data.len() >= 2 {
            let end = 2 + frame_len(data);
            if data.len() < end {
                break;
            }
            if !packet(&data[2..end]) {
                return false;
            }
            data = &data[end..];
        }
        self.partial.extend_from_slice(data);
        true
    }

    /// Bytes held of a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

fn frame_len(header: &[u8]) -> usize {
    u16::from_be_bytes([header[0], header[1]]) as usize
}

/// The frame header of a packet of `len` bytes (at most [`MAX_PACKET`]).
pub fn header(len: usize) -> [u8; 2] {
    debug_assert!(len <= MAX_PACKET);
    (len as u16).to_be_bytes()
}

/// Packets a shard's turn wrote to ICE-TCP connections, by remote address, in
/// order; the driver frames each onto its connection. Reused turn after turn: once
/// warm, writing allocates nothing.
#[derive(Debug, Default)]
pub struct TcpOut {
    bytes: Vec<u8>,
    packets: Vec<(SocketAddr, Range<usize>)>,
}

impl TcpOut {
    /// Queue `data` for the connection from `remote`. A packet too large for a
    /// frame cannot be sent: dropped (str0m writes datagrams of MTU size).
    pub fn push(&mut self, remote: SocketAddr, data: &[u8]) {
        if data.len() > MAX_PACKET {
            return;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.packets.push((remote, start..self.bytes.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The queued packets, in order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.packets
            .iter()
            .map(|(to, r)| (*to, &self.bytes[r.clone()]))
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.packets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            out.extend_from_slice(&header(p.len()));
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn packets_come_out_whole_however_the_stream_is_cut() {
        let packets: [&[u8]; 4] = [b"stun", b"", &[7u8; 1300], b"dtls!"];
        let stream = framed(&packets);
        // Every way of cutting the stream in two, and byte by byte.
        for cut in 0..=stream.len() {
            let mut d = Deframer::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                assert!(d.push(part, |p| {
                    got.push(p.to_vec());
                    true
                }));
            }
            assert_eq!(got, packets.map(|p| p.to_vec()), "cut at {cut}");
            assert_eq!(d.pending(), 0);
        }
        let mut d = Deframer::default();
        let mut got = 0;
        for b in &stream {
            d.push(std::slice::from_ref(b), |_| {
                got += 1;
                true
            });
        }
        assert_eq!(got, packets.len());
    }

    #[test]
    fn a_refused_packet_stops_the_stream() {
        let stream = framed(&[b"one", b"two", b"three"]);
        let mut d = Deframer::default();
        let mut seen = 0;
        let went_on = d.push(&stream, |p| {
            seen += 1;
            p != b"two"
        });
        assert!(!went_on);
        assert_eq!(seen, 2);
    }

    #[test]
    fn the_largest_frame_fits_and_larger_packets_are_not_queued() {
        let big = vec![1u8; MAX_PACKET];
        let mut d = Deframer::default();
        let mut got = 0;
        d.push(&framed(&[&big]), |p| {
            got = p.len();
            true
        });
        assert_eq!(got, MAX_PACKET);

        let to: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut out = TcpOut::default();
        out.push(to, &vec![0; MAX_PACKET + 1]);
        assert!(out.is_empty());
        out.push(to, b"a");
        out.push(to, b"bc");
        let got: Vec<_> = out.iter().map(|(a, p)| (a, p.to_vec())).collect();
        assert_eq!(got, vec![(to, b"a".to_vec()), (to, b"bc".to_vec())]);
        out.clear();
        assert!(out.is_empty());
    }
}
