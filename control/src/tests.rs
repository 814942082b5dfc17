//! Both ends of the control protocol over real QUIC on loopback: the handshake with
//! the right and a wrong secret, a request and its reply, and what a bad frame gets.
//! (The whole path, with real media nodes behind it, is signalling's multinode test.)

use std::net::SocketAddr;
use std::time::Duration;

use crate::handshake::{self, Offer};
use crate::remote::RemoteNode;
use crate::wire::{
    read_frame, write_frame, Challenge, Hello, Register, Welcome, WireError, MAX_FRAME,
};
use crate::{tls, ControlError, MediaNode, Request, Response, RoomFigures};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A signalling endpoint and a node's connection to it, both accepted.
async fn connected() -> (quinn::Endpoint, quinn::Connection, quinn::Connection) {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = quinn::Endpoint::server(tls::server_config().unwrap(), loopback).unwrap();
    let mut client = quinn::Endpoint::client(loopback).unwrap();
    client.set_default_client_config(tls::client_config().unwrap());
    let to = server.local_addr().unwrap();
    let (node_side, signalling_side) = tokio::join!(
        async {
            client
                .connect(to, "knudepunkt-signalling")
                .unwrap()
                .await
                .unwrap()
        },
        async { server.accept().await.unwrap().await.unwrap() }
    );
    (server, node_side, signalling_side)
}

fn offer() -> Offer {
    Offer {
        name: "node-a".into(),
        capacity: 500,
        shard_addrs: vec!["127.0.0.1:20000".parse().unwrap()],
    }
}

#[tokio::test]
async fn both_ends_prove_the_same_secret_and_requests_get_their_reply() {
    let (_server, node_side, signalling_side) = connected().await;
    let offer = offer();
    let (node, signalling) = tokio::join!(
        handshake::register(&node_side, b"a long shared secret", &offer),
        handshake::accept(&signalling_side, b"a long shared secret", TIMEOUT)
    );
    node.unwrap();
    let registered = signalling.unwrap();
    assert_eq!(registered.hello.name, "node-a");
    assert_eq!(registered.register.capacity, 500);
    assert_eq!(registered.register.shards, 1);

    // The node's side answers one request the way sfu's remote driver does.
    let figures = RoomFigures {
        participants: 3,
        ..RoomFigures::default()
    };
    let serve = async {
        let (mut send, mut recv) = node_side.accept_bi().await.unwrap();
        let request: Request = read_frame(&mut recv).await.unwrap().unwrap();
        let reply: crate::Reply = match request {
            Request::RoomStats { room } if room == "r1" => Ok(Response::RoomStats(figures)),
            _ => Err(ControlError::NoSuchRoom),
        };
        write_frame(&mut send, &reply).await.unwrap();
        send.finish().unwrap();
        // Keep the stream open until the reply is read.
        let _ = send.stopped().await;
    };
    let remote = RemoteNode::new(signalling_side);
    let node: &dyn MediaNode = &remote;
    let (got, ()) = tokio::join!(node.room_stats("r1"), serve);
    assert_eq!(got, Ok(figures));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_either_end() {
    // A node with the wrong secret proves first and is refused with a reason; the
    // signalling node never proves anything to it.
    let (_server, node_side, signalling_side) = connected().await;
    let offer = offer();
    let (node, signalling) = tokio::join!(
        handshake::register(&node_side, b"the node's guess", &offer),
        handshake::accept(&signalling_side, b"the real secret", TIMEOUT)
    );
    let refused = node.unwrap_err();
    assert!(refused.contains("bad node secret"), "{refused}");
    assert!(signalling.unwrap_err().contains("failed to prove"));

    // Whoever connects gets only a nonce before proving: nothing to test guesses on.
    let (_server, prober, signalling_side) = connected().await;
    let probe = async {
        let (mut send, mut recv) = prober.open_bi().await.unwrap();
        let hello = Hello {
            name: "prober".into(),
            nonce: "00".into(),
        };
        write_frame(&mut send, &hello).await.unwrap();
        let challenge: Challenge = read_frame(&mut recv).await.unwrap().unwrap();
        prober.close(0u32.into(), b"done");
        challenge
    };
    let (challenge, accepted) = tokio::join!(
        probe,
        handshake::accept(&signalling_side, b"the real secret", TIMEOUT)
    );
    assert_eq!(challenge.nonce.len(), 32);
    assert!(accepted.is_err());

    // A node that reaches an impostor (a welcome without the secret's proof) leaves.
    let (_server, node_side, impostor) = connected().await;
    let pretend = async {
        let (mut send, mut recv) = impostor.accept_bi().await.unwrap();
        let _: Hello = read_frame(&mut recv).await.unwrap().unwrap();
        let challenge = Challenge { nonce: "11".into() };
        write_frame(&mut send, &challenge).await.unwrap();
        let _: Register = read_frame(&mut recv).await.unwrap().unwrap();
        let welcome: Result<Welcome, ControlError> = Ok(Welcome {
            mac: "00".repeat(32),
            quality: true,
        });
        write_frame(&mut send, &welcome).await.unwrap();
        let _ = send.stopped().await;
    };
    let (node, ()) = tokio::join!(
        handshake::register(&node_side, b"the real secret", &offer),
        async {
            let _ = tokio::time::timeout(TIMEOUT, pretend).await;
        }
    );
    assert!(node.unwrap_err().contains("could not prove"));
}

/// An older signalling node's welcome names no quality reports: a node sends it none
/// (it would stop reading its events at the first).
#[test]
fn an_older_welcome_takes_no_quality_reports() {
    let old: Welcome = serde_json::from_str(r#"{"mac": "ab"}"#).unwrap();
    assert!(!old.quality);
    let new: Welcome = serde_json::from_str(r#"{"mac": "ab", "quality": true}"#).unwrap();
    assert!(new.quality);
}

#[tokio::test]
async fn oversized_and_malformed_frames_are_errors_not_panics() {
    let (_server, node_side, signalling_side) = connected().await;
    let (mut send, _recv) = node_side.open_bi().await.unwrap();
    let mut frame = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
    frame.extend_from_slice(b"{}");
    send.write_all(&frame).await.unwrap();
    let (_s, mut recv) = signalling_side.accept_bi().await.unwrap();
    let got = read_frame::<Request>(&mut recv).await;
    assert!(matches!(got, Err(WireError::TooLarge(n)) if n == MAX_FRAME + 1));

    let (mut send, _recv) = node_side.open_bi().await.unwrap();
    let body = b"{\"RoomStats\":{\"room\":7}}";
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    send.write_all(&frame).await.unwrap();
    let (_s, mut recv) = signalling_side.accept_bi().await.unwrap();
    let got = read_frame::<Request>(&mut recv).await;
    assert!(matches!(got, Err(WireError::Malformed(_))), "{got:?}");
}
