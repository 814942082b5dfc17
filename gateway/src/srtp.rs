//! SDES-SRTP for the legs (RFC 4568 keys in the SDP, RFC 3711 SRTP): the caller's key
//! decrypts what it sends, a key of ours (fresh per call, sent back in the answer)
//! encrypts what the gateway sends. `rtc-srtp` does the work, on the same aws-lc
//! backend as str0m's SRTP.
//!
//! Keys travel in the SDP: without TLS on the SIP hop anyone on the path reads them,
//! which is why TLS calls must use SRTP and plain calls carry no keys worth having.

use base64::Engine;
use ezk_sdp_types::{SrtpCrypto, SrtpSuite};
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

/// The suites served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Aes128Sha1_80,
    Aes128Sha1_32,
    Aes256Sha1_80,
}

impl Suite {
    fn of(s: &SrtpSuite) -> Option<Suite> {
        match s {
            SrtpSuite::AES_CM_128_HMAC_SHA1_80 => Some(Suite::Aes128Sha1_80),
            SrtpSuite::AES_CM_128_HMAC_SHA1_32 => Some(Suite::Aes128Sha1_32),
            SrtpSuite::AES_256_CM_HMAC_SHA1_80 => Some(Suite::Aes256Sha1_80),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes128Sha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::Aes128Sha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::Aes256Sha1_80 => "AES_256_CM_HMAC_SHA1_80",
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::Aes128Sha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::Aes128Sha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::Aes256Sha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
        }
    }

    /// Master key and salt lengths.
    fn lengths(self) -> (usize, usize) {
        match self {
            Suite::Aes128Sha1_80 | Suite::Aes128Sha1_32 => (16, 14),
            Suite::Aes256Sha1_80 => (32, 14),
        }
    }
}

/// The keys of one leg, as negotiated.
#[derive(Clone, PartialEq, Eq)]
pub struct Sdes {
    /// The offer's `a=crypto` tag, repeated in the answer.
    pub tag: u32,
    pub suite: Suite,
    /// The caller's master key and salt, concatenated.
    remote: Vec<u8>,
    /// Ours, made for this call.
    local: Vec<u8>,
}

impl std::fmt::Debug for Sdes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach a log line.
        write!(f, "Sdes({} tag {})", self.suite.name(), self.tag)
    }
}

impl Sdes {
    /// The first `a=crypto` line of an m-line that the gateway serves: a suite above,
    /// one key without MKI or lifetime limits, no session parameters.
    pub fn choose(lines: &[SrtpCrypto]) -> Option<Sdes> {
        lines.iter().find_map(|c| {
            let suite = Suite::of(&c.suite)?;
            let [key] = &c.keys[..] else { return None };
            if key.mki.is_some() || !c.params.is_empty() {
                return None;
            }
            // Padded or not (some send AES-256 keys without).
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let remote = lenient.decode(key.key_and_salt.as_bytes()).ok()?;
            let (k, s) = suite.lengths();
            if remote.len() != k + s {
                return None;
            }
            let local: Vec<u8> = (0..k + s).map(|_| rand::random::<u8>()).collect();
            Some(Sdes {
                tag: c.tag,
                suite,
                remote,
                local,
            })
        })
    }

    /// The answer's `a=crypto` line (without `a=` and line end).
    pub fn answer_line(&self) -> String {
        let key = base64::engine::general_purpose::STANDARD.encode(&self.local);
        format!("crypto:{} {} inline:{key}", self.tag, self.suite.name())
    }

    /// The SRTP contexts of a call: the caller's key in, ours out.
    pub fn contexts(&self) -> Result<LegSrtp, String> {
        let (k, _) = self.suite.lengths();
        let context = |keys: &[u8]| {
            let provider = rtc_srtp::crypto::default_provider()
                .map_err(|e| format!("no SRTP crypto provider: {e}"))?;
            Context::new(
                &keys[..k],
                &keys[k..],
                self.suite.profile(),
                Some(rtc_srtp::option::srtp_replay_protection(256)),
                None,
                provider.crypto(),
            )
            .map_err(|e| format!("SRTP: {e}"))
        };
        Ok(LegSrtp {
            inbound: context(&self.remote)?,
            outbound: context(&self.local)?,
            keys: self.clone(),
            known: Vec::new(),
            strangers: 0,
        })
    }

    #[cfg(test)]
    pub(crate) fn swapped(&self) -> Sdes {
        Sdes {
            remote: self.local.clone(),
            local: self.remote.clone(),
            ..self.clone()
        }
    }
}

/// A key the gateway offers on one of its m-lines (a call it offers in: a delayed
/// offer's 200, a dial-out's INVITE): tag 1, AES_CM_128_HMAC_SHA1_80, the suite every
/// SDES endpoint takes (RFC 4568 §6.2.1 makes it mandatory).
#[derive(Clone, PartialEq, Eq)]
pub struct OfferedKey {
    local: Vec<u8>,
}

impl std::fmt::Debug for OfferedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OfferedKey(AES_CM_128_HMAC_SHA1_80 tag 1)")
    }
}

impl Default for OfferedKey {
    fn default() -> Self {
        Self::new()
    }
}

impl OfferedKey {
    /// A fresh key and salt.
    pub fn new() -> OfferedKey {
        let (k, s) = Suite::Aes128Sha1_80.lengths();
        OfferedKey {
            local: (0..k + s).map(|_| rand::random::<u8>()).collect(),
        }
    }

    /// The offer's `a=crypto` line (without `a=` and line end).
    pub fn line(&self) -> String {
        let key = base64::engine::general_purpose::STANDARD.encode(&self.local);
        format!("crypto:1 {} inline:{key}", Suite::Aes128Sha1_80.name())
    }
}

impl Sdes {
    /// The keys of a leg whose answer (read as [`Sdes::choose`] reads an offer) took
    /// `offered`: the answer's key in, the offered one out. `None` when the answer
    /// names another tag or suite than the one offered.
    pub fn answering(self, offered: &OfferedKey) -> Option<Sdes> {
        (self.tag == 1 && self.suite == Suite::Aes128Sha1_80).then(|| Sdes {
            local: offered.local.clone(),
            ..self
        })
    }
}

impl Sdes {
    /// A re-offer's `a=crypto` for this leg's suite (its tag first; the far end
    /// numbers its own lines, and a call the gateway offered into has the gateway's
    /// tag): these keys with its key and tag, ours unchanged (it re-keys, RFC 4568
    /// §7.1.4; the answer names its tag). `None` when nothing changed, or no line of
    /// the suite is there.
    pub fn rekeyed(&self, lines: &[SrtpCrypto]) -> Option<Sdes> {
        let (same_tag, others): (Vec<SrtpCrypto>, Vec<SrtpCrypto>) =
            lines.iter().cloned().partition(|c| c.tag == self.tag);
        let of_suite = |l: Vec<SrtpCrypto>| {
            l.into_iter()
                .filter(|c| Suite::of(&c.suite) == Some(self.suite))
                .collect::<Vec<_>>()
        };
        let again =
            Sdes::choose(&of_suite(same_tag)).or_else(|| Sdes::choose(&of_suite(others)))?;
        let new = Sdes {
            tag: again.tag,
            remote: again.remote,
            ..self.clone()
        };
        (new != *self).then_some(new)
    }
}

/// Packets of SSRCs never authenticated that the inbound context takes before it is
/// made anew: rtc-srtp keeps state for every SSRC it is shown, authentic or not, and
/// has no way to forget one, so a sender of random SSRCs would grow it without end.
const STRANGERS: u32 = 64;
/// SSRCs a caller may authenticate with (a sender that restarts gets a new one).
const KNOWN: usize = 4;

/// A leg's SRTP state.
pub struct LegSrtp {
    inbound: Context,
    outbound: Context,
    keys: Sdes,
    /// SSRCs whose packets authenticated.
    known: Vec<u32>,
    strangers: u32,
}

impl LegSrtp {
    /// The caller's SRTP packet as RTP; `None` when it fails authentication (or is
    /// a replay).
    pub fn unprotect(&mut self, srtp: &[u8]) -> Option<Vec<u8>> {
        let ssrc = srtp
            .get(8..12)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
        let known = self.known.contains(&ssrc);
        if !known {
            self.strangers += 1;
            if self.strangers > STRANGERS {
                // Start over from the keys: the caller's replay window goes too, and
                // its next packet authenticates it again.
                if let Ok(fresh) = self.keys.contexts() {
                    self.inbound = fresh.inbound;
                }
                self.known.clear();
                self.strangers = 0;
            }
        }
        let plain = self.inbound.decrypt_rtp(srtp).ok()?.to_vec();
        if !known && self.known.len() < KNOWN {
            self.known.push(ssrc);
        }
        Some(plain)
    }

    /// The far end re-keyed: what it sends is opened with its new key from now on.
    /// What the gateway sends goes on under its own key and context (a new context
    /// would lose the rollover counter of a long call).
    pub fn rekey(&mut self, keys: Sdes) -> Result<(), String> {
        self.inbound = keys.contexts()?.inbound;
        self.keys = keys;
        self.known.clear();
        self.strangers = 0;
        Ok(())
    }

    /// An RTP packet of ours as SRTP.
    pub fn protect(&mut self, rtp: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtp(rtp).ok().map(|b| b.to_vec())
    }

    /// The caller's SRTCP packet as RTCP; `None` when it fails authentication.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Option<Vec<u8>> {
        self.inbound.decrypt_rtcp(srtcp).ok().map(|b| b.to_vec())
    }

    /// An RTCP packet of ours as SRTCP.
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtcp(rtcp).ok().map(|b| b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytesstr::BytesStr;

    fn offer(line: &str) -> Vec<SrtpCrypto> {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 8\r\n{line}"
        );
        let s = ezk_sdp_types::SessionDescription::parse(&BytesStr::from(sdp)).unwrap();
        s.media_descriptions[0].crypto.clone()
    }

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn the_first_served_suite_is_taken() {
        let c = offer(&format!(
            "a=crypto:1 F8_128_HMAC_SHA1_80 inline:{KEY}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:4\r\n\
             a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        ));
        let s = Sdes::choose(&c).unwrap();
        assert_eq!((s.tag, s.suite), (3, Suite::Aes128Sha1_80));
        let line = s.answer_line();
        assert!(
            line.starts_with("crypto:3 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{line}"
        );
        assert_ne!(s.local, s.remote, "a key of our own");
        assert!(!format!("{s:?}").contains(KEY));
        // A key of the wrong length is no key.
        assert!(
            Sdes::choose(&offer("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n")).is_none()
        );
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects_once() {
        let c = offer(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        ));
        let ours = Sdes::choose(&c).unwrap();
        let theirs = ours.swapped();
        let (mut a, mut b) = (ours.contexts().unwrap(), theirs.contexts().unwrap());
        let mut rtp = Vec::new();
        crate::rtp::write(&mut rtp, 8, false, 7, 160, 42, &[0xd5; 160]);
        let srtp = a.protect(&rtp).unwrap();
        assert_eq!(srtp.len(), rtp.len() + 10, "an 80-bit tag");
        assert_ne!(&srtp[12..172], &rtp[12..], "the payload is encrypted");
        assert_eq!(b.unprotect(&srtp).unwrap(), rtp);
        // A replay, and a forgery, are refused.
        assert!(b.unprotect(&srtp).is_none());
        let mut forged = a.protect(&rtp).unwrap();
        forged[20] ^= 1;
        assert!(b.unprotect(&forged).is_none());
    }

    #[test]
    fn a_key_the_gateway_offers_meets_the_answerers_key() {
        let offered = OfferedKey::new();
        assert!(!format!("{offered:?}").contains(&offered.line()[40..]));
        // The far end reads our offer and answers with a key of its own.
        let far = Sdes::choose(&offer(&format!("a={}\r\n", offered.line()))).unwrap();
        let answer = offer(&format!("a={}\r\n", far.answer_line()));
        let ours = Sdes::choose(&answer).unwrap().answering(&offered).unwrap();
        let (mut gateway, mut far) = (ours.contexts().unwrap(), far.contexts().unwrap());
        let mut rtp = Vec::new();
        crate::rtp::write(&mut rtp, 8, false, 1, 160, 42, &[0xd5; 160]);
        assert_eq!(far.unprotect(&gateway.protect(&rtp).unwrap()).unwrap(), rtp);
        assert_eq!(gateway.unprotect(&far.protect(&rtp).unwrap()).unwrap(), rtp);
        // An answer with a tag or suite that was not offered takes no key.
        let other = offer(&format!(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        ));
        assert!(Sdes::choose(&other).unwrap().answering(&offered).is_none());
        let other = offer(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n"
        ));
        assert!(Sdes::choose(&other).unwrap().answering(&offered).is_none());
    }

    #[test]
    fn forged_ssrcs_cannot_grow_the_state_or_stop_the_caller() {
        let c = offer(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
        ));
        let ours = Sdes::choose(&c).unwrap();
        let (mut gateway, mut caller) =
            (ours.contexts().unwrap(), ours.swapped().contexts().unwrap());
        let mut rtp = Vec::new();
        let mut seq = 0u16;
        let mut send = |caller: &mut LegSrtp, gateway: &mut LegSrtp| {
            seq += 1;
            crate::rtp::write(&mut rtp, 0, false, seq, 160 * seq as u32, 7, &[0xff; 160]);
            gateway.unprotect(&caller.protect(&rtp).unwrap()).is_some()
        };
        assert!(send(&mut caller, &mut gateway));
        // A flood of forged packets, each of a new SSRC: none authenticates.
        for i in 0..1000u32 {
            let mut forged = vec![0x80, 0, 0, 1, 0, 0, 0, 1];
            forged.extend_from_slice(&(1000 + i).to_be_bytes());
            forged.extend_from_slice(&[0u8; 170]);
            assert!(gateway.unprotect(&forged).is_none());
        }
        assert!(gateway.strangers <= STRANGERS);
        // The caller goes on.
        assert!(send(&mut caller, &mut gateway));
        assert!(send(&mut caller, &mut gateway));
    }
}
