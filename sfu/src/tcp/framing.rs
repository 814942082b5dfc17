//! RFC 4571 framing, as ICE-TCP (RFC 6544) carries STUN, DTLS and SRTP on a TCP
//! stream: each packet preceded by its length, 16 bits big-endian. Sans-IO: bytes
//! in, packets out; packets in, bytes out.

use std::net::SocketAddr;
use std::ops::Range;

/// The largest packet a frame can carry.
pub const MAX_PACKET: usize = u16::MAX as usize;

/// The largest packet taken from a client: WebRTC packets fit a datagram (str0m
/// and browsers write about 1,200 bytes at most), so a longer frame is no client's
/// and closes the connection before it can make the node buffer 64 KiB.
pub const MAX_RECEIVED: usize = 8 << 10;

/// What the received bytes hold next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Packet(&'a [u8]),
    /// Not a whole frame yet: read more.
    Incomplete,
    /// A frame longer than [`MAX_RECEIVED`]: not a WebRTC client's.
    TooLong,
}

/// Cuts one connection's received bytes into packets: the bytes read and not yet
/// taken stay in its buffer (the driver reads into a scratch buffer of its own and
/// pushes what it read), which is let go once taken if it grew large: an idle
/// connection holds little.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

/// A buffer larger than this is let go once everything in it was taken.
const KEEP: usize = 4 << 10;

impl Deframer {
    /// Take `data` as read, behind what is held.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next packet, if its frame is whole.
    pub fn next_frame(&mut self) -> Frame<'_> {
        let held = &self.buf[self.start..];
        if held.len() < 2 {
            return Frame::Incomplete;
        }
        let len = u16::from_be_bytes([held[0], held[1]]) as usize;
        if len > MAX_RECEIVED {
            return Frame::TooLong;
        }
        if held.len() < 2 + len {
            return Frame::Incomplete;
        }
        let at = self.start + 2;
        self.start = at + len;
        Frame::Packet(&self.buf[at..at + len])
    }

    /// Bytes held and not yet taken.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// After taking what could be taken: an emptied buffer is reset, and let go
    /// if it grew large.
    pub fn settle(&mut self) {
        if self.pending() == 0 {
            self.start = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP {
                self.buf = Vec::new();
            }
        }
    }
}

/// Whether a packet is a STUN message (RFC 5389: the two top bits zero and the
/// magic cookie): what a client's first packet on a connection must be.
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= 20 && packet[0] & 0xc0 == 0 && packet[4..8] == [0x21, 0x12, 0xa4, 0x42]
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

    fn all(d: &mut Deframer) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while let Frame::Packet(p) = d.next_frame() {
            got.push(p.to_vec());
        }
        got
    }

    #[test]
    fn packets_come_out_whole_however_the_stream_is_cut() {
        let packets: [&[u8]; 4] = [b"stun", b"", &[7u8; 1300], b"dtls!"];
        let stream = framed(&packets);
        // Every way of cutting the stream in two, and byte by byte.
        for cut in 0..=stream.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                got.extend(all(&mut d));
            }
            assert_eq!(got, packets.map(|p| p.to_vec()), "cut at {cut}");
            assert_eq!(d.pending(), 0);
        }
        let mut d = Deframer::default();
        let mut got = 0;
        for b in &stream {
            d.push(std::slice::from_ref(b));
            got += all(&mut d).len();
        }
        assert_eq!(got, packets.len());
    }

    #[test]
    fn an_emptied_buffer_is_let_go_when_large() {
        let mut d = Deframer::default();
        d.push(&framed(&[&[5u8; 6000]])[..100]);
        d.settle();
        assert_eq!(d.pending(), 100, "a partial frame is kept");
        d.push(&framed(&[&[5u8; 6000]])[100..]);
        assert_eq!(all(&mut d).len(), 1);
        d.settle();
        assert_eq!((d.pending(), d.buf.capacity()), (0, 0));
    }

    #[test]
    fn a_frame_longer_than_a_client_sends_is_refused_before_it_is_buffered() {
        let mut d = Deframer::default();
        d.push(&header(MAX_RECEIVED + 1));
        assert_eq!(d.next_frame(), Frame::TooLong);
        let mut d = Deframer::default();
        d.push(&framed(&[&vec![1u8; MAX_RECEIVED]]));
        assert!(matches!(d.next_frame(), Frame::Packet(p) if p.len() == MAX_RECEIVED));
    }

    #[test]
    fn stun_is_told_from_media() {
        let mut stun = vec![0u8; 20];
        stun[..2].copy_from_slice(&[0x00, 0x01]);
        stun[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        assert!(is_stun(&stun));
        assert!(!is_stun(&stun[..19]));
        stun[0] = 0x80;
        assert!(!is_stun(&stun));
    }

    #[test]
    fn larger_packets_than_a_frame_are_not_queued() {
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
