//! Join tokens: JWTs (HS256) scoped to one room and one role. The claims are those of
//! API.md's table; `exp` is required, `nbf` honoured, and `iss`/`aud` required and
//! checked when the node is configured with them (`--token-issuer`,
//! `--token-audience`). Tokens are never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends and receives media.
    Publisher,
    /// A publisher who runs the meeting: enters a room's waiting room's guests (or
    /// turns them away), removes participants, mutes their audio.
    Host,
    /// A publisher who waits in the waiting room of a room that has one until a host
    /// admits them (in a room without one: a publisher).
    Guest,
    /// Receives only.
    Viewer,
    /// Room administration (tokens for room `*`).
    Admin,
    /// A SIP gateway running on its own (tokens for room `*`): it may ask this node
    /// for its calls' join tokens (`POST /api/sip/token`), and nothing else: it joins
    /// no room with this token and holds no key that could mint one.
    Service,
}

impl Role {
    /// It sends media (WHIP may publish with it).
    pub fn publishes(self) -> bool {
        matches!(self, Role::Publisher | Role::Host | Role::Guest)
    }

    /// Its holder enters a room with a waiting room at once.
    pub fn skips_lobby(self) -> bool {
        matches!(self, Role::Host | Role::Admin)
    }

    /// From its name in the API (`publisher`, `host`, `guest`, `viewer`, ...).
    pub fn from_name(name: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room the token admits to.
    pub room: String,
    /// Who joins (shown to others).
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Who issued it (checked when the node is configured with an issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Whom it is for (checked when the node is configured with an audience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The organisation the meeting belongs to (carried into meeting records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A SIP call, joined by the SIP gateway: it must give the room's PIN unless it
    /// came from a trusted network (`--sip-trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipCall>,
}

/// What the SIP gateway says of a call in its join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipCall {
    /// From a trusted network (a hospital's own SBC): no PIN asked.
    pub trusted: bool,
    /// The caller's address, as the gateway saw it: wrong PINs count per room and
    /// caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Why a token was refused; each maps to an HTTP status and a metric label.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token is for another room")]
    WrongRoom,
    #[error("token is malformed")]
    Malformed,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is from another issuer")]
    WrongIssuer,
    #[error("token is for another audience")]
    WrongAudience,
}

impl TokenError {
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Expired => "expired",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongRoom => "wrong_room",
            TokenError::Malformed => "malformed",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
        }
    }

    /// 401 when the caller did not prove who it is, 403 when it did but may not.
    pub fn status(self) -> u16 {
        match self {
            TokenError::WrongRoom => 403,
            _ => 401,
        }
    }
}

#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: None,
            audience: None,
        }
    }

    /// Require (and mint) this issuer and audience.
    pub fn expecting(mut self, issuer: Option<String>, audience: Option<String>) -> Self {
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    pub fn mint(&self, room: &str, identity: &str, role: Role, ttl: Duration) -> String {
        self.mint_claims(room, identity, role, (None, expiry(None, ttl)), None)
    }

    /// A token valid from `nbf` (seconds since the Unix epoch; now if `None`) for
    /// `ttl` after that: a booking's link for an appointment ahead. Returns it and its
    /// expiry.
    pub fn mint_window(
        &self,
        room: &str,
        identity: &str,
        role: Role,
        (nbf, ttl): (Option<u64>, Duration),
    ) -> (String, u64) {
        let exp = expiry(nbf, ttl);
        let token = self.mint_claims(room, identity, role, (nbf, exp), None);
        (token, exp)
    }

    /// A publisher's token for a SIP call (the gateway's): a trusted one needs no PIN,
    /// otherwise its join must give the room's PIN.
    pub fn mint_sip(&self, room: &str, identity: &str, call: SipCall, ttl: Duration) -> String {
        let sip = Some(call);
        let exp = expiry(None, ttl);
        self.mint_claims(room, identity, Role::Publisher, (None, exp), sip)
    }

    fn mint_claims(
        &self,
        room: &str,
        identity: &str,
        role: Role,
        (nbf, exp): (Option<u64>, u64),
        sip: Option<SipCall>,
    ) -> String {
        let claims = Claims {
            room: room.to_owned(),
            sub: identity.to_owned(),
            role,
            exp,
            nbf,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            org: None,
            sip,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// Verify a token for `room`.
    pub fn verify(&self, token: Option<&str>, room: &str) -> Result<Claims, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data = decode::<Claims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::WrongAudience,
            _ => TokenError::Malformed,
        })?;
        if data.claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(data.claims)
    }
}

/// How long a session's resume token lets its client take the session back.
pub const RESUME_TTL: Duration = Duration::from_secs(24 * 3600);

/// A resume token's claims: the session (room and participant) it takes back. Minted
/// by this node for the client it admitted; no join token carries `resume` and `pid`,
/// no resume token carries `role`, so neither passes for the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeClaims {
    pub room: String,
    pub pid: u64,
    pub resume: bool,
    pub exp: u64,
    /// A SIP call's session: shown as one again once taken back (a restarted
    /// signalling node knows its sessions only from their media nodes, which do not
    /// know what a participant is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sip: bool,
}

/// What a verified resume token takes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub pid: u64,
    /// The session is a SIP call's.
    pub sip: bool,
}

impl Keys {
    /// The resume token of participant `pid` in `room` (`sip`: a SIP call's).
    pub fn mint_resume(&self, room: &str, pid: u64, sip: bool) -> String {
        let claims = ResumeClaims {
            room: room.to_owned(),
            pid,
            resume: true,
            exp: now_secs() + RESUME_TTL.as_secs(),
            sip,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// Verify a resume token for `room`; returns the session it resumes.
    pub fn verify_resume(&self, token: &str, room: &str) -> Result<Resume, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp"]);
        let data =
            decode::<ResumeClaims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?;
        if !data.claims.resume {
            return Err(TokenError::Malformed);
        }
        if data.claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(Resume {
            pid: data.claims.pid,
            sip: data.claims.sip,
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a token valid from `nbf` (or now) for `ttl` expires.
fn expiry(nbf: Option<u64>, ttl: Duration) -> u64 {
    let now = now_secs();
    nbf.unwrap_or(now).max(now).saturating_add(ttl.as_secs())
}

/// Parse "90s", "15m", "1h", "2d" or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 90s, 15m, 1h, 2d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit {unit:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(n * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_each_failure() {
        let keys = Keys::new(b"secret");
        let t = keys.mint("r1", "alice", Role::Publisher, Duration::from_secs(60));
        let c = keys.verify(Some(&t), "r1").unwrap();
        assert_eq!(
            (c.room.as_str(), c.sub.as_str(), c.role),
            ("r1", "alice", Role::Publisher)
        );
        assert_eq!(keys.verify(Some(&t), "r2"), Err(TokenError::WrongRoom));
        assert_eq!(keys.verify(None, "r1"), Err(TokenError::Missing));
        assert_eq!(
            keys.verify(Some("not.a.jwt"), "r1"),
            Err(TokenError::Malformed)
        );
        let other = Keys::new(b"other").mint("r1", "a", Role::Viewer, Duration::from_secs(60));
        assert_eq!(
            keys.verify(Some(&other), "r1"),
            Err(TokenError::BadSignature)
        );
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                room: "r1".into(),
                sub: "a".into(),
                role: Role::Viewer,
                exp: now_secs() - 10,
                nbf: None,
                iss: None,
                aud: None,
                org: None,
                sip: None,
            },
            &keys.encoding,
        )
        .unwrap();
        assert_eq!(keys.verify(Some(&expired), "r1"), Err(TokenError::Expired));
    }

    #[test]
    fn not_before_issuer_and_audience() {
        let keys = Keys::new(b"secret");
        let claims = |nbf, iss: Option<&str>, aud: Option<&str>| Claims {
            room: "r1".into(),
            sub: "a".into(),
            role: Role::Publisher,
            exp: now_secs() + 60,
            nbf,
            iss: iss.map(Into::into),
            aud: aud.map(Into::into),
            org: Some("region-h".into()),
            sip: None,
        };
        let sign = |c: &Claims| encode(&Header::new(Algorithm::HS256), c, &keys.encoding).unwrap();
        let later = sign(&claims(Some(now_secs() + 30), None, None));
        assert_eq!(
            keys.verify(Some(&later), "r1"),
            Err(TokenError::NotYetValid)
        );
        let now = sign(&claims(Some(now_secs() - 1), None, None));
        assert_eq!(
            keys.verify(Some(&now), "r1").unwrap().org.as_deref(),
            Some("region-h")
        );

        // Unconfigured, iss and aud are carried but not checked; configured, required.
        let theirs = sign(&claims(None, Some("booking"), Some("knudepunkt")));
        assert!(keys.verify(Some(&theirs), "r1").is_ok());
        let strict = keys
            .clone()
            .expecting(Some("booking".into()), Some("knudepunkt".into()));
        assert!(strict.verify(Some(&theirs), "r1").is_ok());
        // (One missing claim at a time: which of two is reported first is not fixed.)
        let no_iss = sign(&claims(None, None, Some("knudepunkt")));
        assert_eq!(
            strict.verify(Some(&no_iss), "r1"),
            Err(TokenError::WrongIssuer)
        );
        let no_aud = sign(&claims(None, Some("booking"), None));
        assert_eq!(
            strict.verify(Some(&no_aud), "r1"),
            Err(TokenError::WrongAudience)
        );
        let other_iss = sign(&claims(None, Some("elsewhere"), Some("knudepunkt")));
        assert_eq!(
            strict.verify(Some(&other_iss), "r1"),
            Err(TokenError::WrongIssuer)
        );
        let other_aud = sign(&claims(None, Some("booking"), Some("another-service")));
        assert_eq!(
            strict.verify(Some(&other_aud), "r1"),
            Err(TokenError::WrongAudience)
        );
        // What it mints, it accepts.
        let minted = strict.mint("r1", "b", Role::Viewer, Duration::from_secs(60));
        assert!(strict.verify(Some(&minted), "r1").is_ok());
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn a_resume_token_says_whether_it_is_a_sip_call() {
        let keys = Keys::new(b"resume-secret");
        let call = keys.mint_resume("r1", 7, true);
        let page = keys.mint_resume("r1", 8, false);
        assert_eq!(
            keys.verify_resume(&call, "r1"),
            Ok(Resume { pid: 7, sip: true })
        );
        assert_eq!(
            keys.verify_resume(&page, "r1"),
            Ok(Resume { pid: 8, sip: false })
        );
        assert_eq!(keys.verify_resume(&call, "r2"), Err(TokenError::WrongRoom));
        // A join token is no resume token, whatever it says.
        let join = keys.mint("r1", "a", Role::Publisher, Duration::from_secs(60));
        assert!(keys.verify_resume(&join, "r1").is_err());
    }
}
