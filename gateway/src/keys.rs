//! Keys a caller presses outside the RTP: SIP INFO (RFC 6086) with a dtmf-relay body
//! (`application/dtmf-relay`: `Signal=5` and `Duration=160` lines, as Cisco and
//! Polycom room systems and most PBXs send it) or a bare `application/dtmf` key.
//! In-band RFC 4733 events are the call's own (`call::digit`).

/// The key an INFO body carries, if its content type is one of the above and the key
/// is one of `0`-`9`, `*`, `#`, `A`-`D`. Anything else (picture_fast_update, media
/// control XML, a malformed body) is no key.
pub fn from_info(content_type: &str, body: &[u8]) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = std::str::from_utf8(body).ok()?;
    let key = match ct.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (name, value) = l.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    let mut chars = key.chars();
    let k = chars.next()?.to_ascii_uppercase();
    // Some senders name the event by number (RFC 4733's: 10 is *, 11 is #).
    let k = match (k, chars.as_str()) {
        (k, "") => k,
        ('1', "0") => '*',
        ('1', "1") => '#',
        _ => return None,
    };
    matches!(k, '0'..='9' | '*' | '#' | 'A'..='D').then_some(k)
}

/// Whether an INFO asks for a keyframe of the caller's video: RFC 5168's
/// `picture_fast_update` in `application/media_control+xml`.
pub fn is_picture_fast_update(content_type: &str, body: &[u8]) -> bool {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    ct.eq_ignore_ascii_case("application/media_control+xml")
        && body.windows(19).any(|w| w == b"picture_fast_update")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_picture_fast_update_is_told_from_keys() {
        let body = b"<?xml version=\"1.0\"?><media_control><vc_primitive><to_encoder>\
            <picture_fast_update/></to_encoder></vc_primitive></media_control>";
        assert!(super::is_picture_fast_update(
            "application/media_control+xml",
            body
        ));
        assert!(!super::is_picture_fast_update(
            "application/dtmf-relay",
            body
        ));
        assert!(!super::is_picture_fast_update(
            "application/media_control+xml",
            b"<x/>"
        ));
        assert_eq!(
            super::from_info("application/media_control+xml", body),
            None
        );
    }

    use super::from_info;

    #[test]
    fn dtmf_relay_and_dtmf_bodies() {
        let relay = |b: &str| from_info("application/dtmf-relay", b.as_bytes());
        assert_eq!(relay("Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(relay("Signal= #\r\nDuration= 250\r\n"), Some('#'));
        assert_eq!(relay("signal=*\n"), Some('*'));
        assert_eq!(relay("Signal=11\r\nDuration=100"), Some('#'));
        assert_eq!(relay("Signal=d\r\n"), Some('D'));
        assert_eq!(relay("Duration=160\r\n"), None);
        assert_eq!(relay("Signal=55\r\n"), None);
        assert_eq!(relay("Signal=x\r\n"), None);
        assert_eq!(relay("Signal=\r\n"), None);
        assert_eq!(from_info("application/dtmf", b"7\r\n"), Some('7'));
        assert_eq!(
            from_info("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Some('0')
        );
        assert_eq!(
            from_info("application/media_control+xml", b"<picture_fast_update/>"),
            None
        );
        assert_eq!(from_info("application/dtmf-relay", &[0xff, 0xfe]), None);
    }
}
