//! A client peer's driver: its UDP socket (batched reads with the kernel's arrival
//! stamps, batched sends), and the impairment a run applies to what clients receive.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use udpbatch::{BatchSocket, StampedRx};

use crate::env::Env;
use crate::peer::Peer;
use crate::stats::Measure;

thread_local! {
    /// Receive buffers, one set per worker thread (they are large enough for GRO, and
    /// a client only borrows them between two awaits).
    pub static RX: RefCell<StampedRx> = RefCell::new(StampedRx::default());
}

/// A client socket with room for bursts (a few layers' keyframes at once), whose
/// datagrams the kernel stamps with their arrival time: the delay measured is then the
/// node's, not also the time this client's thread waited for a core to read them.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(1 << 20);
    let _ = s.set_send_buffer_size(1 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    udpbatch::enable_timestamps(&s)?;
    UdpSocket::from_std(s.into())
}

/// A [`Peer`] on its own UDP socket.
pub struct UdpPeer {
    pub peer: Peer,
    pub socket: UdpSocket,
    io: BatchSocket,
    /// Received datagrams held back by the run's impairment, with when they are due.
    delayed: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

impl UdpPeer {
    pub fn new(env: &Env) -> Result<UdpPeer, String> {
        let socket =
            udp_socket(SocketAddr::new(env.bind_ip, 0)).map_err(|e| format!("udp bind: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let io = BatchSocket::new(&socket).map_err(|e| format!("udp: {e}"))?;
        Ok(UdpPeer {
            peer: Peer::new(env, local, Instant::now())?,
            socket,
            io,
            delayed: VecDeque::new(),
        })
    }

    /// The earliest of `t`, the peer's next frame and the next delayed datagram.
    pub fn wake(&self, t: Instant) -> Instant {
        let t = self.peer.wake(t);
        self.delayed.front().map_or(t, |(d, _, _)| t.min(*d))
    }

    /// Everything the socket holds, a batch per call, each datagram through the peer.
    pub fn read_datagrams(&mut self, env: &Env, measure: &mut Measure) -> Result<(), String> {
        RX.with_borrow_mut(|rx| loop {
            match self
                .socket
                .try_io(Interest::READABLE, || rx.recv(&self.socket))
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("udp: {e}")),
            }
            let now = Instant::now();
            for (from, data, arrived) in rx.datagrams() {
                env.counters.packets_in.fetch_add(1, Ordering::Relaxed);
                env.counters
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let media = data.len() > 12
                    && (128..192).contains(&data[0])
                    && !(192..=223).contains(&data[1]);
                if media && data[0] & 0x20 == 0 {
                    env.counters
                        .media_packets_in
                        .fetch_add(1, Ordering::Relaxed);
                }
                if media
                    && env.impair.drop_pct > 0.0
                    && rand::rng().random::<f64>() * 100.0 < env.impair.drop_pct
                {
                    continue;
                }
                if env.impair.delay_ms > 0 {
                    let at = now + Duration::from_millis(env.impair.delay_ms);
                    self.delayed.push_back((at, from, data.to_vec()));
                } else {
                    self.peer
                        .handle_datagram(env, now, arrived, from, data, measure)?;
                }
            }
        })
    }

    /// Delayed datagrams now due, the peer's turn, and what it wrote sent; returns
    /// the peer's next timeout.
    pub fn turn(
        &mut self,
        env: &Env,
        measure: &mut Measure,
        now: Instant,
    ) -> Result<Instant, String> {
        while self.delayed.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, from, d) = self.delayed.pop_front().expect("checked");
            self.peer
                .handle_datagram(env, now, now, from, &d, measure)?;
        }
        let timeout = self.peer.turn(env, measure, now)?;
        let done = self.peer.transmits().flush(&self.io, &self.socket);
        env.counters
            .packets_out
            .fetch_add(done.datagrams, Ordering::Relaxed);
        Ok(timeout)
    }

    /// Media in and out until `until`, for a peer without signalling (WHIP, WHEP).
    pub async fn run_until(
        &mut self,
        env: &Env,
        until: Instant,
        measure: &mut Measure,
    ) -> Result<(), String> {
        let mut timeout = self.peer.poll(env, measure, Instant::now())?;
        while Instant::now() < until {
            let wake = self.wake(timeout.min(until));
            tokio::select! {
                r = self.socket.readable() => {
                    r.map_err(|e| format!("udp: {e}"))?;
                    self.read_datagrams(env, measure)?;
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            timeout = self.turn(env, measure, Instant::now())?;
        }
        Ok(())
    }
}
