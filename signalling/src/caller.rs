//! Who is calling. Behind the TLS proxy that deploy/README requires, every request
//! comes from the proxy's address: per-address limits would treat all clients as one,
//! and a same-host proxy would make every caller look local. So a request that came
//! through a proxy (it carries forwarding headers) is never local, and only from
//! proxies the operator trusts (`--trusted-proxy CIDR`) is the client's address read
//! from those headers.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Headers that say a request was forwarded by a proxy.
const FORWARDING: [&str; 4] = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

/// The caller of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client's address: the peer's, or through trusted proxies the nearest
    /// untrusted address they name.
    pub ip: IpAddr,
    /// On this machine and not forwarded: may use what dev mode offers locally.
    pub local: bool,
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn caller(&self, peer: SocketAddr, headers: &HeaderMap) -> Caller {
        let forwarded = FORWARDING.iter().any(|h| headers.contains_key(*h));
        let mut ip = peer.ip();
        if forwarded && self.trusts(ip) {
            // Walk the chain from the nearest hop back; the first address that is not a
            // trusted proxy is the client (anything further left it could have forged).
            for hop in chain(headers).into_iter().rev() {
                ip = hop;
                if !self.trusts(hop) {
                    break;
                }
            }
        }
        Caller {
            ip,
            local: !forwarded && peer.ip().is_loopback(),
        }
    }
}

/// The addresses a request passed through, client first: `X-Forwarded-For`, else the
/// `for=` of `Forwarded` (RFC 7239), else `X-Real-IP`. Unparsable entries are skipped.
fn chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let xff: Vec<IpAddr> = values("x-forwarded-for")
        .iter()
        .filter_map(|s| parse_ip(s))
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    let rfc7239: Vec<IpAddr> = values("forwarded")
        .iter()
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.eq_ignore_ascii_case("for").then(|| parse_ip(v))?
        })
        .collect();
    if !rfc7239.is_empty() {
        return rfc7239;
    }
    values("x-real-ip")
        .iter()
        .filter_map(|s| parse_ip(s))
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:567`, `"[2001:db8::1]:80"`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_requests_are_never_local_and_only_trusted_proxies_are_believed() {
        let none = TrustedProxies::default();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            none.caller(local, &HeaderMap::new()),
            Caller {
                ip: local.ip(),
                local: true
            }
        );
        for h in FORWARDING {
            let c = none.caller(local, &headers(&[(h, "203.0.113.7")]));
            assert_eq!((c.ip, c.local), (local.ip(), false), "{h}");
        }

        let proxy = TrustedProxies(vec!["127.0.0.0/8".parse().unwrap()]);
        let xff = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7")]);
        assert_eq!(
            proxy.caller(local, &xff).ip,
            client,
            "the nearest untrusted hop"
        );
        let two_proxies = TrustedProxies(vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let via_lb = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.2.3")]);
        assert_eq!(two_proxies.caller(local, &via_lb).ip, client);
        let rfc = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(
            proxy.caller(local, &rfc).ip,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let real = headers(&[("x-real-ip", "203.0.113.7")]);
        assert_eq!(proxy.caller(local, &real).ip, client);
        // From an untrusted peer the headers are ignored; garbage is skipped.
        let stranger: SocketAddr = "192.0.2.9:1".parse().unwrap();
        assert_eq!(proxy.caller(stranger, &xff).ip, stranger.ip());
        let junk = headers(&[("x-forwarded-for", "unknown, not-an-ip")]);
        assert_eq!(proxy.caller(local, &junk).ip, local.ip());
    }
}
