//! WHIP (publish) and WHEP (view) clients: the peer's SDP offer POSTed with a bearer
//! token, the answer and the session's resource URL back (RFC 9725 and the WHEP
//! draft); a DELETE of that URL ends the session.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};

use crate::env::Env;
use crate::udp::UdpPeer;

/// POST an SDP offer to `url`: the answer and the `Location` of the session, or the
/// status and body of a refusal (status 0: no HTTP answer at all).
pub async fn post_offer(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    offer: &str,
) -> Result<(SdpAnswer, String), (u16, String)> {
    let r = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .map_err(|e| (0, format!("POST {url}: {e}")))?;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = r.text().await.map_err(|e| (status, e.to_string()))?;
    if status != 201 {
        return Err((status, body));
    }
    let answer = SdpAnswer::from_sdp_string(&body)
        .map_err(|e| (status, format!("the answer is not SDP: {e}")))?;
    let location = location.ok_or((status, "no Location header".to_owned()))?;
    Ok((answer, location))
}

/// End the session at `url` (its `Location`, made absolute): the status.
pub async fn delete(http: &reqwest::Client, url: &str, token: &str) -> Result<u16, String> {
    let r = http
        .delete(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("DELETE {url}: {e}"))?;
    Ok(r.status().as_u16())
}

/// Publish over WHIP at `url` as probe sender `id`: the peer, sending, and the
/// session's `Location`.
pub async fn publish(
    env: &Env,
    url: &str,
    token: &str,
    id: u32,
    loud: bool,
) -> Result<(UdpPeer, String), (u16, String)> {
    let mut udp = UdpPeer::new(env).map_err(|e| (0, e))?;
    let (offer, pending, mids) = udp.peer.publishing_offer().map_err(|e| (0, e))?;
    let location = negotiate(env, url, token, &mut udp, offer, pending).await?;
    udp.peer
        .start_sending(env, mids, id, loud, Instant::now())
        .map_err(|e| (0, e))?;
    Ok((udp, location))
}

/// View over WHEP at `url`: the receiving peer and the session's `Location`.
pub async fn view(env: &Env, url: &str, token: &str) -> Result<(UdpPeer, String), (u16, String)> {
    let mut udp = UdpPeer::new(env).map_err(|e| (0, e))?;
    let (offer, pending) = udp.peer.viewing_offer().map_err(|e| (0, e))?;
    let location = negotiate(env, url, token, &mut udp, offer, pending).await?;
    Ok((udp, location))
}

/// The offer POSTed, its answer applied: the session's `Location`.
async fn negotiate(
    env: &Env,
    url: &str,
    token: &str,
    udp: &mut UdpPeer,
    offer: SdpOffer,
    pending: SdpPendingOffer,
) -> Result<String, (u16, String)> {
    let (answer, location) = post_offer(&env.http, url, token, &offer.to_sdp_string()).await?;
    udp.peer
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| (0, format!("answer: {e}")))?;
    Ok(location)
}
