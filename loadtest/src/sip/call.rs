//! The SIP side of a load-generator leg: one INVITE dialog over UDP, as a room system
//! places it (RFC 3261): INVITE with an offer, retransmitted until answered; ACK; each
//! request the gateway sends in the dialog (OPTIONS, INFO, a refresh, BYE) answered;
//! BYE at the end. Messages are parsed with rsipstack's parser, the gateway's own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytesstr::BytesStr;
use ezk_sdp_types::{MediaType, SessionDescription, TaggedAddress};
use rsipstack::sip::{HasHeaders, Header, HeadersExt, Method, Request, Response, SipMessage};
use tokio::net::UdpSocket;

/// RFC 3261's T1: the first retransmission interval of a request over UDP.
const T1: Duration = Duration::from_millis(500);
/// How long an INVITE may go unanswered (a final response) before the leg gives up.
const INVITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the gateway takes the leg's media, from its answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answer {
    pub audio: SocketAddr,
    /// Video's address and payload type, if the gateway took the video m-line.
    pub video: Option<(SocketAddr, u8)>,
}

/// What a datagram on the SIP socket meant for the leg.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Nothing,
    /// The gateway ended the call (BYE).
    HungUp,
    /// The gateway asked for a keyframe (SIP INFO `picture_fast_update`, RFC 5168).
    Keyframe,
}

/// One call from the leg's SIP socket to the gateway.
pub struct Dialog {
    socket: UdpSocket,
    gateway: SocketAddr,
    local: SocketAddr,
    /// The room's URI (the INVITE's request URI and To).
    uri: String,
    /// Where requests in the dialog go: the gateway's Contact from its 200.
    target: String,
    user: String,
    call_id: String,
    from_tag: String,
    to_tag: String,
    cseq: u32,
    offer: String,
    /// The ACK sent for the 200, sent again if the 200 comes again.
    ack: Vec<u8>,
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Dialog {
    /// Call `room` at the gateway with `offer`: the dialog and where to send media,
    /// or why the call failed (a final response other than 2xx, or none in time, nor
    /// by `deadline`).
    pub async fn invite(
        socket: UdpSocket,
        gateway: SocketAddr,
        room: &str,
        id: u32,
        offer: String,
        deadline: Instant,
    ) -> Result<(Dialog, Answer), String> {
        let local = socket
            .local_addr()
            .map_err(|e| format!("sip socket: {e}"))?;
        let mut d = Dialog {
            socket,
            gateway,
            local,
            uri: format!("sip:{room}@{gateway}"),
            target: format!("sip:{room}@{gateway}"),
            user: format!("lt{id}"),
            call_id: format!("{}@{}", token(), local.ip()),
            from_tag: token(),
            to_tag: String::new(),
            cseq: 1,
            offer,
            ack: Vec::new(),
        };
        let branch = format!("z9hG4bK{}", token());
        let invite = d.request("INVITE", &d.uri, &branch, Some(&d.offer));
        let started = Instant::now();
        let give_up = (started + INVITE_TIMEOUT).min(deadline);
        let mut next_send = started;
        let mut interval = T1;
        let mut provisional = false;
        let mut buf = vec![0u8; 65_535];
        loop {
            let now = Instant::now();
            if now >= give_up {
                return Err("the gateway did not answer the INVITE".into());
            }
            if !provisional && now >= next_send {
                d.send(&invite).await?;
                next_send = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let wait = if provisional {
                give_up
            } else {
                next_send.min(give_up)
            };
            let Ok(r) = tokio::time::timeout_at(wait.into(), d.socket.recv_from(&mut buf)).await
            else {
                continue;
            };
            let (n, _) = r.map_err(|e| format!("sip socket: {e}"))?;
            let Ok(SipMessage::Response(resp)) = SipMessage::try_from(&buf[..n]) else {
                continue;
            };
            if !d.ours(&resp, "INVITE") {
                continue;
            }
            let code = resp.status_code.code();
            if code < 200 {
                provisional = true;
                continue;
            }
            d.to_tag = to_tag(&resp).unwrap_or_default();
            if code >= 300 {
                // A non-2xx final response is acknowledged within its transaction.
                let ack = d.request("ACK", &d.uri, &branch, None);
                d.send(&ack).await?;
                // Why, as the gateway says it (RFC 3261 Warning: code, agent, "text").
                let warning = resp.headers().iter().find_map(|h| match h {
                    Header::Warning(w) => Some(w.value().to_owned()),
                    _ => None,
                });
                let reason = resp.wire_reason.clone().unwrap_or_default();
                let why = warning.map(|w| format!(": {w}")).unwrap_or_default();
                return Err(format!("the gateway answered {code} {reason}{why}"));
            }
            // Requests in the dialog go to the gateway's Contact (RFC 3261 §12.1.2).
            if let Some(contact) = resp.contact_header().ok().map(|c| c.value().to_owned()) {
                let uri = match (contact.find('<'), contact.find('>')) {
                    (Some(a), Some(b)) if a < b => &contact[a + 1..b],
                    _ => contact.split(';').next().unwrap_or_default(),
                };
                if uri.starts_with("sip:") {
                    d.target = uri.trim().to_owned();
                }
            }
            d.ack = d.request(
                "ACK",
                &d.target.clone(),
                &format!("z9hG4bK{}", token()),
                None,
            );
            d.send(&d.ack.clone()).await?;
            return match parse_answer(resp.body()) {
                Ok(answer) => Ok((d, answer)),
                Err(e) => {
                    // Answered with what cannot be used: the call is up, so hang up.
                    d.bye().await;
                    Err(e)
                }
            };
        }
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// A datagram that came on the SIP socket: requests in the dialog are answered
    /// (a refresh with the leg's offer again), a repeated 200 acknowledged again.
    pub async fn on_datagram(&mut self, data: &[u8]) -> Result<Incoming, String> {
        let msg = match SipMessage::try_from(data) {
            Ok(m) => m,
            Err(_) => return Ok(Incoming::Nothing),
        };
        let req = match msg {
            SipMessage::Response(resp) => {
                if self.ours(&resp, "INVITE") && resp.status_code.code() == 200 {
                    self.send(&self.ack.clone()).await?;
                }
                return Ok(Incoming::Nothing);
            }
            SipMessage::Request(req) => req,
        };
        let body = match req.method {
            Method::Invite | Method::Update if !req.body.is_empty() => {
                Some(self.offer.clone().into_bytes())
            }
            _ => None,
        };
        let incoming = match req.method {
            Method::Bye => Incoming::HungUp,
            Method::Info if String::from_utf8_lossy(&req.body).contains("picture_fast_update") => {
                Incoming::Keyframe
            }
            _ => Incoming::Nothing,
        };
        if req.method != Method::Ack {
            let resp = self.response(&req, body);
            self.send(&resp).await?;
        }
        Ok(incoming)
    }

    /// Hang up: BYE, retransmitted until the gateway answers it (or a few seconds).
    pub async fn bye(&mut self) {
        self.cseq += 1;
        let target = self.target.clone();
        let bye = self.request("BYE", &target, &format!("z9hG4bK{}", token()), None);
        let mut buf = vec![0u8; 65_535];
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if self.send(&bye).await.is_err() {
                return;
            }
            let wait = (Instant::now() + T1).min(until);
            while let Ok(Ok((n, _))) =
                tokio::time::timeout_at(wait.into(), self.socket.recv_from(&mut buf)).await
            {
                match SipMessage::try_from(&buf[..n]) {
                    Ok(SipMessage::Response(r)) if self.ours(&r, "BYE") => return,
                    // An ACK is never answered.
                    Ok(SipMessage::Request(r)) if r.method != Method::Ack => {
                        let resp = self.response(&r, None);
                        let _ = self.send(&resp).await;
                        if r.method == Method::Bye {
                            return; // both hung up at once
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    async fn send(&self, msg: &[u8]) -> Result<(), String> {
        self.socket
            .send_to(msg, self.gateway)
            .await
            .map(|_| ())
            .map_err(|e| format!("sip socket: {e}"))
    }

    /// A response of this dialog to our latest `method` request.
    fn ours(&self, resp: &Response, method: &str) -> bool {
        let call = resp.call_id_header().map(|c| c.value().to_owned());
        let cseq = resp.cseq_header().map(|c| c.value().to_owned());
        call.is_ok_and(|c| c == self.call_id)
            && cseq.is_ok_and(|c| c == format!("{} {method}", self.cseq))
    }

    fn request(&self, method: &str, uri: &str, branch: &str, sdp: Option<&str>) -> Vec<u8> {
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let (body, kind) = match sdp {
            Some(s) => (s, "Content-Type: application/sdp\r\n"),
            None => ("", ""),
        };
        // An ACK carries its INVITE's number (the dialog's first request, 1).
        let cseq = if method == "ACK" { 1 } else { self.cseq };
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Load {user}\" <sip:{user}@{ip}>;tag={from_tag}\r\n\
             To: <{target}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@{local}>\r\n\
             User-Agent: knudepunkt-loadtest\r\n\
             {kind}Content-Length: {len}\r\n\r\n{body}",
            local = self.local,
            user = self.user,
            ip = self.local.ip(),
            from_tag = self.from_tag,
            target = self.uri,
            call_id = self.call_id,
            len = body.len(),
        )
        .into_bytes()
    }

    /// 200 OK to a request of the gateway's, with `body` (an SDP) if given.
    fn response(&self, req: &Request, body: Option<Vec<u8>>) -> Vec<u8> {
        let mut headers = req.headers().clone();
        headers.retain(|h| {
            matches!(
                h,
                Header::Via(_)
                    | Header::CallId(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CSeq(_)
            )
        });
        if body.is_some() {
            headers.push(Header::ContentType("application/sdp".to_owned().into()));
            headers.push(Header::Contact(
                format!("<sip:{}@{}>", self.user, self.local).into(),
            ));
        }
        headers.push(Header::ContentLength(
            body.as_ref().map_or(0u32, |b| b.len() as u32).into(),
        ));
        Response {
            status_code: 200.into(),
            wire_reason: None,
            version: req.version,
            headers,
            body: body.unwrap_or_default(),
        }
        .to_bytes()
    }
}

fn to_tag(resp: &Response) -> Option<String> {
    let to = resp.to_header().ok()?.value().to_owned();
    let at = to.find(";tag=")? + 5;
    Some(to[at..].split([';', ' ', '>']).next()?.to_owned())
}

/// The leg's offer: PCMA audio on `audio_port`, VP8 video on `video_port` with RTCP
/// keyframe requests and RTCP on the same port, as a room system offers them.
pub fn offer(ip: std::net::IpAddr, audio_port: u16, video_port: u16) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let session = rand::random::<u32>();
    format!(
        "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {audio_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n\
         m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-mux\r\na=sendrecv\r\n"
    )
}

/// Where the gateway's answer takes audio and video.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(body).into_owned();
    let sdp = SessionDescription::parse(&BytesStr::from(text))
        .map_err(|e| format!("the gateway's answer is not SDP: {e}"))?;
    let mut audio = None;
    let mut video = None;
    for m in &sdp.media_descriptions {
        let Some(conn) = m.connection.as_ref().or(sdp.connection.as_ref()) else {
            continue;
        };
        let ip: std::net::IpAddr = match conn.address {
            TaggedAddress::IP4(ip) => ip.into(),
            TaggedAddress::IP6(ip) => ip.into(),
            _ => continue,
        };
        if m.media.port == 0 {
            continue;
        }
        let at = SocketAddr::new(ip, m.media.port);
        match m.media.media_type {
            MediaType::Audio => audio = audio.or(Some(at)),
            MediaType::Video => {
                let pt = m.media.fmts.first().copied().unwrap_or(96);
                video = video.or(Some((at, pt)));
            }
            _ => {}
        }
    }
    let audio = audio.ok_or("the gateway's answer has no audio")?;
    Ok(Answer { audio, video })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_where_audio_and_video_go() {
        let answer = "v=0\r\no=knudepunkt 1 1 IN IP4 127.0.0.1\r\ns=knudepunkt\r\n\
                      c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n\
                      a=rtpmap:8 PCMA/8000\r\nm=video 4002 RTP/AVP 100\r\n\
                      a=rtpmap:100 VP8/90000\r\n";
        let a = parse_answer(answer.as_bytes()).unwrap();
        assert_eq!(a.audio, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(a.video, Some(("127.0.0.1:4002".parse().unwrap(), 100)));
        let refused = answer.replace("m=video 4002", "m=video 0");
        assert_eq!(parse_answer(refused.as_bytes()).unwrap().video, None);
        assert!(parse_answer(b"not sdp").is_err());
    }

    #[test]
    fn the_offer_is_sdp_the_answer_reader_reads() {
        let o = offer([127, 0, 0, 1].into(), 5000, 5002);
        let a = parse_answer(o.as_bytes()).unwrap();
        assert_eq!(a.audio.port(), 5000);
        assert_eq!(a.video.map(|v| v.0.port()), Some(5002));
    }
}
