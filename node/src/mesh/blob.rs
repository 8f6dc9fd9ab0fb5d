//! The blob data plane, `/weft/blob/1`: a blob streams from a peer's store into ours, and is
//! verified against its digest before anyone can see it.
//!
//! Protocol flow:
//!
//! 1. the client opens a stream and sends its [`Handshake`](weft_protocol::wire::Handshake)
//!    and a [`PeerMessage::BlobRequest`] frame;
//! 2. as on `/weft/rpc/1`: the server takes the stream only when the client is admitted, and
//!    says so with its handshake at once; the client tries another stream when none came back;
//! 3. the server answers with either [`PeerMessage::BlobMissing`], or
//!    [`PeerMessage::BlobHeader`] with the number of bytes that follow, then those bytes raw,
//!    read from its store in chunks on a blocking thread, and finishes the stream;
//! 4. the client streams the bytes into [`Store::put_reader`](weft_store::Store::put_reader)
//!    with the expected digest, on a blocking thread fed through a small pool of reused
//!    buffers: the bytes are hashed as they are written to a tmp file, and the blob becomes
//!    visible only when the hash matches. A mismatch (or, in a tree, a size other than the
//!    tree says) discards the bytes, counts the blob as corrupt and penalises the peer:
//!    [`FetchError::Corrupt`].
//!
//! Memory use per transfer is bounded by the buffer pool ([`N_BUFFERS`] × [`CHUNK`]) whatever
//! the blob's size. [`fetch_tree`] fetches a whole output tree: the tree blobs level by level,
//! then every file the store lacks, [`PARALLEL_FETCHES`] at a time.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt, TryStreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;
use tracing::Instrument;
use weft_protocol::wire::{InlineBlob, PeerMessage};
use weft_protocol::{Digest, Tree, TreeNode};
use weft_store::{MAX_TREE_DEPTH, MAX_TREE_ENTRIES, StoreError, Verify};

use super::error::{FetchError, NetError};
use super::frames::{self, StreamError};
use super::state::{Counters, Shared};
use super::{bulk, rpc};

/// The blob protocol's name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/blob/1");

/// The size of one buffer of the pool, on both sides.
pub(crate) const CHUNK: usize = 1 << 20;
/// The buffers per transfer and side: at most this many chunks are in flight between the
/// network and the disk.
pub(crate) const N_BUFFERS: usize = 4;
/// How many blobs of one tree are fetched at once.
pub(crate) const PARALLEL_FETCHES: usize = 4;

/// How long opening a stream and reading the answer's header may take.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a transfer may go without filling one chunk before it is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A chunk on its way between the network and the disk: a buffer and how much of it is used.
type Chunk = (Vec<u8>, usize);

/// Fetches the blob `digest` from `peer` into the store; returns its size.
pub(crate) async fn fetch_blob(
    shared: &Shared,
    peer: PeerId,
    digest: Digest,
    expected_size: Option<u64>,
) -> Result<u64, FetchError> {
    let span = tracing::debug_span!("fetch_blob", %peer, %digest);
    fetch_blob_inner(shared, peer, digest, expected_size)
        .instrument(span)
        .await
}

async fn fetch_blob_inner(
    shared: &Shared,
    peer: PeerId,
    digest: Digest,
    expected_size: Option<u64>,
) -> Result<u64, FetchError> {
    if !shared.hooks.skip_local_checks && !shared.is_admitted(&peer) {
        return Err(NetError::NotAdmitted { peer }.into());
    }
    if let Some(size) = expected_size.filter(|&size| size >= bulk::BULK_MIN)
        && let Some(fetched) = bulk::fetch_blob(shared, peer, digest, size).await
    {
        return fetched;
    }
    let mut opening = BytesMut::new();
    frames::encode_opening(
        &PeerMessage::BlobRequest { digest, offset: 0 },
        &mut opening,
    )
    .map_err(|source| NetError::Malformed { peer, source })?;
    let header = async {
        let mut stream = rpc::open_exchange(shared, peer, PROTOCOL, &opening).await?;
        let header: PeerMessage = frames::read_frame(&mut stream).await.map_err(|e| {
            if e.is_malformed() {
                shared.penalise_malformed(&peer);
            }
            e.into_net(peer)
        })?;
        Ok::<_, NetError>((stream, header))
    };
    let (stream, header) = tokio::time::timeout(HEADER_TIMEOUT, header)
        .await
        .map_err(|_| NetError::Timeout {
            peer,
            timeout_ms: HEADER_TIMEOUT.as_millis() as u64,
        })??;
    let size = match header {
        PeerMessage::BlobHeader { digest: d, size } if d == digest => size,
        PeerMessage::BlobMissing { digest: d } if d == digest => {
            return Err(FetchError::Missing { peer, digest });
        }
        other => {
            shared.penalise_malformed(&peer);
            tracing::warn!(%peer, answer = ?other, "unexpected answer to a blob request");
            return Err(NetError::Malformed {
                peer,
                source: weft_protocol::wire::WireError::Codec(
                    weft_protocol::wire::CodecError::Decode(
                        "the answer to a blob request is neither its header nor missing".to_owned(),
                    ),
                ),
            }
            .into());
        }
    };
    if expected_size.is_some_and(|expected| expected != size) {
        shared.penalise_corrupt(&peer);
        tracing::warn!(%peer, size, ?expected_size, "peer announced the wrong size for a blob");
        return Err(FetchError::Corrupt { peer, digest });
    }
    receive(shared, peer, digest, size, stream).await
}

/// Streams `size` bytes of the blob `digest` from `stream` into the store.
async fn receive(
    shared: &Shared,
    peer: PeerId,
    digest: Digest,
    size: u64,
    mut stream: Stream,
) -> Result<u64, FetchError> {
    let (full_tx, full_rx) = mpsc::channel::<Chunk>(N_BUFFERS);
    let (empty_tx, mut empty_rx) = mpsc::channel::<Vec<u8>>(N_BUFFERS);
    let n_buffers = usize::try_from(size.div_ceil(CHUNK as u64))
        .unwrap_or(N_BUFFERS)
        .clamp(1, N_BUFFERS);
    let mut n_allocated = 0;
    let store = shared.store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            full: full_rx,
            empty: empty_tx,
            current: None,
            pos: 0,
        };
        store.put_reader(reader, Some(digest))
    });

    let mut remaining = size;
    let mut net_error: Option<NetError> = None;
    while remaining > 0 {
        let mut buf = if n_allocated < n_buffers {
            n_allocated += 1;
            // A small blob gets a buffer its size, not a whole chunk to zero.
            vec![0u8; usize::try_from(size).unwrap_or(CHUNK).min(CHUNK)]
        } else {
            match empty_rx.recv().await {
                Some(buf) => buf,
                // The writer stopped early (the store failed): its error says why.
                None => break,
            }
        };
        let want = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
        let fill = async {
            let mut filled = 0;
            while filled < want {
                let n = stream.read(&mut buf[filled..want]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the stream ended {} bytes early", remaining - filled as u64),
                    ));
                }
                filled += n;
            }
            Ok(filled)
        };
        match tokio::time::timeout(STALL_TIMEOUT, fill).await {
            Ok(Ok(filled)) => {
                remaining -= filled as u64;
                if full_tx.send((buf, filled)).await.is_err() {
                    break;
                }
            }
            Ok(Err(source)) => {
                net_error = Some(NetError::Io { peer, source });
                break;
            }
            Err(_) => {
                net_error = Some(NetError::Timeout {
                    peer,
                    timeout_ms: STALL_TIMEOUT.as_millis() as u64,
                });
                break;
            }
        }
    }
    drop(full_tx);
    drop(stream);
    let received = size - remaining;
    Counters::bump(&shared.counters.bytes_in, received);
    let stored = writer.await.map_err(|e| FetchError::Store {
        digest,
        source: StoreError::Read {
            source: io::Error::other(format!("the store's writer thread failed: {e}")),
        },
    })?;
    if let Some(err) = net_error {
        return Err(err.into());
    }
    match stored {
        Ok((_, stored_size)) => {
            tracing::debug!(%peer, %digest, size = stored_size, "fetched blob");
            Ok(stored_size)
        }
        Err(StoreError::Mismatch { actual, .. }) => {
            shared.penalise_corrupt(&peer);
            tracing::warn!(%peer, %digest, %actual, "peer served a corrupt blob; rejected");
            Err(FetchError::Corrupt { peer, digest })
        }
        Err(source) => Err(FetchError::Store { digest, source }),
    }
}

/// The blocking side of a transfer: a [`Read`] over the chunks the network side sends, which
/// hands each buffer back once it is consumed.
struct ChannelReader {
    full: mpsc::Receiver<Chunk>,
    empty: mpsc::Sender<Vec<u8>>,
    current: Option<Chunk>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((buf, len)) = &self.current
                && self.pos < *len
            {
                let n = (*len - self.pos).min(out.len());
                out[..n].copy_from_slice(&buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some((buf, _)) = self.current.take() {
                // The network side may have finished; then the buffer is simply freed.
                let _ = self.empty.try_send(buf);
            }
            match self.full.blocking_recv() {
                Some(chunk) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                // The network side is done: everything it had has been read. Whether that
                // was the whole blob, the digest check and the network side both say.
                None => return Ok(0),
            }
        }
    }
}

/// Fetches the tree `root` and every blob below it that the store lacks.
pub(crate) async fn fetch_tree(
    shared: &Shared,
    peer: PeerId,
    root: Digest,
) -> Result<(), FetchError> {
    let span = tracing::debug_span!("fetch_tree", %peer, tree = %root);
    async {
        let mut level = vec![root];
        let mut seen_trees: HashSet<Digest> = HashSet::from([root]);
        let mut files: HashMap<Digest, u64> = HashMap::new();
        let mut n_entries = 0usize;
        let mut depth = 0usize;
        while !level.is_empty() {
            depth += 1;
            if depth > MAX_TREE_DEPTH + 1 {
                return Err(FetchError::BadTree {
                    peer,
                    digest: root,
                    reason: format!("deeper than {MAX_TREE_DEPTH} directories"),
                });
            }
            let missing = missing(shared, level.iter().map(|d| (*d, None)).collect()).await;
            fetch_all(shared, peer, missing).await?;
            let mut next = Vec::new();
            for digest in level {
                let store = shared.store.clone();
                let bytes = tokio::task::spawn_blocking(move || store.read(&digest, Verify::No))
                    .await
                    .map_err(|e| FetchError::Store {
                        digest,
                        source: StoreError::Read {
                            source: io::Error::other(e.to_string()),
                        },
                    })?
                    .map_err(|source| FetchError::Store { digest, source })?;
                let tree = Tree::decode(&bytes).map_err(|e| FetchError::BadTree {
                    peer,
                    digest,
                    reason: e.to_string(),
                })?;
                for entry in tree.entries {
                    n_entries += 1;
                    if n_entries > MAX_TREE_ENTRIES {
                        return Err(FetchError::BadTree {
                            peer,
                            digest: root,
                            reason: format!("more than {MAX_TREE_ENTRIES} entries"),
                        });
                    }
                    match entry.node {
                        TreeNode::File { digest, size, .. } => {
                            files.insert(digest, size);
                        }
                        TreeNode::Dir { digest } => {
                            if seen_trees.insert(digest) {
                                next.push(digest);
                            }
                        }
                        TreeNode::Symlink { .. } => {}
                    }
                }
            }
            level = next;
        }
        let wanted = files.into_iter().map(|(d, size)| (d, Some(size))).collect();
        let missing = missing(shared, wanted).await;
        tracing::debug!(n_missing = missing.len(), "fetching the tree's files");
        fetch_all(shared, peer, missing).await
    }
    .instrument(span)
    .await
}

/// Up to `budget` bytes of the tree `tree` from the store, for sending inline: its tree blobs
/// and the small files that fit ([`weft_store::Store::tree_blobs_within`]). Blocking: call it
/// on a blocking thread. Any store error only means fewer blobs inline.
pub(crate) fn inline_blobs(shared: &Shared, tree: &Digest, budget: usize) -> Vec<InlineBlob> {
    let blobs = shared
        .store
        .tree_blobs_within(tree, budget)
        .unwrap_or_default();
    blobs
        .into_iter()
        .map(|(digest, mut bytes)| {
            if shared.hooks.corrupt_served_blobs
                && let Some(first) = bytes.first_mut()
            {
                *first ^= 0x01;
            }
            InlineBlob {
                digest,
                bytes: bytes.into(),
            }
        })
        .collect()
}

/// Stores blobs that `peer` sent inside a message (a cache answer's small outputs), each
/// only if it hashes to its digest. More than `limit` bytes in all is refused unread, as a
/// malformed answer; a blob that does not match its digest penalises the peer like a corrupt
/// fetch. Either way nothing unverified is stored, and the caller fetches what it still
/// lacks as usual.
pub(crate) async fn store_inline(
    shared: &Shared,
    peer: PeerId,
    blobs: Vec<InlineBlob>,
    limit: usize,
) -> Result<(), FetchError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let total: usize = blobs.iter().map(|blob| blob.bytes.len()).sum();
    if total > limit {
        shared.penalise_malformed(&peer);
        tracing::warn!(%peer, total, limit, "peer sent more inline bytes than asked for");
        return Err(NetError::Malformed {
            peer,
            source: weft_protocol::wire::WireError::Codec(weft_protocol::wire::CodecError::Decode(
                format!("{total} inline bytes, over the {limit} asked for"),
            )),
        }
        .into());
    }
    let store = shared.store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        for blob in blobs {
            match store.put_verified(&blob.bytes, blob.digest) {
                Ok(_) => {}
                Err(StoreError::Mismatch { .. }) => return Err(Some(blob.digest)),
                Err(source) => {
                    tracing::debug!(digest = %blob.digest, %source, "cannot store an inline blob");
                    return Err(None);
                }
            }
        }
        Ok(())
    })
    .await
    .unwrap_or(Err(None));
    match stored {
        Ok(()) => Ok(()),
        Err(Some(digest)) => {
            shared.penalise_corrupt(&peer);
            tracing::warn!(%peer, %digest, "peer sent a corrupt inline blob; rejected");
            Err(FetchError::Corrupt { peer, digest })
        }
        // The store could not take it (a full disk, say): the normal fetch meets the same
        // error and reports it properly.
        Err(None) => Ok(()),
    }
}

/// The blobs of `wanted` that the store does not hold.
async fn missing(
    shared: &Shared,
    wanted: Vec<(Digest, Option<u64>)>,
) -> Vec<(Digest, Option<u64>)> {
    let store = shared.store.clone();
    let check = wanted.clone();
    tokio::task::spawn_blocking(move || {
        check
            .into_iter()
            .filter(|(digest, _)| !store.has(digest))
            .collect()
    })
    .await
    // Checking is only an optimisation: when the check itself fails, fetch them all.
    .unwrap_or(wanted)
}

/// Fetches `blobs` from `peer`, [`PARALLEL_FETCHES`] at a time; stops at the first error.
async fn fetch_all(
    shared: &Shared,
    peer: PeerId,
    blobs: Vec<(Digest, Option<u64>)>,
) -> Result<(), FetchError> {
    futures::stream::iter(blobs)
        .map(|(digest, size)| fetch_blob(shared, peer, digest, size))
        .buffer_unordered(PARALLEL_FETCHES)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
}

/// Serves one blob stream from `peer`.
pub(crate) async fn serve(shared: Arc<Shared>, peer: PeerId, mut stream: Stream) {
    let span = tracing::debug_span!("serve_blob", %peer);
    async {
        if !rpc::take_stream(&shared, peer, &mut stream).await {
            return;
        }
        let read = async {
            frames::read_handshake(&mut stream).await?;
            frames::read_frame::<PeerMessage, _>(&mut stream).await
        };
        let (digest, offset) = match tokio::time::timeout(HEADER_TIMEOUT, read).await {
            Ok(Ok(PeerMessage::BlobRequest { digest, offset })) => (digest, offset),
            Ok(Ok(other)) => {
                shared.penalise_malformed(&peer);
                tracing::warn!(%peer, request = ?other, "not a blob request on the blob protocol");
                let _ = stream.close().await;
                return;
            }
            Ok(Err(err)) => {
                if err.is_malformed() {
                    shared.penalise_malformed(&peer);
                    tracing::warn!(%peer, error = ?err, "malformed blob request");
                } else if !matches!(err, StreamError::Eof) {
                    tracing::debug!(%peer, error = ?err, "blob stream failed");
                }
                let _ = stream.close().await;
                return;
            }
            Err(_) => return,
        };
        match send_blob(&shared, peer, &mut stream, digest, offset).await {
            Ok(n) => {
                Counters::bump(&shared.counters.bytes_out, n);
                tracing::debug!(%peer, %digest, bytes = n, "served blob");
            }
            Err(err) => tracing::debug!(%peer, %digest, %err, "serving a blob failed"),
        }
        let _ = stream.close().await;
    }
    .instrument(span)
    .await;
}

/// Sends the answer to a blob request: missing, or the header and the bytes. Returns the number
/// of blob bytes sent.
async fn send_blob(
    shared: &Shared,
    peer: PeerId,
    stream: &mut Stream,
    digest: Digest,
    offset: u64,
) -> io::Result<u64> {
    let store = shared.store.clone();
    let opened = tokio::task::spawn_blocking(move || store.open_blob(&digest))
        .await
        .map_err(io::Error::other)?;
    let blob = match opened {
        Ok(blob) if offset <= blob.size => blob,
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            return answer(stream, &PeerMessage::BlobMissing { digest })
                .await
                .map(|()| 0);
        }
        Err(err) => {
            tracing::warn!(%peer, %digest, %err, "cannot open a blob to serve it");
            return answer(stream, &PeerMessage::BlobMissing { digest })
                .await
                .map(|()| 0);
        }
    };
    let size = blob.size - offset;
    answer(stream, &PeerMessage::BlobHeader { digest, size }).await?;

    let (full_tx, mut full_rx) = mpsc::channel::<Chunk>(N_BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>(N_BUFFERS);
    let n_buffers = usize::try_from(size.div_ceil(CHUNK as u64))
        .unwrap_or(N_BUFFERS)
        .clamp(1, N_BUFFERS);
    for _ in 0..n_buffers {
        // The channel holds N_BUFFERS and this fills at most that many.
        let _ = empty_tx.try_send(vec![0u8; usize::try_from(size).unwrap_or(CHUNK).min(CHUNK)]);
    }
    let corrupt = shared.hooks.corrupt_served_blobs;
    let mut file = blob.file;
    let reader = tokio::task::spawn_blocking(move || -> io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        let mut empty_rx = empty_rx;
        let mut remaining = size;
        let mut first = true;
        while remaining > 0 {
            let Some(mut buf) = empty_rx.blocking_recv() else {
                return Ok(());
            };
            let want = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            file.read_exact(&mut buf[..want])?;
            if corrupt && first {
                buf[0] ^= 0x01;
            }
            first = false;
            remaining -= want as u64;
            if full_tx.blocking_send((buf, want)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    let mut sent = 0u64;
    let mut write_error = None;
    while let Some((buf, len)) = full_rx.recv().await {
        if let Err(err) = stream.write_all(&buf[..len]).await {
            write_error = Some(err);
            break;
        }
        sent += len as u64;
        let _ = empty_tx.try_send(buf);
    }
    drop(full_rx);
    drop(empty_tx);
    let read = reader.await.map_err(io::Error::other)?;
    if let Some(err) = write_error {
        return Err(err);
    }
    read?;
    stream.flush().await?;
    Ok(sent)
}

async fn answer(stream: &mut Stream, message: &PeerMessage) -> io::Result<()> {
    let mut bytes = BytesMut::new();
    weft_protocol::wire::write_message(message, &mut bytes).map_err(io::Error::other)?;
    frames::write_all(stream, &bytes).await
}
