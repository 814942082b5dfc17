//! Which peer a packet is for: by its source (transport and address), and for a
//! source not seen yet by the ICE username of the STUN binding request it must
//! open with (the node is ICE-lite: clients check, the node answers, and the first
//! check names us).

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::ice::StunMessage;
use str0m::net::Protocol;

/// Where packets come from: UDP and ICE-TCP sources are apart (a client's TCP
/// connection may have the port number of its UDP socket).
pub type Remote = (Protocol, SocketAddr);

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A known address of this peer.
    Known(u32),
    /// A new address introducing itself to this peer with a STUN request; the peer's
    /// `Rtc` decides whether to accept it (then [`Demux::learn`] it).
    Introduces(u32),
    /// Not ours: not a known address and not a STUN request naming one of our peers.
    Unknown,
}

#[derive(Debug, Default)]
pub struct Demux {
    by_addr: HashMap<Remote, u32>,
    by_ufrag: HashMap<String, u32>,
}

impl Demux {
    pub fn route(&self, source: Remote, data: &[u8]) -> Route {
        if let Some(&peer) = self.by_addr.get(&source) {
            return Route::Known(peer);
        }
        let ufrag = StunMessage::parse(data)
            .ok()
            .and_then(|m| m.split_username().and_then(|(l, _)| self.by_ufrag.get(l)));
        match ufrag {
            Some(&peer) => Route::Introduces(peer),
            None => Route::Unknown,
        }
    }

    /// A peer joined: its local ICE username fragment finds it.
    pub fn add_peer(&mut self, peer: u32, local_ufrag: &str) {
        self.by_ufrag.insert(local_ufrag.to_owned(), peer);
    }

    /// The peer's `Rtc` accepted `source`: later datagrams from it go straight there.
    pub fn learn(&mut self, source: Remote, peer: u32) {
        self.by_addr.insert(source, peer);
    }

    /// A source is gone (its ICE-TCP connection closed): forget it; the peer it was.
    pub fn forget(&mut self, source: Remote) -> Option<u32> {
        self.by_addr.remove(&source)
    }

    /// The peer left: forget its username and addresses.
    pub fn remove_peer(&mut self, local_ufrag: &str, addrs: &[Remote]) {
        self.by_ufrag.remove(local_ufrag);
        for a in addrs {
            self.by_addr.remove(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::ice::IceCreds;

    /// A STUN binding request from a client to the node, as str0m's ICE agent makes
    /// it: the username is "<node ufrag>:<client ufrag>".
    fn binding_request(node_ufrag: &str) -> Vec<u8> {
        use str0m::ice::{StunMessage, TransId};
        let username = format!("{node_ufrag}:client");
        let msg = StunMessage::binding_request(&username, TransId::new(), false, 0, 12345, false);
        let mut buf = vec![0u8; 1500];
        // Demux reads the username only; checking the integrity is the Rtc's job.
        let n = msg
            .to_bytes(Some(b"password"), &mut buf, |_, _| [0; 20])
            .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn routes_by_address_then_by_stun_username() {
        let node = IceCreds::new();
        let a = (Protocol::Udp, "10.0.0.1:5000".parse().unwrap());
        let b = (Protocol::Udp, "10.0.0.2:5000".parse().unwrap());
        // The same address over TCP is another source.
        let a_tcp = (Protocol::Tcp, a.1);
        let mut d = Demux::default();
        d.add_peer(7, &node.ufrag);

        // Media from an address nobody introduced: not ours.
        assert_eq!(d.route(a, &[0x80, 0x60, 0, 1]), Route::Unknown);
        // A STUN request naming another node's ufrag: not ours either.
        assert_eq!(d.route(a, &binding_request("someone")), Route::Unknown);
        // A STUN request naming our peer introduces the address...
        assert_eq!(
            d.route(a, &binding_request(&node.ufrag)),
            Route::Introduces(7)
        );
        d.learn(a, 7);
        // ...after which anything from it is the peer's.
        assert_eq!(d.route(a, &[0x80, 0x60, 0, 1]), Route::Known(7));
        assert_eq!(d.route(b, &[0x80, 0x60, 0, 1]), Route::Unknown);
        assert_eq!(d.route(a_tcp, &[0x80, 0x60, 0, 1]), Route::Unknown);
        d.learn(a_tcp, 7);
        assert_eq!(d.forget(a_tcp), Some(7));
        assert_eq!(d.route(a_tcp, &[0x80, 0x60, 0, 1]), Route::Unknown);
        assert_eq!(d.route(a, &[0x80, 0x60, 0, 1]), Route::Known(7));

        d.remove_peer(&node.ufrag, &[a]);
        assert_eq!(d.route(a, &[0x80, 0x60, 0, 1]), Route::Unknown);
        assert_eq!(d.route(a, &binding_request(&node.ufrag)), Route::Unknown);
    }
}
