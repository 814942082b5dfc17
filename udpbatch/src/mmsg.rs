//! `sendmmsg`: one system call carries a turn's messages to many destinations, each
//! message one destination's run of datagrams (a GSO send when the run has more than
//! one).
//!
//! quinn-udp sends one message per call; nix's `sendmmsg` gives every message the
//! same control messages (each run needs its own segment size) and reads addresses
//! it never initialised when reporting. So the call is made here: every header is
//! built in [`send`] from slices it borrows, and the system call is the one unsafe
//! line.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::Flushed;

/// Messages per call: a turn's destinations rarely number more.
pub(crate) const MESSAGES: usize = 64;
/// Datagrams per call (the kernel takes at most 1,024 iovecs per message; a GSO run
/// holds at most 64).
pub(crate) const IOVECS: usize = 1024;

/// linux/udp.h: the segment size of a GSO send, as a control message.
const UDP_SEGMENT: libc::c_int = 103;

/// One message: the datagrams `iov[start..end]` to `destination`, all of `segment`
/// bytes but the last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Message {
    pub destination: SocketAddr,
    pub start: usize,
    pub end: usize,
    pub segment: u16,
    pub bytes: usize,
}

impl Message {
    pub const EMPTY: Message = Message {
        destination: SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
        start: 0,
        end: 0,
        segment: 0,
        bytes: 0,
    };

    fn datagrams(&self) -> u64 {
        (self.end - self.start) as u64
    }
}

/// A `UDP_SEGMENT` control message: the header, then its `u16` (CMSG_SPACE(2) bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    header: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

/// The system call, as a value: the kernel's `sendmmsg`, or in a test one that
/// refuses GSO as some kernels and devices do (see the tests below).
pub(crate) type SendMmsg =
    unsafe fn(libc::c_int, *mut libc::mmsghdr, libc::c_uint, libc::c_int) -> libc::c_int;

/// The kernel's `sendmmsg`.
pub(crate) const SENDMMSG: SendMmsg = sendmmsg;

unsafe fn sendmmsg(
    fd: libc::c_int,
    headers: *mut libc::mmsghdr,
    len: libc::c_uint,
    flags: libc::c_int,
) -> libc::c_int {
    // SAFETY: the caller's contract is sendmmsg's own.
    unsafe { libc::sendmmsg(fd, headers, len, flags) }
}

/// Send `messages` (their datagrams in `iov`) in as few calls as the kernel takes.
/// A message the kernel refuses is counted as failed and skipped, as UDP would drop
/// it; the rest still go. A GSO message refused with EIO (the device or path cannot
/// segment: no checksum offload, IPsec) is sent again as single datagrams, and
/// `done.gso_refused` tells the caller to stop using GSO.
pub(crate) fn send(
    socket: BorrowedFd<'_>,
    messages: &[Message],
    iov: &[IoSlice<'_>],
    done: &mut Flushed,
    sys: SendMmsg,
) {
    debug_assert!(messages.len() <= MESSAGES);
    let names: [socket2::SockAddr; MESSAGES] = std::array::from_fn(|i| {
        socket2::SockAddr::from(
            messages
                .get(i)
                .map_or(Message::EMPTY.destination, |m| m.destination),
        )
    });
    let mut cmsgs = [SegmentCmsg {
        header: libc::cmsghdr {
            cmsg_len: 0,
            cmsg_level: libc::SOL_UDP,
            cmsg_type: UDP_SEGMENT,
        },
        segment: 0,
        _pad: [0; 6],
    }; MESSAGES];
    let mut headers: [libc::mmsghdr; MESSAGES] = std::array::from_fn(|_| libc::mmsghdr {
        msg_hdr: libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: std::ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        },
        msg_len: 0,
    });
    for (c, m) in cmsgs.iter_mut().zip(messages) {
        c.header.cmsg_len = std::mem::size_of::<libc::cmsghdr>() + 2;
        c.segment = m.segment;
    }
    // Every pointer into `cmsgs` comes from this one base, taken after the last
    // write through a reference: the kernel reads what was written above.
    let cmsg_base = cmsgs.as_mut_ptr();
    for (i, m) in messages.iter().enumerate() {
        let h = &mut headers[i].msg_hdr;
        h.msg_name = names[i].as_ptr() as *mut libc::c_void;
        h.msg_namelen = names[i].len();
        // IoSlice is ABI-compatible with iovec on Unix (std guarantees it).
        h.msg_iov = iov[m.start..m.end].as_ptr() as *mut libc::iovec;
        h.msg_iovlen = m.end - m.start;
        if m.end - m.start > 1 {
            h.msg_control = cmsg_base.wrapping_add(i) as *mut libc::c_void;
            h.msg_controllen = std::mem::size_of::<SegmentCmsg>();
        }
    }
    let mut k = 0;
    while k < messages.len() {
        let rest = &mut headers[k..messages.len()];
        done.calls += 1;
        // SAFETY: each header points only into `names`, `cmsgs` and `iov`, which are
        // borrowed or owned by this function and outlive the call; counts and
        // lengths are those of the slices pointed to.
        let sent = unsafe {
            sys(
                socket.as_raw_fd(),
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                0,
            )
        };
        if sent <= 0 {
            let e = io::Error::last_os_error();
            if sent < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let m = messages[k];
            if sent < 0 && e.raw_os_error() == Some(libc::EIO) && m.end - m.start > 1 {
                // The kernel cannot segment this send: each of its datagrams alone.
                done.gso_refused = true;
                let singles: Vec<Message> = (m.start..m.end)
                    .map(|i| Message {
                        destination: m.destination,
                        start: i,
                        end: i + 1,
                        segment: iov[i].len() as u16,
                        bytes: iov[i].len(),
                    })
                    .collect();
                for chunk in singles.chunks(MESSAGES) {
                    send(socket, chunk, iov, done, sys);
                }
                k += 1;
                continue;
            }
            // The first message failed: drop it, go on with the next.
            done.failed += messages[k].datagrams();
            tracing::debug!("send to {}: {e}", messages[k].destination);
            k += 1;
            continue;
        }
        let sent = sent as usize;
        for m in &messages[k..k + sent] {
            done.datagrams += m.datagrams();
            done.bytes += m.bytes as u64;
        }
        k += sent;
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use crate::{BatchSocket, RxBatch, TxQueue};

    static GSO_REFUSED: AtomicU64 = AtomicU64::new(0);

    /// The kernel as some devices and paths make it (no checksum offload, IPsec):
    /// a message with a UDP_SEGMENT control message fails with EIO; everything else
    /// goes to the real `sendmmsg`. (This machine's kernel segments in software on
    /// every device here, so the refusal itself cannot be produced for real.)
    unsafe fn refusing_gso(
        fd: libc::c_int,
        headers: *mut libc::mmsghdr,
        len: libc::c_uint,
        flags: libc::c_int,
    ) -> libc::c_int {
        // SAFETY: `headers` points at `len` initialised headers (sendmmsg's contract).
        let all = unsafe { std::slice::from_raw_parts_mut(headers, len as usize) };
        match all.iter().position(|h| h.msg_hdr.msg_controllen > 0) {
            Some(0) => {
                GSO_REFUSED.fetch_add(1, Ordering::Relaxed);
                // SAFETY: errno is this thread's.
                unsafe { *libc::__errno_location() = libc::EIO };
                -1
            }
            // Up to the GSO message, as the kernel reports a partial batch.
            Some(n) => unsafe { libc::sendmmsg(fd, headers, n as libc::c_uint, flags) },
            None => unsafe { libc::sendmmsg(fd, headers, len, flags) },
        }
    }

    #[test]
    fn a_refused_gso_send_goes_out_datagram_by_datagram_and_gso_stays_off() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let (tx_io, rx_io) = (
            BatchSocket::new(&tx).unwrap(),
            BatchSocket::new(&rx).unwrap(),
        );
        assert!(
            tx_io.offload().gso_segments > 1,
            "this test needs a kernel with UDP GSO (Linux 4.18+)"
        );
        let to = rx.local_addr().unwrap();
        let mut queue = TxQueue::with_capacity(64);
        let mut sent = Vec::new();
        for i in 0..10u8 {
            let payload = vec![i; 1000];
            queue.push(to, &payload);
            sent.push(payload);
        }
        let done = queue.flush_with(&tx_io, &tx, refusing_gso);
        assert!(done.gso_refused);
        assert_eq!((done.datagrams, done.failed), (10, 0), "{done:?}");
        assert_eq!(tx_io.offload().gso_segments, 1, "GSO is off from now on");
        let refusals = GSO_REFUSED.load(Ordering::Relaxed);

        // The next turn builds no GSO message at all.
        for i in 10..20u8 {
            let payload = vec![i; 1000];
            queue.push(to, &payload);
            sent.push(payload);
        }
        let done = queue.flush_with(&tx_io, &tx, refusing_gso);
        assert!(!done.gso_refused);
        assert_eq!(done.datagrams, 10);
        assert_eq!(GSO_REFUSED.load(Ordering::Relaxed), refusals);

        // Everything arrived, in order.
        let mut batch = RxBatch::default();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < sent.len() && Instant::now() < deadline {
            match batch.recv(&rx_io, &rx) {
                Ok(_) => got.extend(batch.datagrams().map(|(_, d)| d.to_vec())),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(got, sent);
    }
}
