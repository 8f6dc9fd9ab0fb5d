//! Team admission, `/weft/admit/1`: a mutual challenge–response, bound to both PeerIds, that
//! proves each side knows the team secret without revealing it.
//!
//! Protocol flow (I = the side that dialed the connection, R = the side that accepted it; the
//! PeerIds are the ones QUIC's TLS handshake authenticated, never bytes from the stream):
//!
//! 1. on a new connection to a peer that is not admitted, I opens a stream and sends its
//!    [`Handshake`](weft_protocol::wire::Handshake) and a fresh 32-byte random `nonce_i`;
//! 2. R sends its handshake, a fresh `nonce_r`, and
//!    `mac_r = blake3_keyed(K, "responder" ‖ I ‖ R ‖ nonce_i ‖ nonce_r)`, where
//!    `K = blake3_derive_key("weft 2026 team admission v1", secret)`, the team's
//!    [`AdmissionKey`](super::team::AdmissionKey);
//! 3. I checks `mac_r` (constant-time). When it matches, I sends the verdict byte `1` and
//!    `mac_i = blake3_keyed(K, "initiator" ‖ I ‖ R ‖ nonce_i ‖ nonce_r)`; otherwise it sends
//!    `0`, blocks R and stops;
//! 4. R checks `mac_i` and answers with its verdict byte: `1` when it matches, `0` (and a
//!    block) otherwise;
//! 5. I reads the verdict: `1` completes admission, `0` blocks R.
//!
//! Each side *accepts* the other (serves its streams, stops gossipsub ignoring it) as soon as
//! it has checked the other's proof, and before it sends anything that lets the other side
//! finish: I before step 3's `mac_i`, R before step 4's `1`. Each side announces
//! [`MeshEvent::PeerAdmitted`](super::MeshEvent) only once it knows the other accepted it (R
//! after step 4, I after step 5), so whatever it sends from then on is not dropped.
//!
//! The role tags keep one side's proof from being replayed as the other's, the two PeerIds keep
//! a proof from being relayed to a third node, and the two nonces keep it from being replayed
//! later. A peer whose proof is wrong, or that refuses ours, is disconnected and blocked for
//! [`BLOCK_DURATION`](super::config::BLOCK_DURATION); a stream that breaks only disconnects it.
//! A peer that never completes admission is dropped after
//! [`ADMISSION_DEADLINE`](super::config::ADMISSION_DEADLINE). Until a peer is admitted no other
//! weft protocol answers it, and gossipsub ignores it.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use rand::RngCore;
use tokio::sync::oneshot;
use tracing::Instrument;
use weft_protocol::wire::{Handshake, Role};

use super::events::Command;
use super::frames::{self, StreamError};
use super::state::Shared;
use super::team::NONCE_LEN;

/// The admission protocol's name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/admit/1");

/// How long one admission exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a refusal waits for the peer to read it.
const REFUSE_LINGER: Duration = Duration::from_secs(2);

const MAC_LEN: usize = 32;
const ACCEPT: u8 = 1;
const REFUSE: u8 = 0;

/// How an admission exchange ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Both sides proved membership.
    Admitted,
    /// The peer's proof was wrong, or it refused ours: block it.
    Refused(String),
    /// The exchange broke off (stream error, timeout): disconnect, but do not block.
    Broken(String),
}

/// Runs admission as the initiator against `peer`, and reports the outcome to the swarm task.
pub(crate) async fn initiate(shared: std::sync::Arc<Shared>, peer: PeerId) {
    let span = tracing::debug_span!("admit", %peer, role = "initiator");
    async {
        let outcome = match shared.control.clone().open_stream(peer, PROTOCOL).await {
            Ok(mut stream) => {
                let run = run_initiator(&shared, peer, &mut stream);
                let outcome = match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Broken("admission timed out".to_owned()),
                };
                let _ = stream.close().await;
                outcome
            }
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {
                Outcome::Refused("it does not speak weft's admission protocol".to_owned())
            }
            Err(err) => Outcome::Broken(format!("cannot open an admission stream: {err}")),
        };
        report(&shared, peer, outcome);
    }
    .instrument(span)
    .await;
}

/// Answers an admission stream from `peer`, and reports the outcome to the swarm task.
pub(crate) async fn respond(shared: std::sync::Arc<Shared>, peer: PeerId, mut stream: Stream) {
    let span = tracing::debug_span!("admit", %peer, role = "responder");
    async {
        let run = run_responder(&shared, peer, &mut stream);
        let outcome = match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Broken("admission timed out".to_owned()),
        };
        let _ = stream.close().await;
        report(&shared, peer, outcome);
    }
    .instrument(span)
    .await;
}

fn report(shared: &Shared, peer: PeerId, outcome: Outcome) {
    match outcome {
        Outcome::Admitted => {
            shared.command(Command::Admitted { peer });
        }
        Outcome::Refused(reason) => {
            tracing::warn!(%peer, %reason, "admission refused");
            shared.command(Command::AdmissionFailed {
                peer,
                reason,
                block: true,
            });
        }
        Outcome::Broken(reason) => {
            tracing::info!(%peer, %reason, "admission broke off");
            shared.command(Command::AdmissionFailed {
                peer,
                reason,
                block: false,
            });
        }
    }
}

/// Accepts `peer`, whose proof we checked: marks it admitted, and waits until the swarm task has
/// stopped ignoring its gossip. Only then may the peer learn that we accept it, so that nothing
/// it sends after that is dropped.
async fn accept(shared: &Shared, peer: PeerId) {
    if shared.set_admitted(&peer) {
        let (ack, acked) = oneshot::channel();
        if shared.command(Command::Accepted { peer, ack }) {
            let _ = acked.await;
        }
    }
}

/// Tells the peer we refuse it, and waits (briefly) until it has read that and closed its side:
/// blocking it closes the connection, which could otherwise overtake the verdict.
async fn refuse(stream: &mut Stream) {
    if frames::write_all(stream, &[REFUSE]).await.is_err() {
        return;
    }
    let _ = stream.close().await;
    let mut rest = [0u8; 64];
    let drain = async {
        while let Ok(n) = stream.read(&mut rest).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_LINGER, drain).await;
}

fn broken(err: StreamError) -> Outcome {
    match err {
        StreamError::Eof => Outcome::Broken("the peer closed the admission stream".to_owned()),
        StreamError::Io(err) => Outcome::Broken(format!("admission stream failed: {err}")),
        StreamError::Handshake(err) => Outcome::Refused(err.to_string()),
        StreamError::Wire(err) => Outcome::Refused(err.to_string()),
    }
}

async fn run_initiator(shared: &Shared, peer: PeerId, stream: &mut Stream) -> Outcome {
    let (initiator, responder) = (shared.local, peer);
    let mut nonce_i = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce_i);
    let mut opening = Vec::with_capacity(64);
    opening.extend_from_slice(&Handshake::ours(Role::Peer).encode());
    opening.extend_from_slice(&nonce_i);
    if let Err(err) = frames::write_all(stream, &opening).await {
        return broken(err.into());
    }
    if let Err(err) = frames::read_handshake(stream).await {
        return broken(err);
    }
    let mut answer = [0u8; NONCE_LEN + MAC_LEN];
    if let Err(err) = stream.read_exact(&mut answer).await {
        return broken(err.into());
    }
    let mut nonce_r = [0u8; NONCE_LEN];
    nonce_r.copy_from_slice(&answer[..NONCE_LEN]);
    let mut mac_r = [0u8; MAC_LEN];
    mac_r.copy_from_slice(&answer[NONCE_LEN..]);
    let expected = shared
        .key
        .mac(b"responder", &initiator, &responder, &nonce_i, &nonce_r);
    // `blake3::Hash` compares in constant time.
    if expected != blake3::Hash::from_bytes(mac_r) {
        refuse(stream).await;
        return Outcome::Refused("its team proof is wrong: it is not in our team".to_owned());
    }
    accept(shared, peer).await;
    let mac_i = shared
        .key
        .mac(b"initiator", &initiator, &responder, &nonce_i, &nonce_r);
    let mut proof = [0u8; 1 + MAC_LEN];
    proof[0] = ACCEPT;
    proof[1..].copy_from_slice(mac_i.as_bytes());
    if let Err(err) = frames::write_all(stream, &proof).await {
        return broken(err.into());
    }
    let mut verdict = [0u8; 1];
    if let Err(err) = stream.read_exact(&mut verdict).await {
        return broken(err.into());
    }
    match verdict[0] {
        ACCEPT => Outcome::Admitted,
        _ => Outcome::Refused("it refused our team proof: it is not in our team".to_owned()),
    }
}

async fn run_responder(shared: &Shared, peer: PeerId, stream: &mut Stream) -> Outcome {
    let (initiator, responder) = (peer, shared.local);
    if let Err(err) = frames::read_handshake(stream).await {
        return broken(err);
    }
    let mut nonce_i = [0u8; NONCE_LEN];
    if let Err(err) = stream.read_exact(&mut nonce_i).await {
        return broken(err.into());
    }
    let mut nonce_r = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce_r);
    let mac_r = shared
        .key
        .mac(b"responder", &initiator, &responder, &nonce_i, &nonce_r);
    let mut answer = Vec::with_capacity(12 + NONCE_LEN + MAC_LEN);
    answer.extend_from_slice(&Handshake::ours(Role::Peer).encode());
    answer.extend_from_slice(&nonce_r);
    answer.extend_from_slice(mac_r.as_bytes());
    if let Err(err) = frames::write_all(stream, &answer).await {
        return broken(err.into());
    }
    let mut verdict = [0u8; 1];
    if let Err(err) = stream.read_exact(&mut verdict).await {
        return broken(err.into());
    }
    if verdict[0] != ACCEPT {
        return Outcome::Refused("it refused our team proof: it is not in our team".to_owned());
    }
    let mut mac_i = [0u8; MAC_LEN];
    if let Err(err) = stream.read_exact(&mut mac_i).await {
        return broken(err.into());
    }
    let expected = shared
        .key
        .mac(b"initiator", &initiator, &responder, &nonce_i, &nonce_r);
    if expected != blake3::Hash::from_bytes(mac_i) {
        refuse(stream).await;
        return Outcome::Refused("its team proof is wrong: it is not in our team".to_owned());
    }
    // Accept before saying so: the initiator may talk the moment it reads the verdict.
    accept(shared, peer).await;
    if let Err(err) = frames::write_all(stream, &[ACCEPT]).await {
        return broken(err.into());
    }
    Outcome::Admitted
}
