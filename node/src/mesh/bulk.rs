//! The bulk lane: large blobs over TLS 1.3 on kernel TCP, beside the QUIC connection.
//!
//! Why a second transport: QUIC in user space moves large blobs several times slower than TLS
//! on kernel TCP (libp2p's TLS fixes ChaCha20-Poly1305 as its cipher, and each 1.4 KB packet is
//! encrypted, acknowledged and paced in user space, while TCP leaves that to the kernel and
//! the lane's TLS uses AES-GCM); `bench/RESULTS.md` has the measurements. Everything else
//! (gossip, requests, small blobs) stays on QUIC, and any failure of the lane itself falls back
//! to it, for that peer for a few minutes
//! ([`UNAVAILABLE_FOR`](super::bulk_tls::UNAVAILABLE_FOR)).
//!
//! Protocol flow:
//!
//! 1. every node listens on TCP at the port number of its QUIC listener;
//! 2. for a blob of at least [`BULK_MIN`] bytes, the client connects to the peer's IP at that
//!    port and runs a TLS 1.3 handshake in which both sides present their libp2p identity
//!    certificate (`libp2p_tls::certificate`: a self-signed certificate whose extension is
//!    signed by the node's ed25519 key; [`BulkTls`]). Each side checks the other's certificate and takes
//!    the PeerId from it: the client requires the peer it meant to reach, the server an
//!    admitted team member (admission ran on the QUIC connection), and otherwise closes;
//! 3. then, as on `/weft/blob/1`: the client's handshake and [`PeerMessage::BlobRequest`];
//!    the server's handshake and [`PeerMessage::BlobHeader`] (or `BlobMissing`), then the raw
//!    bytes; the client streams them into `Store::put_reader` with the expected digest, so a
//!    corrupt blob is rejected before anyone sees it and counts against the peer.
//!
//! Both ends run on blocking threads: a transfer is a loop of `read`, decrypt, hash and
//! `write`, which the kernel and rustls do best without an async runtime in between.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libp2p::PeerId;
use libp2p::multiaddr::Protocol;
use tokio::sync::watch;
use weft_protocol::Digest;
use weft_protocol::wire::{self, HANDSHAKE_LEN, Handshake, PeerMessage, Role};
use weft_store::StoreError;

use super::bulk_tls::{BulkTls, peer_of_connection};
use super::error::{FetchError, NetError};
use super::state::{Counters, Shared};

/// Blobs at least this large go over the bulk lane when the peer has one. Below it, the TCP
/// and TLS handshakes cost more than QUIC's slower bytes.
pub(crate) const BULK_MIN: u64 = 4 << 20;

/// How long connecting and the TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a transfer may go without a byte either way.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bulk connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// The size of each read and write.
const CHUNK: usize = 1 << 20;

/// Where `peer`'s bulk lane should be: the IP of our connection to it, at the port of its
/// QUIC listener on that IP (or of the connection, since QUIC dials from its listening
/// socket). `None` when we have no connection to it.
pub(crate) fn bulk_addr(shared: &Shared, peer: &PeerId) -> Option<SocketAddr> {
    let peers = shared.peers();
    let entry = peers.get(peer)?;
    let (ip, conn_port) = entry.conn_addrs.iter().find_map(ip_and_udp_port)?;
    let port = entry
        .listen_addrs
        .iter()
        .filter_map(ip_and_udp_port)
        .find(|(listen_ip, _)| *listen_ip == ip)
        .map_or(conn_port, |(_, port)| port);
    Some(SocketAddr::new(ip, port))
}

fn ip_and_udp_port(addr: &libp2p::Multiaddr) -> Option<(IpAddr, u16)> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Udp(port) => Some((ip, port)),
        _ => None,
    }
}

/// Fetches the blob `digest` of `size` bytes from `peer` over its bulk lane, when both sides
/// have one. `None` when the lane could not be used (nothing listens there, TLS failed, the
/// wrong node answered, the peer refused us): the caller fetches over QUIC, which reports
/// such problems properly.
pub(crate) async fn fetch_blob(
    shared: &Shared,
    peer: PeerId,
    digest: Digest,
    size: u64,
) -> Option<Result<u64, FetchError>> {
    let tls = shared.bulk.clone()?;
    if tls.unavailable_recently(&peer) {
        return None;
    }
    let addr = bulk_addr(shared, &peer)?;
    let store = shared.store.clone();
    let transfer = tokio::task::spawn_blocking({
        let tls = Arc::clone(&tls);
        move || transfer(&store, &tls, peer, addr, digest, size)
    })
    .await;
    let Ok(transfer) = transfer else {
        return None;
    };
    Counters::bump(&shared.counters.bytes_in, transfer.received);
    let failed = match transfer.outcome {
        Ok(()) => {
            Counters::bump(&shared.counters.bulk_blobs, 1);
            tracing::debug!(%peer, %digest, size, "fetched blob on the bulk lane");
            return Some(Ok(size));
        }
        Err(failed) => failed,
    };
    Some(Err(match failed {
        Failed::Unavailable(why) => {
            tracing::info!(%peer, %addr, %why, "bulk lane unavailable; large blobs from this \
                peer go over QUIC for a while");
            tls.mark_unavailable(peer);
            return None;
        }
        Failed::Malformed(what) => {
            shared.penalise_malformed(&peer);
            tracing::warn!(%peer, %what, "malformed answer on the bulk lane");
            tls.mark_unavailable(peer);
            return None;
        }
        Failed::Missing => FetchError::Missing { peer, digest },
        Failed::Corrupt => {
            shared.penalise_corrupt(&peer);
            tracing::warn!(%peer, %digest, "peer served a corrupt blob on the bulk lane; rejected");
            FetchError::Corrupt { peer, digest }
        }
        Failed::Io(source) => NetError::Io { peer, source }.into(),
        Failed::Store(source) => FetchError::Store { digest, source },
    }))
}

/// What one transfer on the bulk lane came to.
struct Transfer {
    /// Bytes of the blob received, whatever became of them.
    received: u64,
    outcome: Result<(), Failed>,
}

/// Why a transfer did not deliver the blob.
#[derive(Debug)]
enum Failed {
    /// The lane could not be used; QUIC may work.
    Unavailable(String),
    /// The peer answered with something that is not an answer.
    Malformed(String),
    /// The peer does not hold the blob.
    Missing,
    /// The bytes (or the size announced) did not match the digest.
    Corrupt,
    /// The connection failed mid-blob.
    Io(io::Error),
    /// Our store could not take the blob.
    Store(StoreError),
}

/// One blob over one bulk connection. Blocking.
fn transfer(
    store: &weft_store::Store,
    tls: &BulkTls,
    peer: PeerId,
    addr: SocketAddr,
    digest: Digest,
    size: u64,
) -> Transfer {
    let mut received = 0;
    let outcome = transfer_inner(store, tls, peer, addr, digest, size, &mut received);
    Transfer { received, outcome }
}

fn transfer_inner(
    store: &weft_store::Store,
    tls: &BulkTls,
    peer: PeerId,
    addr: SocketAddr,
    digest: Digest,
    size: u64,
    received: &mut u64,
) -> Result<(), Failed> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        Failed::Unavailable(format!("{what} `{addr}`: {e}"))
    };
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| unavailable("cannot connect to", &e))?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(STALL_TIMEOUT)))
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| unavailable("cannot set up the socket to", &e))?;
    let conn = tls
        .client_connection()
        .map_err(|e| unavailable("cannot start TLS with", &e))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| unavailable("TLS handshake failed with", &e))?;
    }
    match peer_of_connection(stream.conn.peer_certificates()) {
        Some(found) if found == peer => {}
        found => {
            return Err(Failed::Unavailable(format!(
                "`{addr}` is {found:?}, not the peer `{peer}` we meant"
            )));
        }
    }
    let _ = stream.sock.set_read_timeout(Some(STALL_TIMEOUT));

    let mut opening = BytesMut::new();
    opening.extend_from_slice(&Handshake::ours(Role::Peer).encode());
    wire::write_message(
        &PeerMessage::BlobRequest { digest, offset: 0 },
        &mut opening,
    )
    .map_err(|e| unavailable("cannot encode a request to", &e))?;
    stream
        .write_all(&opening)
        .and_then(|()| stream.flush())
        .map_err(|e| unavailable("cannot send a request to", &e))?;
    // A server that takes the TLS handshake but refuses us (not admitted on its side yet)
    // closes here: that is "unavailable", and QUIC says why.
    let header = match read_handshake_and_frame(&mut stream) {
        Ok(header) => header,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(Failed::Malformed(e.to_string()));
        }
        Err(e) => return Err(unavailable("no answer from", &e)),
    };
    match header {
        PeerMessage::BlobHeader { digest: d, size: s } if d == digest && s == size => {}
        PeerMessage::BlobHeader { digest: d, .. } if d == digest => return Err(Failed::Corrupt),
        PeerMessage::BlobMissing { digest: d } if d == digest => return Err(Failed::Missing),
        other => {
            return Err(Failed::Malformed(format!(
                "{other:?} in answer to a blob request"
            )));
        }
    }
    let mut body = (&mut stream).take(size);
    let stored = store.put_reader(&mut body, Some(digest));
    *received = size - body.limit();
    let short = || {
        Failed::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the bulk stream ended {} bytes early", size - *received),
        ))
    };
    match stored {
        Ok((_, stored_size)) if stored_size == size => Ok(()),
        // The network failed (a stall, a reset) and the store saw its reader fail.
        Err(StoreError::Read { source }) if *received < size => Err(Failed::Io(source)),
        Ok(_) | Err(StoreError::Mismatch { .. }) if *received < size => Err(short()),
        Ok(_) | Err(StoreError::Mismatch { .. }) => Err(Failed::Corrupt),
        Err(source) => Err(Failed::Store(source)),
    }
}

/// Reads the other side's handshake and one frame.
fn read_handshake_and_frame(stream: &mut impl Read) -> io::Result<PeerMessage> {
    let mut head = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut head)?;
    Handshake::decode_expecting(&head, Role::Peer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut len = [0u8; wire::LENGTH_PREFIX];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    // Requests and headers are tiny; anything large is not one.
    if len > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte frame where a blob request or header belongs"),
        ));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    wire::decode(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Listens for bulk connections on `addr` until `stop` turns true; each one is served on a
/// blocking thread. Returns the address bound, or why none could be.
pub(crate) async fn listen(
    shared: Arc<Shared>,
    tls: Arc<BulkTls>,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let (tcp, from) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "bulk lane: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Anyone can connect and start a handshake before being refused: a bound on the
            // threads that costs keeps a flood from taking the blocking pool.
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%from, "bulk lane: too many connections; refused");
                continue;
            };
            let Ok(tcp) = tcp.into_std() else { continue };
            let shared = Arc::clone(&shared);
            let tls = Arc::clone(&tls);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = serve(&shared, &tls, tcp) {
                    tracing::debug!(%from, error = %e, "bulk lane: a connection ended badly");
                }
                drop(permit);
            });
        }
    });
    Ok(bound)
}

/// Serves one bulk connection: one blob to an admitted peer.
fn serve(shared: &Shared, tls: &BulkTls, tcp: TcpStream) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    tcp.set_write_timeout(Some(STALL_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let conn = tls.server_connection().map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let Some(peer) = peer_of_connection(stream.conn.peer_certificates()) else {
        return Err(io::Error::other("no peer certificate"));
    };
    if !shared.hooks.skip_local_checks && !shared.is_admitted(&peer) {
        Counters::bump(&shared.counters.refused_streams, 1);
        return Err(io::Error::other(format!("`{peer}` is not admitted")));
    }
    let (digest, offset) = match read_handshake_and_frame(&mut stream) {
        Ok(PeerMessage::BlobRequest { digest, offset }) => (digest, offset),
        Ok(other) => {
            shared.penalise_malformed(&peer);
            return Err(io::Error::other(format!("not a blob request: {other:?}")));
        }
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                shared.penalise_malformed(&peer);
            }
            return Err(e);
        }
    };
    let mut answer = BytesMut::new();
    answer.extend_from_slice(&Handshake::ours(Role::Peer).encode());
    let blob = match shared.store.open_blob(&digest) {
        Ok(blob) if offset <= blob.size => blob,
        _ => {
            wire::write_message(&PeerMessage::BlobMissing { digest }, &mut answer)
                .map_err(io::Error::other)?;
            stream.write_all(&answer)?;
            stream.conn.send_close_notify();
            return stream.flush();
        }
    };
    let size = blob.size - offset;
    wire::write_message(&PeerMessage::BlobHeader { digest, size }, &mut answer)
        .map_err(io::Error::other)?;
    stream.write_all(&answer)?;
    let mut file = blob.file;
    if offset > 0 {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(offset))?;
    }
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(CHUNK).clamp(1, CHUNK)];
    let mut remaining = size;
    let mut first = true;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(CHUNK).min(buf.len());
        file.read_exact(&mut buf[..want])?;
        if first && shared.hooks.corrupt_served_blobs {
            buf[0] ^= 0x01;
        }
        first = false;
        stream.write_all(&buf[..want])?;
        remaining -= want as u64;
        Counters::bump(&shared.counters.bytes_out, want as u64);
    }
    stream.conn.send_close_notify();
    stream.flush()?;
    tracing::debug!(%peer, %digest, size, "served a blob on the bulk lane");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_connection_and_the_listener() {
        let ip_port = |s: &str| ip_and_udp_port(&s.parse().expect("multiaddr"));
        assert_eq!(
            ip_port("/ip4/10.0.0.2/udp/4001/quic-v1"),
            Some(("10.0.0.2".parse().expect("ip"), 4001))
        );
        assert_eq!(ip_port("/ip4/10.0.0.2/tcp/4001"), None);
        assert_eq!(ip_port("/dns4/example/udp/4001"), None);
    }
}
