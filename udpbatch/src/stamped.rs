//! Receiving with the kernel's arrival time of each datagram (`SO_TIMESTAMPNS`), for
//! measuring: a load generator's delay figure is meant to be the node's forwarding
//! delay, so it must not include the time a datagram then waited in the client's
//! socket for the client's own thread to get a core.
//!
//! Like [`RxBatch`](crate::RxBatch) (one `recvmmsg`, GRO buffers split at their
//! stride), through nix's safe wrappers because quinn-udp does not pass timestamps on.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    self as nsock, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};

use crate::{BATCH_SIZE, RX_BUFFER};

/// Ask the kernel to stamp each datagram `socket` receives with its arrival time.
pub fn enable_timestamps(socket: &impl AsFd) -> io::Result<()> {
    nsock::setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Control-message room per datagram: besides the timestamp and GRO's segment size,
/// quinn-udp has the kernel report ECN bits and the destination address (PKTINFO); a
/// buffer too small truncates them all.
const CMSG_ROOM: usize = 256;

#[derive(Clone, Copy)]
struct Meta {
    addr: Option<SocketAddr>,
    len: usize,
    stride: usize,
    at: Instant,
}

/// Receive buffers for one `recvmmsg`, allocated once.
pub struct StampedRx {
    buf: Box<[u8]>,
    meta: [Meta; BATCH_SIZE],
    filled: usize,
}

impl Default for StampedRx {
    fn default() -> Self {
        let now = Instant::now();
        StampedRx {
            buf: vec![0u8; RX_BUFFER * BATCH_SIZE].into_boxed_slice(),
            meta: [Meta {
                addr: None,
                len: 0,
                stride: 0,
                at: now,
            }; BATCH_SIZE],
            filled: 0,
        }
    }
}

impl std::fmt::Debug for StampedRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampedRx")
            .field("filled", &self.filled)
            .finish()
    }
}

impl StampedRx {
    /// One `recvmmsg`: how many buffers it filled. `WouldBlock` when nothing waits.
    /// A datagram without a kernel stamp (timestamps not enabled) gets the time of
    /// this call.
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        self.filled = 0;
        let mut chunks = self.buf.chunks_mut(RX_BUFFER);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH_SIZE] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().expect("BATCH_SIZE chunks"))]);
        // Fresh headers per call: the kernel shrinks each header's control length to
        // what it used, and nix does not restore it, so reused headers would truncate
        // the next call's control messages (and lose the GRO segment size).
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(BATCH_SIZE, Some(vec![0u8; CMSG_ROOM]));
        let results = nsock::recvmmsg(
            socket.as_fd().as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        // Kernel stamps are wall-clock time; the caller's clock is `Instant`. Convert
        // by age, read from both clocks now, so that a wall-clock step between runs
        // cannot skew the figure.
        let (instant_now, wall_now) = (Instant::now(), SystemTime::now());
        for (msg, meta) in results.zip(self.meta.iter_mut()) {
            let mut stride = msg.bytes;
            let mut at = instant_now;
            for c in msg.cmsgs().into_iter().flatten() {
                match c {
                    ControlMessageOwned::ScmTimestampns(ts) => {
                        let stamp = UNIX_EPOCH
                            + Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec() as u32);
                        let age = wall_now.duration_since(stamp).unwrap_or_default();
                        at = instant_now.checked_sub(age).unwrap_or(instant_now);
                    }
                    ControlMessageOwned::UdpGroSegments(size) if size > 0 => {
                        stride = size as usize;
                    }
                    _ => {}
                }
            }
            *meta = Meta {
                addr: msg.address.as_ref().and_then(socket_addr),
                len: msg.bytes.min(RX_BUFFER),
                stride,
                at,
            };
            self.filled += 1;
        }
        Ok(self.filled)
    }

    /// The datagrams of the last `recv` in arrival order, each with the time the
    /// kernel received it.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8], Instant)> {
        self.meta[..self.filled]
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.addr.map(|a| (i, m, a)))
            .flat_map(move |(i, m, addr)| {
                let data = &self.buf[i * RX_BUFFER..i * RX_BUFFER + m.len];
                data.chunks(m.stride.max(1)).map(move |d| (addr, d, m.at))
            })
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchSocket;
    use std::net::UdpSocket;

    /// A non-blocking loopback socket with GRO and arrival stamps on.
    fn stamped_receiver() -> UdpSocket {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let _gro = BatchSocket::new(&rx).unwrap();
        enable_timestamps(&rx).unwrap();
        // The kernel turns its receive stamping on from a work queue: datagrams in
        // the first moments after the first socket asks are stamped when read.
        std::thread::sleep(Duration::from_millis(50));
        rx
    }

    /// Datagrams sent, then read a while later: each carries the time it arrived, not
    /// the time it was read; GRO-coalesced ones are split again.
    #[test]
    fn datagrams_carry_their_arrival_time() {
        let rx = stamped_receiver();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = Instant::now();
        for i in 0..20u8 {
            tx.send_to(&[i; 1000], rx.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut batch = StampedRx::default();
        let mut got = Vec::new();
        while got.len() < 20 {
            batch.recv(&rx).unwrap();
            for (from, d, at) in batch.datagrams() {
                assert_eq!(from, tx.local_addr().unwrap());
                assert_eq!(d.len(), 1000);
                got.push((d[0], at));
            }
        }
        let read = Instant::now();
        for (i, (first, at)) in got.iter().enumerate() {
            assert_eq!(*first as usize, i, "arrival order kept");
            // Stamped when it arrived: well before the read that came 200 ms later.
            assert!(
                *at + Duration::from_millis(100) < read,
                "datagram {i} stamped at read time"
            );
            assert!(
                *at + Duration::from_millis(5) >= sent,
                "datagram {i} stamped before it was sent"
            );
        }
        assert!(matches!(
            batch.recv(&rx),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }

    /// GSO runs arrive as GRO buffers; call after call, each is split again at its
    /// stride (the control messages that carry it must not be truncated on reuse).
    #[test]
    fn gro_buffers_are_split_on_every_call() {
        let rx = stamped_receiver();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx_io = BatchSocket::new(&tx).unwrap();
        let mut queue = crate::TxQueue::with_capacity(16);
        let mut batch = StampedRx::default();
        for round in 0..5u8 {
            for i in 0..10u8 {
                queue.push(rx.local_addr().unwrap(), &[round * 10 + i; 1200]);
            }
            queue.flush(&tx_io, &tx);
            let mut got = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(5);
            while got.len() < 10 && Instant::now() < give_up {
                if batch.recv(&rx).is_ok() {
                    got.extend(batch.datagrams().map(|(_, d, _)| (d.len(), d[0])));
                }
            }
            let want: Vec<_> = (0..10u8).map(|i| (1200, round * 10 + i)).collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
