//! Signed webhooks (`--webhook URL`, `--webhook-secret`): a POST for each meeting
//! started (once it ran a second: told at the recorder's next tick, within about
//! five seconds) and ended, its JSON body signed with HMAC-SHA256,
//! `X-Knudepunkt-Signature: t=UNIX,v1=HEX` over `UNIX.BODY` (the time keeps an old
//! notice from being replayed as new). Sent from a queue of their own, in order,
//! each tried again after 1, 2, 4, 8 and 16 s (not after a 4xx but 408 and 429: a
//! refusal); never in a join's way: a full queue drops the notice (counted).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{Record, Started};

/// Notices waiting to be sent: beyond, they are dropped.
const QUEUED: usize = 1024;
/// Tries of one notice, the waits between them doubling from the first.
const TRIES: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// How long one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a webhook is told.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    MeetingStarted(Started),
    MeetingEnded(Record),
}

/// Where notices go, and the counter of how they went.
#[derive(Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Notice>,
    results: prometheus::IntCounterVec,
}

impl Webhook {
    /// Start sending to `url`, signing with `secret`; `results` counts each notice's
    /// fate (`delivered`, `retried` per failed try, `failed` after the last, `dropped`).
    pub fn start(url: String, secret: &[u8], results: prometheus::IntCounterVec) -> Webhook {
        let (queue, notices) = mpsc::channel(QUEUED);
        let key = secret.to_vec();
        tokio::spawn(send(url, key, notices, results.clone()));
        Webhook { queue, results }
    }

    /// Queue a notice (never waits).
    pub fn tell(&self, notice: Notice) {
        if self.queue.try_send(notice).is_err() {
            self.results.with_label_values(&["dropped"]).inc();
        }
    }
}

/// The signature header's value for `body` at `unix` seconds.
pub fn signature(key: &[u8], unix: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix},v1={hex}")
}

async fn send(
    url: String,
    key: Vec<u8>,
    mut notices: mpsc::Receiver<Notice>,
    results: prometheus::IntCounterVec,
) {
    let http = reqwest::Client::builder()
        .timeout(TRY_TIMEOUT)
        .build()
        .unwrap_or_default();
    while let Some(notice) = notices.recv().await {
        let body = serde_json::to_vec(&notice).expect("a notice serializes");
        let mut wait = FIRST_WAIT;
        for attempt in 1..=TRIES {
            let unix = super::now_ms() / 1000;
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-knudepunkt-signature", signature(&key, unix, &body))
                .body(body.clone())
                .send()
                .await;
            // A refusal (4xx but a timeout or "too many") will not change: no retry.
            let why = match &sent {
                Ok(r) if r.status().is_success() => {
                    results.with_label_values(&["delivered"]).inc();
                    break;
                }
                Ok(r) => r.status().to_string(),
                Err(e) if e.is_timeout() => "timed out".into(),
                Err(e) if e.is_connect() => "could not connect".into(),
                Err(_) => "request failed".into(),
            };
            let refused = matches!(&sent, Ok(r) if r.status().is_client_error()
                && !matches!(r.status().as_u16(), 408 | 429));
            if attempt == TRIES || refused {
                results.with_label_values(&["failed"]).inc();
                tracing::warn!(attempt, "a meeting webhook was not taken: {why}");
                break;
            }
            results.with_label_values(&["retried"]).inc();
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_time_and_body() {
        // HMAC-SHA256("Jefe", "1.what do ya want for nothing?"), from Python's hmac.
        assert_eq!(
            super::signature(b"Jefe", 1, b"what do ya want for nothing?"),
            "t=1,v1=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        let a = super::signature(b"key", 1, b"{}");
        assert!(
            a.starts_with("t=1,v1=") && a.len() == "t=1,v1=".len() + 64,
            "{a}"
        );
        assert_ne!(a, super::signature(b"key", 2, b"{}"));
        assert_ne!(a, super::signature(b"other", 1, b"{}"));
        assert_ne!(a, super::signature(b"key", 1, b"{ }"));
    }
}
