//! The first messages of a control connection, both ends: each proves the shared
//! secret bound to this connection, the node says what it offers, and the signalling
//! node accepts or refuses it. Afterwards the control stream carries heartbeats.
//!
//! The connecting node proves first. The signalling node listens for anyone, so it
//! gives no proof of its own to a peer that has not proved the secret: otherwise any
//! connection would take away an HMAC of the secret to test guesses against offline.
//! The node connects only to the address it was given, and checks the signalling
//! node's proof before it takes any request.

use std::time::Duration;

use crate::auth;
use crate::error::ControlError;
use crate::wire::{
    read_frame_within, write_frame, Challenge, Hello, Register, Welcome, MAX_HANDSHAKE_FRAME,
};

/// Longest node name accepted (names show in logs and the admin API).
pub const MAX_NAME: usize = 64;

/// The control stream, once both ends are satisfied.
#[derive(Debug)]
pub struct ControlStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// What a node offers when it registers (its proof is added here).
#[derive(Clone, Debug)]
pub struct Offer {
    pub name: String,
    pub capacity: usize,
    pub shard_addrs: Vec<std::net::SocketAddr>,
}

/// The node's side: open the control stream, prove the secret and register, then
/// check the signalling node's proof. Returns the stream and what the signalling
/// node said it takes.
pub async fn register(
    conn: &quinn::Connection,
    secret: &[u8],
    offer: &Offer,
) -> Result<(ControlStream, Welcome), String> {
    let binding = auth::channel_binding(conn)?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let nonce = auth::nonce();
    let hello = Hello {
        name: offer.name.clone(),
        nonce: nonce.clone(),
    };
    write_frame(&mut send, &hello)
        .await
        .map_err(|e| e.to_string())?;
    let challenge: Challenge = read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("signalling closed during the handshake")?;
    let register = Register {
        mac: auth::proof(secret, "node", &challenge.nonce, &binding),
        shards: offer.shard_addrs.len(),
        capacity: offer.capacity,
        shard_addrs: offer.shard_addrs.clone(),
    };
    write_frame(&mut send, &register)
        .await
        .map_err(|e| e.to_string())?;
    let welcome =
        match read_frame_within::<Result<Welcome, ControlError>>(&mut recv, MAX_HANDSHAKE_FRAME)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(Ok(welcome)) => welcome,
            Some(Err(e)) => return Err(format!("registration refused: {e}")),
            None => return Err("signalling closed during the handshake".into()),
        };
    if !auth::verify(secret, "signalling", &nonce, &binding, &welcome.mac) {
        return Err("the signalling node could not prove the shared secret: refusing it".into());
    }
    Ok((ControlStream { send, recv }, welcome))
}

/// A node the signalling node accepted.
#[derive(Debug)]
pub struct Registered {
    pub hello: Hello,
    pub register: Register,
    pub stream: ControlStream,
}

/// The signalling node's side: accept the control stream, check the node's proof over
/// our nonce, then prove the secret over the node's. A node that fails is told so
/// and closed, having learnt nothing of the secret.
pub async fn accept(
    conn: &quinn::Connection,
    secret: &[u8],
    timeout: Duration,
) -> Result<Registered, String> {
    let handshake = async {
        let binding = auth::channel_binding(conn)?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let hello: Hello = read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("node closed during the handshake")?;
        if hello.name.is_empty() || hello.name.len() > MAX_NAME {
            return Err(format!("node name must be 1 to {MAX_NAME} bytes"));
        }
        let nonce = auth::nonce();
        let challenge = Challenge {
            nonce: nonce.clone(),
        };
        write_frame(&mut send, &challenge)
            .await
            .map_err(|e| e.to_string())?;
        let register: Register = read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("node closed during the handshake")?;
        if !auth::verify(secret, "node", &nonce, &binding, &register.mac) {
            let refusal: Result<Welcome, _> =
                Err(ControlError::Unavailable("bad node secret".into()));
            let _ = write_frame(&mut send, &refusal).await;
            let _ = send.finish();
            // Let the refusal reach the node before the connection goes.
            tokio::time::sleep(Duration::from_millis(100)).await;
            conn.close(1u32.into(), b"bad secret");
            // Its name is unproven: not for the logs.
            return Err("a node failed to prove the shared secret".into());
        }
        let welcome: Result<_, ControlError> = Ok(Welcome {
            mac: auth::proof(secret, "signalling", &hello.nonce, &binding),
            quality: true,
        });
        write_frame(&mut send, &welcome)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Registered {
            hello,
            register,
            stream: ControlStream { send, recv },
        })
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
}
