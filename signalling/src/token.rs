//! Join tokens: JWTs (HS256) scoped to one room and one role.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends and receives media.
    Publisher,
    /// Receives only.
    Viewer,
    /// Room administration (tokens for room `*`).
    Admin,
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
}

impl TokenError {
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Expired => "expired",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongRoom => "wrong_room",
            TokenError::Malformed => "malformed",
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
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn mint(&self, room: &str, identity: &str, role: Role, ttl: Duration) -> String {
        let exp = now_secs() + ttl.as_secs();
        let claims = Claims {
            room: room.to_owned(),
            sub: identity.to_owned(),
            role,
            exp,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// Verify a token for `room`.
    pub fn verify(&self, token: Option<&str>, room: &str) -> Result<Claims, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        let data = decode::<Claims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
        if data.claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(data.claims)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            },
            &keys.encoding,
        )
        .unwrap();
        assert_eq!(keys.verify(Some(&expired), "r1"), Err(TokenError::Expired));
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
