//! ICE servers for clients whose networks block UDP or the node's ports: the STUN
//! and TURN URLs of the configuration (`--ice-server`), with time-limited TURN
//! credentials of the TURN REST API, which TURN servers such as coturn check against
//! a secret they share with this node (`--turn-secret`; coturn's `use-auth-secret`):
//! the username is `<expiry>:knudepunkt` (seconds since the Unix epoch; nothing about
//! the person or the room), the password base64(HMAC-SHA1(secret, username)).
//! Handed to clients in `joined`, by `GET /api/ice-servers` (the page asks before it
//! builds its peer connection) and in WHIP/WHEP `Link` headers (RFC 9725).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;

/// One entry of an `RTCConfiguration.iceServers` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The configured servers.
#[derive(Clone, Debug, Default)]
pub struct IceServers {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Option<Vec<u8>>,
    ttl: Duration,
}

/// How long TURN credentials last by default: a long consultation's allocation is
/// refreshed with the same credentials.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);

impl IceServers {
    /// Check the URLs (`stun:`, `turn:`, `turns:`, RFC 7064/7065) and that TURN has a
    /// secret to make credentials with.
    pub fn new(urls: &[String], secret: Option<&str>, ttl: Duration) -> Result<Self, String> {
        let mut servers = IceServers {
            secret: secret.map(|s| s.as_bytes().to_vec()),
            ttl,
            ..Default::default()
        };
        for url in urls {
            if check_url(url).map_err(|why| format!("ICE server {url:?}: {why}"))? {
                servers.turn.push(url.clone());
            } else {
                servers.stun.push(url.clone());
            }
        }
        if !servers.turn.is_empty() && servers.secret.is_none() {
            return Err(
                "TURN servers need --turn-secret (the TURN server's REST API secret)".into(),
            );
        }
        if servers.ttl.is_zero() {
            return Err("--turn-ttl must be positive".into());
        }
        Ok(servers)
    }

    pub fn is_empty(&self) -> bool {
        self.stun.is_empty() && self.turn.is_empty()
    }

    /// The servers with credentials valid from `now` for the configured time.
    pub fn for_client(&self, now: SystemTime) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun.is_empty() {
            out.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.secret) {
            let expiry = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(self.ttl)
                .as_secs();
            let username = format!("{expiry}:knudepunkt");
            out.push(IceServer {
                urls: self.turn.clone(),
                credential: Some(credential(secret, &username)),
                username: Some(username),
            });
        }
        out
    }

    /// The same as `Link` header values (RFC 9725, section 4.6).
    pub fn link_headers(&self, now: SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        for server in self.for_client(now) {
            for url in &server.urls {
                let mut link = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(user), Some(pass)) = (&server.username, &server.credential) {
                    link.push_str(&format!(
                        "; username=\"{user}\"; credential=\"{pass}\"; credential-type=\"password\""
                    ));
                }
                out.push(link);
            }
        }
        out
    }
}

/// Whether `url` is a well-formed STUN or TURN URL as browsers take them (RFC 7064,
/// 7065: `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `stuns:`,
/// `turns:`); true for TURN. A browser refuses a peer connection whose servers it
/// cannot parse, so a bad one must stop the node at start, not every join.
fn check_url(url: &str) -> Result<bool, &'static str> {
    let printable = url.bytes().all(|b| b.is_ascii_graphic());
    if !printable || url.contains(['<', '>', '"', ',', ';', '\\']) {
        return Err("printable ASCII only, without <>\",;\\");
    }
    let (scheme, rest) = url
        .split_once(':')
        .ok_or("expected stun:, stuns:, turn: or turns:")?;
    let turn = match scheme {
        "stun" | "stuns" => false,
        "turn" | "turns" => true,
        _ => return Err("expected stun:, stuns:, turn: or turns:"),
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    match (turn, query) {
        (_, None) | (true, Some("transport=udp" | "transport=tcp")) => {}
        (false, Some(_)) => return Err("a STUN URL takes no query"),
        (true, Some(_)) => return Err("the only query is transport=udp or transport=tcp"),
    }
    if authority.contains(['/', '@', '?', '#']) {
        return Err("host[:port] only (no //, path or user)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [addr] or [addr]:port.
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("an unclosed [")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("not an IPv6 address in []");
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("[addr] takes :port only")?),
            };
            (addr, port)
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err("no host");
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(1..)) {
            return Err("the port must be 1-65535");
        }
    }
    Ok(turn)
}

/// The TURN REST API password for `username`.
fn credential(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_are_those_of_the_rest_api() {
        let urls = [
            "stun:stun.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:443?transport=tcp",
        ]
        .map(String::from);
        let ice = IceServers::new(
            &urls,
            Some("north-sea-wind-turbine-2026"),
            Duration::from_secs(3600),
        )
        .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let servers = ice.for_client(now);
        assert_eq!(servers[0].urls, ["stun:stun.example.org:3478"]);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].urls.len(), 2);
        assert_eq!(
            servers[1].username.as_deref(),
            Some("1700003600:knudepunkt")
        );
        // base64(HMAC-SHA1(secret, username)), checked against openssl:
        // printf '1700003600:knudepunkt' | openssl dgst -sha1 -hmac north-sea-wind-turbine-2026 -binary | base64
        assert_eq!(servers[1].credential.as_deref(), Some(EXPECTED));
        let links = ice.link_headers(now);
        assert_eq!(links[0], "<stun:stun.example.org:3478>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            format!("<turn:turn.example.org:3478?transport=udp>; rel=\"ice-server\"; username=\"1700003600:knudepunkt\"; credential=\"{EXPECTED}\"; credential-type=\"password\"")
        );
    }

    const EXPECTED: &str = "h4R5BWTXVWDqiIAI1ZC7/MRsEuk=";

    #[test]
    fn bad_configurations_are_refused_with_reasons() {
        let one = |u: &str, s: Option<&str>| IceServers::new(&[u.to_owned()], s, DEFAULT_TTL);
        assert!(one("turn:t.example.org", None)
            .unwrap_err()
            .contains("--turn-secret"));
        assert!(one("http://x", None)
            .unwrap_err()
            .contains("expected stun:"));
        assert!(one("stun:", None).unwrap_err().contains("no host"));
        assert!(one("stun:a b", None).unwrap_err().contains("printable"));
        for bad in [
            "turn:t>x",
            "stun:h?transport=udp",
            "turn:h:99999",
            "turn:h:0",
            "turn:h?transport=foo",
            "turn://h",
            "TURN:h",
            "turn:user@h",
            "turn:h\u{7f}",
            "turn:[::1",
            "turn:[nope]:3478",
            "turn:[::1]x",
            "turn:h:3478?transport=udp&x=1",
        ] {
            assert!(one(bad, Some("s")).is_err(), "{bad:?} refused");
        }
        for good in [
            "stun:ok.example.org",
            "stun:10.0.0.1:3478",
            "turn:[2001:db8::1]:3478?transport=udp",
            "turn:[::1]",
            "turns:turn.example.org:443?transport=tcp",
        ] {
            assert!(one(good, Some("s")).is_ok(), "{good:?} taken");
        }
        assert!(IceServers::new(&[], None, DEFAULT_TTL).unwrap().is_empty());
    }
}
