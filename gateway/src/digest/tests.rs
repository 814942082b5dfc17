use rsipstack::sip::SipMessage;

use super::*;

const PASSWORD: &str = "correct horse battery staple";

const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)));

fn invite(from_user: &str, authorization: Option<&str>) -> Request {
    invite_to("room", from_user, authorization)
}

fn invite_to(room: &str, from_user: &str, authorization: Option<&str>) -> Request {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let text = format!(
        "INVITE sip:{room}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
         From: <sip:{from_user}@10.0.0.9>;tag=1\r\n\
         To: <sip:{room}@127.0.0.1>\r\n\
         Call-ID: c1\r\nCSeq: 1 INVITE\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    match SipMessage::try_from(text.as_str()).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!(),
    }
}

/// What a trunk answers to a challenge with `nonce` (qop=auth, MD5).
fn answer(user: &str, password: &str, nonce: &str) -> String {
    let qop = rsipstack::sip::headers::auth::AuthQop::Auth {
        cnonce: "0a4f113b".into(),
        nc: 1,
    };
    let response = compute_digest(
        user,
        password,
        REALM,
        nonce,
        &Method::Invite,
        "sip:room@127.0.0.1",
        Algorithm::Md5,
        Some(&qop),
    );
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"sip:room@127.0.0.1\", response=\"{response}\", algorithm=MD5, \
         qop=auth, nc=00000001, cnonce=\"0a4f113b\""
    )
}

impl Digest {
    fn check_at(&self, req: &Request, now: SystemTime) -> Check {
        self.check(req, IP, now)
    }
}

#[test]
fn the_trunk_is_challenged_and_its_right_answer_trusted() {
    let d = Digest::new("trunk", PASSWORD).unwrap();
    let now = SystemTime::now();
    // Another caller is not asked: the PIN path.
    assert_eq!(d.check_at(&invite("alice", None), now), Check::NotTrunk);
    // The trunk without credentials: a challenge naming our realm and a nonce.
    assert_eq!(
        d.check_at(&invite("trunk", None), now),
        Check::Challenge { stale: false }
    );
    let Header::WwwAuthenticate(h) = d.challenge(now, IP, false) else {
        panic!("a WWW-Authenticate header")
    };
    let challenge = rsipstack::sip::typed::WwwAuthenticate::parse(h.value()).unwrap();
    assert_eq!(challenge.realm, REALM);
    let nonce = challenge.nonce;
    let right = answer("trunk", PASSWORD, &nonce);
    assert_eq!(
        d.check_at(&invite("trunk", Some(&right)), now),
        Check::Valid
    );
    // Wrong password, or another user's name: 403.
    let wrong = answer("trunk", "not the password at all", &nonce);
    assert_eq!(
        d.check_at(&invite("trunk", Some(&wrong)), now),
        Check::Wrong
    );
    let other = answer("alice", PASSWORD, &nonce);
    assert_eq!(
        d.check_at(&invite("alice", Some(&other)), now),
        Check::Wrong
    );
}

#[test]
fn nonces_are_ours_and_expire() {
    let d = Digest::new("trunk", PASSWORD).unwrap();
    let then = SystemTime::now() - NONCE_LIFETIME - Duration::from_secs(1);
    let old = d.nonce(then, IP);
    let now = SystemTime::now();
    // An expired nonce with the right password: asked again, stale.
    let late = answer("trunk", PASSWORD, &old);
    assert_eq!(
        d.check_at(&invite("trunk", Some(&late)), now),
        Check::Challenge { stale: true }
    );
    // A nonce made up by the caller (or by another process): a fresh challenge.
    let forged = answer(
        "trunk",
        PASSWORD,
        "66000000.00112233445566778899aabbccddeeff",
    );
    assert_eq!(
        d.check_at(&invite("trunk", Some(&forged)), now),
        Check::Challenge { stale: false }
    );
    let other = Digest::new("trunk", PASSWORD).unwrap();
    let theirs = answer("trunk", PASSWORD, &other.nonce(now, IP));
    assert_eq!(
        d.check_at(&invite("trunk", Some(&theirs)), now),
        Check::Challenge { stale: false }
    );
}

#[test]
fn weak_passwords_and_odd_names_are_refused_at_start() {
    assert!(Digest::new("trunk", "short").unwrap_err().contains("16"));
    assert!(Digest::new("", PASSWORD).is_err());
    assert!(Digest::new("a b", PASSWORD).is_err());
    assert!(Digest::new("a\"b", PASSWORD).is_err());
    // The password is never shown.
    let d = Digest::new("trunk", PASSWORD).unwrap();
    assert!(!format!("{d:?}").contains("horse"));
}

#[test]
fn an_answer_holds_for_its_request_its_address_and_once() {
    let d = Digest::new("trunk", PASSWORD).unwrap();
    let now = SystemTime::now();
    let nonce = d.nonce(now, IP);
    let right = answer("trunk", PASSWORD, &nonce);
    assert_eq!(
        d.check(&invite("trunk", Some(&right)), IP, now),
        Check::Valid
    );
    // The same answer on an INVITE for another room: its digest URI is not the
    // Request-URI, so a captured answer opens no other room.
    let elsewhere = invite_to("otherroom", "trunk", Some(&right));
    assert_eq!(d.check(&elsewhere, IP, now), Check::Wrong);
    // From another address: the nonce was not made for it.
    let other_ip = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 10)));
    let moved = invite("trunk", Some(&right));
    assert_eq!(
        d.check(&moved, other_ip, now),
        Check::Challenge { stale: false }
    );
    // The nonce used again (nc 2), or answered without qop: challenged afresh.
    let again = right.replace("nc=00000001", "nc=00000002");
    assert_eq!(
        d.check(&invite("trunk", Some(&again)), IP, now),
        Check::Challenge { stale: false }
    );
    let no_qop = format!(
        "Digest username=\"trunk\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"sip:room@127.0.0.1\", response=\"{}\"",
        compute_digest(
            "trunk",
            PASSWORD,
            REALM,
            &nonce,
            &Method::Invite,
            "sip:room@127.0.0.1",
            Algorithm::Md5,
            None
        )
    );
    assert_eq!(
        d.check(&invite("trunk", Some(&no_qop)), IP, now),
        Check::Challenge { stale: false }
    );
    // A wrong password on an old nonce is wrong, not stale.
    let old = d.nonce(now - NONCE_LIFETIME - Duration::from_secs(1), IP);
    let wrong_late = answer("trunk", "not the password at all", &old);
    assert_eq!(
        d.check(&invite("trunk", Some(&wrong_late)), IP, now),
        Check::Wrong
    );
}
