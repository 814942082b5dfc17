//! Participants of the multi-process tests: the load generator's client peer
//! (`client::websocket::Session`) with what it measured, run together.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

/// Poll `cond` every 50 ms for up to `limit`.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// One participant: its session and what it measured.
pub struct Member {
    pub session: client::websocket::Session,
    pub measure: client::stats::Measure,
    pub id: u32,
}

impl Member {
    pub async fn join(env: &client::env::Env, room: &str, id: u32) -> Member {
        let token = client::websocket::token(env, room, &format!("m{id}"))
            .await
            .expect("token");
        let mut session = client::websocket::Session::join(env, room, &token, id, false)
            .await
            .unwrap_or_else(|e| panic!("{id} joins: {e}"));
        session.keep_events();
        Member {
            session,
            measure: client::stats::Measure::new(Instant::now()),
            id,
        }
    }

    pub fn video_from(&self, sender: u32) -> u64 {
        self.measure
            .streams
            .get(&(sender, client::stats::StreamKind::Video))
            .map_or(0, |s| s.layer_frames.iter().sum())
    }

    pub fn saw(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.session
            .events
            .iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

/// Run everyone's media and signalling for `d`; each must last it.
pub async fn run_all(env: &client::env::Env, members: &mut [Member], d: Duration) {
    let until = Instant::now() + d;
    let runs = members.iter_mut().map(|m| async move {
        let end = m.session.run(env, until, &mut m.measure).await;
        assert!(
            matches!(end, Ok(client::websocket::End::Deadline)),
            "participant {} ended early: {end:?}",
            m.id
        );
    });
    join_all(runs).await;
}
