//! Join tokens: JWTs scoped to one room and one role, signed with the node's token
//! secret (HS256) or by a token service whose Ed25519 public key the node holds
//! (EdDSA). The claims are those of API.md's table; `exp` is required, `nbf` honoured,
//! and `iss`/`aud` required and checked when the node is configured with them
//! (`--token-issuer`, `--token-audience`). Tokens are never logged.

pub mod ed25519;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
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

/// A key that signs tokens and checks its own signatures.
#[derive(Clone)]
struct Signer {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Signer {
    fn hs256(secret: &[u8]) -> Signer {
        Signer {
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A key of this process's own, gone with it.
    fn ephemeral() -> Signer {
        Signer::hs256(control::secret::generate().as_bytes())
    }
}

/// The keys of a node's tokens.
///
/// With a token secret (`--secret`, HS256) the node verifies join tokens with it and
/// mints every token it issues with it too. With a public key (`--token-public-key`,
/// EdDSA) it verifies join tokens with the public key only: the service that mints
/// them keeps the only signing key, and nothing on the node can mint a join token
/// that outlives the node's process. What the node must still mint itself is signed
/// with keys of its own, each good for one thing:
/// - its SIP calls' join tokens (used at once by its gateway): a key of this process,
///   never written anywhere;
/// - resume tokens (a client takes its session back after this node restarts): a key
///   derived from the node secret, which the node holds anyway, so that a restarted
///   node still takes them, or a key of this process without one. A resume token only
///   takes back a session that a restart left; it admits no one new.
///
/// Links (`POST /api/rooms/{room}/links`) must outlive the process: the node mints
/// none with a public key only ([`Keys::mints_lasting_tokens`]).
#[derive(Clone)]
pub struct Keys {
    /// Verifies join tokens minted elsewhere.
    joins: (Algorithm, DecodingKey),
    /// Mints the join tokens this node issues (and verifies them).
    own: Signer,
    /// Mints and verifies resume tokens.
    resume: Signer,
    /// What `own` mints lasts (it is the token secret, or a signing key).
    lasting: bool,
    issuer: Option<String>,
    audience: Option<String>,
}

/// A token key that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("this is a private key: the node needs the public one only (openssl pkey -in KEY -pubout), so that the service minting tokens keeps the only signing key")]
    PrivateKeyGiven,
    #[error("not an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----): {0}")]
    NotEd25519Public(String),
    #[error("not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----): {0}")]
    NotEd25519Private(String),
}

impl Keys {
    /// Tokens signed with the shared secret (HS256): it verifies and mints them all.
    pub fn new(secret: &[u8]) -> Self {
        let own = Signer::hs256(secret);
        Keys {
            joins: (own.alg, own.decoding.clone()),
            resume: own.clone(),
            own,
            lasting: true,
            issuer: None,
            audience: None,
        }
    }

    /// Join tokens signed elsewhere with Ed25519 (EdDSA), verified with this public key
    /// (PEM). `lasting` (the node secret) keys the resume tokens, so that they survive
    /// a restart of this node.
    pub fn from_public_key(pem: &[u8], lasting: Option<&[u8]>) -> Result<Self, KeyError> {
        if String::from_utf8_lossy(pem).contains("PRIVATE KEY") {
            return Err(KeyError::PrivateKeyGiven);
        }
        let public = ed25519::public_key(pem).map_err(KeyError::NotEd25519Public)?;
        let resume = match lasting {
            Some(secret) => Signer::hs256(&derive_key(secret, b"knudepunkt resume tokens v1")),
            None => Signer::ephemeral(),
        };
        Ok(Keys {
            joins: (Algorithm::EdDSA, DecodingKey::from_ed_der(&public)),
            own: Signer::ephemeral(),
            resume,
            lasting: false,
            issuer: None,
            audience: None,
        })
    }

    /// The signing service's keys: tokens minted with this Ed25519 private key
    /// (PKCS#8 PEM), as `signalling token --token-private-key` does.
    pub fn from_private_key(pem: &[u8]) -> Result<Self, KeyError> {
        let public = ed25519::public_of_private(pem).map_err(KeyError::NotEd25519Private)?;
        let encoding = EncodingKey::from_ed_pem(pem)
            .map_err(|e| KeyError::NotEd25519Private(e.to_string()))?;
        let own = Signer {
            alg: Algorithm::EdDSA,
            encoding,
            decoding: DecodingKey::from_ed_der(&public),
        };
        Ok(Keys {
            joins: (own.alg, own.decoding.clone()),
            resume: own.clone(),
            own,
            lasting: true,
            issuer: None,
            audience: None,
        })
    }

    /// Whether the join tokens this node mints outlive its process: not when it holds
    /// only a public key (its own are then for its SIP calls' joins, at once).
    pub fn mints_lasting_tokens(&self) -> bool {
        self.lasting
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
        encode(&Header::new(self.own.alg), &claims, &self.own.encoding)
            .expect("a checked key signs")
    }

    /// Verify a token for `room`: one of the token service's (or the token secret's),
    /// or one this node minted itself.
    pub fn verify(&self, token: Option<&str>, room: &str) -> Result<Claims, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        // The header names the algorithm; the key is the one this node holds for it
        // (a token of another algorithm, e.g. HS256 "signed" with the public key, has
        // no key here).
        let alg = decode_header(token).map_err(|_| TokenError::Malformed)?.alg;
        let key = if alg == self.joins.0 {
            &self.joins.1
        } else if alg == self.own.alg {
            &self.own.decoding
        } else {
            return Err(TokenError::BadSignature);
        };
        let mut v = Validation::new(alg);
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
        let data = decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
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
    /// The session is a host's: a host taken back (through a restarted or another
    /// signalling node) hosts on, and is not a guest until it joins again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
}

/// What a resume token takes back: the session, and what it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub pid: u64,
    /// The session is a SIP call's.
    pub sip: bool,
    /// The session is a host's.
    pub host: bool,
}

impl Keys {
    /// The resume token of `session` in `room`.
    pub fn mint_resume(&self, room: &str, session: Resume) -> String {
        let claims = ResumeClaims {
            room: room.to_owned(),
            pid: session.pid,
            resume: true,
            exp: now_secs() + RESUME_TTL.as_secs(),
            sip: session.sip,
            host: session.host,
        };
        encode(
            &Header::new(self.resume.alg),
            &claims,
            &self.resume.encoding,
        )
        .expect("a checked key signs")
    }

    /// Verify a resume token for `room`; returns the session it resumes.
    pub fn verify_resume(&self, token: &str, room: &str) -> Result<Resume, TokenError> {
        let mut v = Validation::new(self.resume.alg);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp"]);
        let data = decode::<ResumeClaims>(token, &self.resume.decoding, &v).map_err(|e| match e
            .kind()
        {
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
            host: data.claims.host,
        })
    }
}

/// A key for one purpose from a secret held for another (HMAC-SHA256 of the label).
fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
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
            &keys.own.encoding,
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
        let sign =
            |c: &Claims| encode(&Header::new(Algorithm::HS256), c, &keys.own.encoding).unwrap();
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
    fn eddsa_tokens_are_verified_with_the_public_key_alone() {
        let (private, public) = ed25519::generate();
        let service = Keys::from_private_key(private.as_bytes()).unwrap();
        let node_secret = b"the node secret of this cluster";
        let node = Keys::from_public_key(public.as_bytes(), Some(node_secret)).unwrap();
        let minute = Duration::from_secs(60);
        assert!(service.mints_lasting_tokens() && Keys::new(b"s").mints_lasting_tokens());
        assert!(!node.mints_lasting_tokens());

        // The service's token passes, for its room only.
        let t = service.mint("r1", "alice", Role::Host, minute);
        assert_eq!(node.verify(Some(&t), "r1").unwrap().role, Role::Host);
        assert_eq!(node.verify(Some(&t), "r2"), Err(TokenError::WrongRoom));
        // Another service's key, an HS256 token "signed" with the public key (the
        // algorithm confusion), and one with the node secret: none has a key here.
        let (other, _) = ed25519::generate();
        let stranger = Keys::from_private_key(other.as_bytes()).unwrap();
        let forged = [
            stranger.mint("r1", "m", Role::Admin, minute),
            Keys::new(public.as_bytes()).mint("*", "m", Role::Admin, minute),
            Keys::new(node_secret).mint("*", "m", Role::Admin, minute),
        ];
        for f in &forged {
            assert_eq!(node.verify(Some(f), "r1"), Err(TokenError::BadSignature));
            assert_eq!(node.verify(Some(f), "*"), Err(TokenError::BadSignature));
        }

        // What the node mints itself (its SIP calls' tokens) passes here, and at no
        // other node with the same public key.
        let call = SipCall {
            trusted: false,
            source: None,
        };
        let own = node.mint_sip("r1", "phone", call, minute);
        assert!(node.verify(Some(&own), "r1").is_ok());
        let twin = Keys::from_public_key(public.as_bytes(), Some(node_secret)).unwrap();
        assert_eq!(twin.verify(Some(&own), "r1"), Err(TokenError::BadSignature));
        // Resume tokens outlive the node (its twin after a restart takes them) when it
        // has a node secret, and pass for nothing else.
        let session = Resume {
            pid: 4,
            sip: false,
            host: false,
        };
        let resume = node.mint_resume("r1", session);
        assert_eq!(twin.verify_resume(&resume, "r1"), Ok(session));
        assert_eq!(
            twin.verify(Some(&resume), "r1"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            node.verify_resume(&own, "r1"),
            Err(TokenError::BadSignature)
        );
        let alone = Keys::from_public_key(public.as_bytes(), None).unwrap();
        assert_eq!(
            alone.verify_resume(&resume, "r1"),
            Err(TokenError::BadSignature)
        );
        assert!(alone
            .verify_resume(&alone.mint_resume("r1", session), "r1")
            .is_ok());

        // A private key given where the public one belongs is refused, saying so.
        assert_eq!(
            Keys::from_public_key(private.as_bytes(), None).err(),
            Some(KeyError::PrivateKeyGiven)
        );
        assert!(Keys::from_public_key(b"not a key", None).is_err());
        assert!(Keys::from_private_key(public.as_bytes()).is_err());
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn a_resume_token_says_whether_it_is_a_sip_call_or_a_host() {
        let keys = Keys::new(b"resume-secret");
        let session = |pid, sip, host| Resume { pid, sip, host };
        for s in [
            session(7, true, false),
            session(8, false, false),
            session(9, false, true),
        ] {
            assert_eq!(keys.verify_resume(&keys.mint_resume("r1", s), "r1"), Ok(s));
        }
        let call = keys.mint_resume("r1", session(7, true, false));
        assert_eq!(keys.verify_resume(&call, "r2"), Err(TokenError::WrongRoom));
        // A join token is no resume token, whatever it says.
        let join = keys.mint("r1", "a", Role::Publisher, Duration::from_secs(60));
        assert!(keys.verify_resume(&join, "r1").is_err());
    }
}
