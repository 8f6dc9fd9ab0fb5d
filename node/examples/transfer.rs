//! Blob-transfer throughput on loopback, for `bench/transfer.sh`.
//!
//! ```text
//! transfer MODE [--size BYTES] [--runs N] [--stream-window BYTES] [--conn-window BYTES]
//!               [--mtu BYTES] [--cipher aes|chacha]
//! ```
//!
//! Modes, each between two endpoints in this process:
//! - `blob`: weft's data plane end to end over QUIC: `Mesh::fetch_blob` of one blob from one
//!   node's store into the other's (read from disk, QUIC, blake3 and written to a tmp file,
//!   renamed), as for a blob whose size is not known beforehand;
//! - `bulk`: the same with the size known (`Mesh::fetch_blob_sized`), as for any file of an
//!   output tree: at 4 MiB and more it takes the bulk lane, TLS 1.3 (AES-GCM) on TCP;
//! - `libp2p`: a libp2p QUIC stream (libp2p-stream, the mesh's QUIC settings), memory to
//!   memory: the transport alone;
//! - `quinn`: a raw quinn 0.11 endpoint pair, memory to memory, with the given windows, MTU and
//!   cipher (libp2p's TLS prefers ChaCha20-Poly1305; `aes` is AES-128-GCM).
//!
//! Every run prints one line: `mode=… bytes=… secs=… gbytes_per_sec=…` (GB = 10⁹ bytes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use weft_node::mesh::{self, Keypair, MeshConfig, MeshEvent, TeamSecret};
use weft_store::Store;

struct Args {
    mode: String,
    size: u64,
    runs: usize,
    stream_window: u64,
    conn_window: u64,
    mtu: u16,
    cipher: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        size: 1 << 30,
        runs: 3,
        stream_window: 10_000_000,
        conn_window: 15_000_000,
        mtu: 1452,
        cipher: "aes".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--size" => args.size = value().parse().unwrap_or_else(|_| usage("bad --size")),
            "--runs" => args.runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--stream-window" => {
                args.stream_window = value().parse().unwrap_or_else(|_| usage("bad window"))
            }
            "--conn-window" => {
                args.conn_window = value().parse().unwrap_or_else(|_| usage("bad window"))
            }
            "--mtu" => args.mtu = value().parse().unwrap_or_else(|_| usage("bad --mtu")),
            "--cipher" => args.cipher = value(),
            mode if args.mode.is_empty() && !mode.starts_with('-') => args.mode = mode.to_owned(),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if args.mode.is_empty() {
        usage("no mode");
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "error: {problem}\nusage: transfer blob|libp2p|quinn [--size BYTES] [--runs N] \
         [--stream-window BYTES] [--conn-window BYTES] [--mtu BYTES] [--cipher aes|chacha]"
    );
    std::process::exit(2);
}

fn report(mode: &str, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "mode={mode} bytes={bytes} secs={secs:.3} gbytes_per_sec={:.3}",
        bytes as f64 / secs / 1e9
    );
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    match args.mode.as_str() {
        "blob" => bench_blob(&args, false).await,
        "bulk" => bench_blob(&args, true).await,
        "libp2p" => bench_libp2p(&args).await,
        "quinn" => bench_quinn(&args).await,
        other => usage(&format!("unknown mode `{other}`")),
    }
}

/// Bytes that do not repeat in any way that matters, made quickly.
fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

async fn bench_blob(args: &Args, size_known: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let team = TeamSecret::generate();
    let start = |name: &str, peers: Vec<mesh::Multiaddr>| {
        let store = Store::open(&dir.path().join(name)).expect("store");
        let mut config = MeshConfig::new(Keypair::generate_ed25519(), team.clone());
        config.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr")];
        config.mdns = false;
        config.static_peers = peers;
        async move {
            let (mesh, events) = mesh::start(config, store.clone()).await.expect("start");
            (mesh, events, store)
        }
    };
    let (server, _server_events, server_store) = start("server", vec![]).await;
    let addr = server.listen_addrs().await[0]
        .clone()
        .with(mesh::multiaddr::Protocol::P2p(server.local_peer()));
    let (client, mut client_events, client_store) = start("client", vec![addr]).await;
    loop {
        match client_events.recv().await {
            Some(MeshEvent::PeerAdmitted { .. }) => break,
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    // The blob, put in chunks so that making it never needs `size` bytes of memory.
    let size = args.size;
    let digest = tokio::task::spawn_blocking(move || {
        let mut reader = PatternReader {
            left: size,
            seed: 7,
        };
        server_store.put_reader(&mut reader, None).expect("put").0
    })
    .await
    .expect("put");
    // The blob was made just now; in a real store it was written long ago. Let the kernel
    // write it back before the clock starts, or the first run pays for that.
    let _ = std::process::Command::new("sync").status();
    for _ in 0..args.runs {
        let store = client_store.clone();
        tokio::task::spawn_blocking(move || store.delete(&digest))
            .await
            .expect("delete")
            .expect("delete");
        let started = Instant::now();
        let got = if size_known {
            client
                .fetch_blob_sized(server.local_peer(), digest, size)
                .await
        } else {
            client.fetch_blob(server.local_peer(), digest).await
        };
        let got = got.expect("fetch");
        report(
            if size_known { "bulk" } else { "blob" },
            got,
            started.elapsed(),
        );
    }
}

/// A reader of `left` pseudo-random bytes.
struct PatternReader {
    left: u64,
    seed: u64,
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len())
            & !7;
        let n = if n == 0 { self.left as usize } else { n };
        fill(&mut buf[..n], self.seed);
        self.seed += 1;
        self.left -= n as u64;
        Ok(n)
    }
}

const BENCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft-bench/1");

async fn bench_libp2p(args: &Args) {
    let (mtu, stream_window, conn_window) = (args.mtu, args.stream_window, args.conn_window);
    let build = || {
        libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
            .with_tokio()
            .with_quic_config(|config| {
                let mut config = mesh::quic_transport_config(config).mtu_upper_bound(mtu);
                config.max_stream_data = u32::try_from(stream_window).unwrap_or(u32::MAX);
                config.max_connection_data = u32::try_from(conn_window).unwrap_or(u32::MAX);
                config
            })
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    };
    let mut server = build();
    let mut client = build();
    server
        .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"))
        .expect("listen");
    let addr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            server.select_next_some().await
        {
            break address;
        }
    };
    let server_peer = *server.local_peer_id();
    let mut incoming = server
        .behaviour()
        .new_control()
        .accept(BENCH_PROTOCOL)
        .expect("accept");
    let mut control = client.behaviour().new_control();
    client.dial(addr).expect("dial");
    tokio::spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });
    loop {
        if let libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } =
            client.select_next_some().await
        {
            break;
        }
    }
    tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });
    let size = args.size;
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 1 << 20];
        fill(&mut chunk, 3);
        while let Some((_, mut stream)) = incoming.next().await {
            let mut request = [0u8; 1];
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(chunk.len())
                    .min(chunk.len());
                stream.write_all(&chunk[..n]).await.expect("write");
                left -= n as u64;
            }
            stream.close().await.expect("close");
        }
    });
    for _ in 0..args.runs {
        let started = Instant::now();
        let mut stream = control
            .open_stream(server_peer, BENCH_PROTOCOL)
            .await
            .expect("open");
        stream.write_all(&[1]).await.expect("request");
        stream.flush().await.expect("flush");
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert_eq!(got, size);
        report("libp2p", got, started.elapsed());
    }
}

async fn bench_quinn(args: &Args) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_der = cert.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()),
    );
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = match args.cipher.as_str() {
        "aes" => vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        // QUIC's initial packets need AES-128-GCM; ChaCha20 is preferred for the rest.
        "chacha" => vec![
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        other => usage(&format!("unknown cipher `{other}`")),
    };
    let provider = Arc::new(provider);

    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u64(args.stream_window).expect("window"));
    transport.receive_window(quinn::VarInt::from_u64(args.conn_window).expect("window"));
    transport.send_window(args.conn_window);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(args.mtu);
    transport.mtu_discovery_config(Some(mtu));
    // Start at the MTU asked for when it is above QUIC's minimum: loopback carries 64 KiB.
    transport.initial_mtu(args.mtu.max(1200));
    let transport = Arc::new(transport);

    let server_tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .expect("server tls");
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("quic tls"),
    ));
    server_config.transport_config(Arc::clone(&transport));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr"))
        .expect("server");
    let server_addr: SocketAddr = server.local_addr().expect("addr");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).expect("root");
    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("quic tls"),
    ));
    client_config.transport_config(transport);
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(client_config);

    let size = args.size;
    tokio::spawn(async move {
        let connection = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("connection");
        let mut chunk = vec![0u8; 1 << 20];
        fill(&mut chunk, 3);
        while let Ok((mut send, mut recv)) = connection.accept_bi().await {
            let mut request = [0u8; 1];
            if recv.read_exact(&mut request).await.is_err() {
                continue;
            }
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(chunk.len())
                    .min(chunk.len());
                send.write_all(&chunk[..n]).await.expect("write");
                left -= n as u64;
            }
            send.finish().expect("finish");
            let _ = send.stopped().await;
        }
    });
    let connection = client
        .connect(server_addr, "localhost")
        .expect("connect")
        .await
        .expect("connection");
    for _ in 0..args.runs {
        let started = Instant::now();
        let (mut send, mut recv) = connection.open_bi().await.expect("open");
        send.write_all(&[1]).await.expect("request");
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while let Some(n) = recv.read(&mut buf).await.expect("read") {
            got += n as u64;
        }
        assert_eq!(got, size);
        report(&format!("quinn-{}", args.cipher), got, started.elapsed());
    }
}
