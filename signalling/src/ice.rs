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
            let (scheme, rest) = url
                .split_once(':')
                .ok_or_else(|| format!("ICE server {url:?}: expected stun:, turn: or turns:"))?;
            let host = rest.split(['?', ':']).next().unwrap_or("");
            let bad_char = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',' | ';');
            if host.is_empty() || url.chars().any(bad_char) {
                return Err(format!(
                    "ICE server {url:?}: no host, or characters a URL cannot have"
                ));
            }
            match scheme {
                "stun" | "stuns" => servers.stun.push(url.clone()),
                "turn" | "turns" => servers.turn.push(url.clone()),
                _ => {
                    return Err(format!(
                        "ICE server {url:?}: expected stun:, turn: or turns:"
                    ))
                }
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
        assert!(one("stun:a b", None).unwrap_err().contains("no host"));
        assert!(one("turn:t>x", Some("s")).is_err());
        assert!(one("stun:ok.example.org", None).is_ok());
        assert!(IceServers::new(&[], None, DEFAULT_TTL).unwrap().is_empty());
    }
}
