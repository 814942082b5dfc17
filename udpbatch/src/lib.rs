//! Batched UDP I/O on quinn-udp, for the media node's shards and the load generator's
//! clients (an I/O utility only: the load generator still speaks nothing but public
//! protocols to the node).
//!
//! A syscall costs more than everything else a forwarded packet needs, so datagrams
//! move by the batch:
//! - in: `recvmmsg` fills up to [`BATCH_SIZE`] buffers per call, and with GRO the
//!   kernel hands over up to 64 same-sized datagrams from one source as one buffer;
//! - out: a loop turn queues its datagrams in [`TxQueue`] (copied into one reused
//!   arena), and [`TxQueue::flush`] sends each destination's datagrams in order, runs
//!   of equal size as one GSO message (the packets of one video frame to one
//!   subscriber are nearly always such a run), and the messages of up to 64
//!   destinations in one `sendmmsg` (a turn's audio packets go to many subscribers).
//!
//! Where the kernel lacks GSO or GRO, quinn-udp reports one segment and everything
//! still works a datagram per call; [`Offload`] says which path is in use.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};

pub use quinn_udp::BATCH_SIZE;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod mmsg;
mod stamped;
pub use stamped::{enable_timestamps, StampedRx};

/// Room for one GRO batch: the kernel coalesces at most 64 segments and 64 KiB.
const RX_BUFFER: usize = 64 * 1024;
/// The most bytes one GSO send may carry (the IPv4 datagram limit, less headers).
const GSO_MAX_BYTES: usize = 65_000;

/// Which batching the kernel gave us (1 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    pub gso_segments: usize,
    pub gro_segments: usize,
}

/// A socket with its quinn-udp state.
pub struct BatchSocket {
    state: UdpSocketState,
    /// Set when the kernel refused a GSO send: segments of one from then on.
    gso_off: std::sync::atomic::AtomicBool,
}

impl BatchSocket {
    /// Set up batching on `socket` (turns GRO on where the kernel has it).
    pub fn new(socket: &impl std::os::fd::AsFd) -> io::Result<Self> {
        Ok(BatchSocket {
            state: UdpSocketState::new(UdpSockRef::from(socket))?,
            gso_off: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn offload(&self) -> Offload {
        Offload {
            gso_segments: self.max_gso_segments(),
            gro_segments: self.state.gro_segments(),
        }
    }

    /// Datagrams one send may carry: 1 once the kernel has refused GSO.
    fn max_gso_segments(&self) -> usize {
        if self.gso_off.load(std::sync::atomic::Ordering::Relaxed) {
            1
        } else {
            self.state.max_gso_segments().max(1)
        }
    }
}

/// Receive buffers for one `recvmmsg`, allocated once.
pub struct RxBatch {
    buf: Box<[u8]>,
    meta: [RecvMeta; BATCH_SIZE],
    filled: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            buf: vec![0u8; RX_BUFFER * BATCH_SIZE].into_boxed_slice(),
            meta: [RecvMeta::default(); BATCH_SIZE],
            filled: 0,
        }
    }
}

impl RxBatch {
    /// One `recvmmsg`: how many buffers it filled (each one or more datagrams).
    /// `WouldBlock` when nothing is waiting.
    pub fn recv(&mut self, io: &BatchSocket, socket: &impl std::os::fd::AsFd) -> io::Result<usize> {
        self.filled = 0;
        let mut chunks = self.buf.chunks_mut(RX_BUFFER);
        let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("BATCH_SIZE chunks")));
        let n = io
            .state
            .recv(UdpSockRef::from(socket), &mut slices, &mut self.meta)?;
        self.filled = n;
        Ok(n)
    }

    /// The datagrams of the last `recv`, in arrival order: GRO buffers split at their
    /// stride.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.filled]
            .iter()
            .enumerate()
            .flat_map(move |(i, m)| {
                let data = &self.buf[i * RX_BUFFER..i * RX_BUFFER + m.len.min(RX_BUFFER)];
                data.chunks(m.stride.max(1)).map(move |d| (m.addr, d))
            })
    }
}

#[derive(Clone, Copy)]
struct Queued {
    destination: SocketAddr,
    /// Position in the queue: keeps each destination's datagrams in the order written.
    order: u32,
    start: u32,
    len: u32,
}

/// What one flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub datagrams: u64,
    pub bytes: u64,
    pub calls: u64,
    /// Datagrams the kernel refused (send buffer full, unreachable): UDP drops them.
    pub failed: u64,
    /// The kernel refused a GSO send (EIO): its datagrams went one by one, and the
    /// socket sends without GSO from now on.
    pub gso_refused: bool,
}

/// Datagrams gathered over one loop turn.
#[derive(Default)]
pub struct TxQueue {
    data: Vec<u8>,
    queued: Vec<Queued>,
    /// A run copied together for one quinn-udp send (where `sendmmsg` is missing).
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    batch: Vec<u8>,
}

impl TxQueue {
    pub fn with_capacity(datagrams: usize) -> Self {
        TxQueue {
            data: Vec::with_capacity(datagrams * 1200),
            queued: Vec::with_capacity(datagrams),
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            batch: Vec::with_capacity(GSO_MAX_BYTES),
        }
    }

    pub fn push(&mut self, destination: SocketAddr, contents: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(contents);
        self.queued.push(Queued {
            destination,
            order: self.queued.len() as u32,
            start,
            len: contents.len() as u32,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// The queued datagrams in the order written (for callers that deliver them
    /// some other way, e.g. tests that carry them in memory).
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.queued.iter().map(|q| {
            let bytes = &self.data[q.start as usize..(q.start + q.len) as usize];
            (q.destination, bytes)
        })
    }

    /// Drop everything queued.
    pub fn clear(&mut self) {
        self.queued.clear();
        self.data.clear();
    }

    /// Send everything queued and empty the queue.
    pub fn flush(&mut self, io: &BatchSocket, socket: &impl std::os::fd::AsFd) -> Flushed {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        return self.flush_with(io, socket, mmsg::SENDMMSG);
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        return self.flush_with(io, socket);
    }

    fn flush_with(
        &mut self,
        io: &BatchSocket,
        socket: &impl std::os::fd::AsFd,
        #[cfg(all(target_os = "linux", target_env = "gnu"))] sys: mmsg::SendMmsg,
    ) -> Flushed {
        let mut done = Flushed::default();
        if self.queued.is_empty() {
            return done;
        }
        // Group by destination, keeping each one's order (the key is unique, so the
        // non-allocating unstable sort is enough).
        self.queued
            .sort_unstable_by_key(|q| (q.destination, q.order));
        let max_segments = io.max_gso_segments();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        self.flush_mmsg(socket.as_fd(), max_segments, &mut done, sys);
        if done.gso_refused {
            io.gso_off.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        self.flush_each(io, socket, max_segments, &mut done);
        self.queued.clear();
        self.data.clear();
        done
    }

    /// Without `sendmmsg`: a call per run, through quinn-udp.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn flush_each(
        &mut self,
        io: &BatchSocket,
        socket: &impl std::os::fd::AsFd,
        max_segments: usize,
        done: &mut Flushed,
    ) {
        let mut i = 0;
        while i < self.queued.len() {
            let run = gso_run(&self.queued[i..], max_segments);
            let first = self.queued[i];
            self.batch.clear();
            for q in &self.queued[i..i + run] {
                self.batch
                    .extend_from_slice(&self.data[q.start as usize..(q.start + q.len) as usize]);
            }
            let transmit = quinn_udp::Transmit {
                destination: first.destination,
                ecn: None,
                contents: &self.batch,
                segment_size: (run > 1).then_some(first.len as usize),
                src_ip: None,
            };
            done.calls += 1;
            match io.state.try_send(UdpSockRef::from(socket), &transmit) {
                Ok(()) => {
                    done.datagrams += run as u64;
                    done.bytes += self.batch.len() as u64;
                }
                Err(e) => {
                    done.failed += run as u64;
                    tracing::debug!("send to {}: {e}", first.destination);
                }
            }
            i += run;
        }
    }

    /// The sorted queue as `sendmmsg` calls: each destination's runs one message each,
    /// up to [`mmsg::MESSAGES`] messages per call.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn flush_mmsg(
        &self,
        socket: std::os::fd::BorrowedFd<'_>,
        max_segments: usize,
        done: &mut Flushed,
        sys: mmsg::SendMmsg,
    ) {
        use std::io::IoSlice;
        let mut iov = [IoSlice::new(&[]); mmsg::IOVECS];
        let mut messages = [mmsg::Message::EMPTY; mmsg::MESSAGES];
        let (mut n_iov, mut n_msg) = (0, 0);
        let mut i = 0;
        while i < self.queued.len() {
            let run = gso_run(&self.queued[i..], max_segments);
            if n_msg == mmsg::MESSAGES || n_iov + run > mmsg::IOVECS {
                mmsg::send(socket, &messages[..n_msg], &iov[..n_iov], done, sys);
                (n_iov, n_msg) = (0, 0);
            }
            let start = n_iov;
            let mut bytes = 0;
            for q in &self.queued[i..i + run] {
                iov[n_iov] = IoSlice::new(&self.data[q.start as usize..(q.start + q.len) as usize]);
                n_iov += 1;
                bytes += q.len as usize;
            }
            messages[n_msg] = mmsg::Message {
                destination: self.queued[i].destination,
                start,
                end: n_iov,
                segment: self.queued[i].len as u16,
                bytes,
            };
            n_msg += 1;
            i += run;
        }
        if n_msg > 0 {
            mmsg::send(socket, &messages[..n_msg], &iov[..n_iov], done, sys);
        }
    }
}

/// How many of `queued` (sorted by destination) go out in one GSO send: the same
/// destination, segments of the first one's size, of which only the last may be shorter.
fn gso_run(queued: &[Queued], max_segments: usize) -> usize {
    let first = queued[0];
    let size = first.len;
    let mut bytes = size as usize;
    let mut n = 1;
    for q in &queued[1..] {
        if n == max_segments
            || q.destination != first.destination
            || q.len > size
            || bytes + q.len as usize > GSO_MAX_BYTES
        {
            break;
        }
        n += 1;
        bytes += q.len as usize;
        if q.len < size {
            break; // a shorter segment ends a GSO batch
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(dest: u16, len: u32) -> Queued {
        Queued {
            destination: SocketAddr::from(([127, 0, 0, 1], dest)),
            order: 0,
            start: 0,
            len,
        }
    }

    #[test]
    fn runs_of_equal_size_to_one_destination() {
        let a = [q(1, 1000), q(1, 1000), q(1, 1000), q(2, 1000)];
        assert_eq!(gso_run(&a, 64), 3);
        // A shorter datagram may end a run; a longer one may not join it.
        let b = [q(1, 1000), q(1, 400), q(1, 400)];
        assert_eq!(gso_run(&b, 64), 2);
        let c = [q(1, 400), q(1, 1000)];
        assert_eq!(gso_run(&c, 64), 1);
        // The kernel's segment limit and the datagram size limit.
        let d = [q(1, 100); 10];
        assert_eq!(gso_run(&d, 4), 4);
        assert_eq!(gso_run(&d, 1), 1);
        let e = [q(1, 1200); 64];
        assert_eq!(gso_run(&e, 64), GSO_MAX_BYTES / 1200);
    }

    /// Real sockets on loopback: whatever the kernel offers, every datagram arrives
    /// intact, each destination's in the order queued, in fewer calls than datagrams.
    #[test]
    fn loopback_round_trip_keeps_order_and_contents() {
        let tx_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx_socks: Vec<_> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let tx_io = BatchSocket::new(&tx_sock).unwrap();
        let rx_io: Vec<_> = rx_socks
            .iter()
            .map(|s| BatchSocket::new(s).unwrap())
            .collect();
        let mut queue = TxQueue::with_capacity(64);
        // Interleaved destinations; frames of 4 x 1100 + 1 x 700 bytes, then audio.
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
        for seq in 0..20u8 {
            for (d, sock) in rx_socks.iter().enumerate() {
                let len = match seq % 5 {
                    4 => 700,
                    _ => 1100,
                };
                let payload = vec![seq ^ d as u8; len];
                queue.push(sock.local_addr().unwrap(), &payload);
                expected[d].push(payload);
            }
        }
        for (d, sock) in rx_socks.iter().enumerate() {
            let payload = vec![0xAA; 60 + d];
            queue.push(sock.local_addr().unwrap(), &payload);
            expected[d].push(payload);
        }
        let done = queue.flush(&tx_io, &tx_sock);
        assert_eq!(done.datagrams, 42);
        assert_eq!(done.failed, 0);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(done.calls, 1, "one sendmmsg for both destinations");
        } else if tx_io.offload().gso_segments > 1 {
            assert!(done.calls < 42, "GSO on, yet {} calls", done.calls);
        }
        assert!(queue.is_empty());

        let mut rx = RxBatch::default();
        for (d, sock) in rx_socks.iter().enumerate() {
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while got.len() < expected[d].len() && std::time::Instant::now() < deadline {
                match rx.recv(&rx_io[d], sock) {
                    Ok(_) => got.extend(rx.datagrams().map(|(from, data)| {
                        assert_eq!(from, tx_sock.local_addr().unwrap());
                        data.to_vec()
                    })),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(1))
                    }
                    Err(e) => panic!("recv: {e}"),
                }
            }
            assert_eq!(got, expected[d], "destination {d}");
        }
    }

    /// More destinations than one `sendmmsg` takes, and one the kernel refuses in the
    /// middle (port 0): that one is counted as failed, every other one arrives.
    #[test]
    fn many_destinations_and_a_refused_one() {
        let tx_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx_io = BatchSocket::new(&tx_sock).unwrap();
        // Destinations sort by address: the refused 127.0.0.2 falls between the others.
        let rx_socks: Vec<_> = (0..100)
            .map(|i| {
                std::net::UdpSocket::bind(if i % 2 == 0 {
                    "127.0.0.1:0"
                } else {
                    "127.0.0.3:0"
                })
                .unwrap()
            })
            .collect();
        let mut queue = TxQueue::with_capacity(128);
        for (i, sock) in rx_socks.iter().enumerate() {
            queue.push(sock.local_addr().unwrap(), &[i as u8; 200]);
        }
        queue.push(SocketAddr::from(([127, 0, 0, 2], 0)), &[0xEE; 200]);
        let done = queue.flush(&tx_io, &tx_sock);
        assert_eq!(done.datagrams, 100);
        assert_eq!(done.failed, 1);
        assert_eq!(done.bytes, 100 * 200);
        for (i, sock) in rx_socks.iter().enumerate() {
            sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 300];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(
                (n, buf[0], from),
                (200, i as u8, tx_sock.local_addr().unwrap())
            );
        }
    }
}
