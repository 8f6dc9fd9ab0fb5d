//! Hostile input: no bytes and no string make a decoder or a parser panic, or ask for more
//! memory than the frame limit. Round trips hold for everything that is encoded.
//!
//! The fuzz targets in `protocol/fuzz/` drive the same entry points with coverage guidance;
//! these property tests run the same checks inside `cargo test`.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use proptest::prelude::*;
use weft_protocol::wire::{
    self, BuildEvent, BuildRequest, ClientMessage, DaemonMessage, HANDSHAKE_LEN, Handshake,
    MAX_FRAME, PeerMessage, Role,
};
use weft_protocol::{
    ActionResult, Cmd, Digest, Input, Job, JobId, Label, NodeId, OutputFile, PackagePath,
    Signature, Template, Toolchain, Tree, TreeEntry, TreeNode,
};

/// Records the largest single allocation, to check that decoders never size a buffer from an
/// untrusted length beyond the frame limit.
struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Feeds `bytes` to every decoder. Each may fail; none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = wire::decode::<ClientMessage>(bytes);
    let _ = wire::decode::<DaemonMessage>(bytes);
    let _ = wire::decode::<PeerMessage>(bytes);
    let _ = wire::decode::<ActionResult>(bytes);
    let _ = wire::decode::<Job>(bytes);
    let _ = Tree::decode(bytes);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = wire::read_message::<PeerMessage>(&mut buf) {}
    if let Ok(head) = <&[u8; HANDSHAKE_LEN]>::try_from(bytes.get(..HANDSHAKE_LEN).unwrap_or(&[])) {
        let _ = Handshake::decode_expecting(head, Role::Peer);
    }
    let text = String::from_utf8_lossy(bytes);
    let _ = Label::parse(&text);
    let _ = Template::parse(&text);
    let _ = text.parse::<Digest>();
    if let Ok(here) = PackagePath::new(None, "a/b") {
        let _ = Label::parse_relative(&text, &here);
    }
}

/// Messages that claim huge lengths: the codec must refuse them before allocating.
#[test]
fn huge_length_prefixes_allocate_nothing_large() {
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // bincode varint: 253 = u64 follows. Claim 2^62 elements of a Vec in each message kind.
    for variant in 0u8..12 {
        let mut bytes = vec![variant, 253];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        cases.push(bytes);
        let mut bytes = vec![variant, 0, 253];
        bytes.extend_from_slice(&(u64::MAX).to_le_bytes());
        cases.push(bytes);
    }
    // A frame prefix that claims 4 GiB.
    cases.push(vec![0xff, 0xff, 0xff, 0xff, 0, 0]);
    for bytes in cases {
        decode_everything(&bytes);
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= MAX_FRAME + 4096,
        "largest allocation {largest} exceeds the frame limit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
        prop_assert!(LARGEST.load(Ordering::Relaxed) <= MAX_FRAME + 4096);
    }

    #[test]
    fn random_strings_never_panic(text in "\\PC{0,64}") {
        decode_everything(text.as_bytes());
    }

    #[test]
    fn labelish_strings_never_panic(text in "[@/:.a-z_+ -]{0,24}") {
        decode_everything(text.as_bytes());
        if let Ok(label) = Label::parse(&text) {
            prop_assert_eq!(Label::parse(&label.to_string()), Ok(label.clone()));
        }
    }

    #[test]
    fn valid_labels_round_trip(
        package in proptest::option::of("[a-z_][a-z0-9_.+-]{0,8}"),
        path in proptest::collection::vec("[a-z0-9_][a-z0-9_.+-]{0,8}", 0..4),
        target in proptest::option::of("[a-zA-Z0-9_][a-z0-9_.+-]{0,8}"),
    ) {
        let path = path.join("/");
        prop_assume!(!path.split('/').any(|s| s == "." || s == ".."));
        prop_assume!(target.is_some() || !path.is_empty());
        let mut text = package.as_ref().map(|p| format!("@{p}")).unwrap_or_default();
        text.push_str("//");
        text.push_str(&path);
        if let Some(target) = &target {
            text.push(':');
            text.push_str(target);
        }
        let label = Label::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(label.package(), package.as_deref());
        prop_assert_eq!(label.path(), path.as_str());
        let reparsed = Label::parse(&label.to_string());
        prop_assert_eq!(reparsed, Ok(label));
    }

    #[test]
    fn frames_round_trip_and_split_anywhere(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        cut in any::<usize>(),
    ) {
        let mut stream = BytesMut::new();
        for payload in &payloads {
            wire::encode_frame(payload, &mut stream).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let cut = cut % (stream.len() + 1);
        let mut buf = BytesMut::from(&stream[..cut]);
        let mut got = Vec::new();
        while let Some(frame) = wire::decode_frame(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(frame.to_vec());
        }
        buf.extend_from_slice(&stream[cut..]);
        while let Some(frame) = wire::decode_frame(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(frame.to_vec());
        }
        prop_assert_eq!(got, payloads);
    }

    #[test]
    fn truncated_messages_fail_cleanly(cut in 0usize..400) {
        for message in sample_peer_messages() {
            let bytes = wire::encode(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if cut < bytes.len() {
                prop_assert!(wire::decode::<PeerMessage>(&bytes[..cut]).is_err());
            }
        }
    }
}

fn sample_job() -> Job {
    Job {
        name: "//a:b".into(),
        inputs: vec![Input {
            path: "a/b.c".into(),
            digest: Digest::of(b"b"),
            executable: true,
        }],
        deps: vec![JobId(Digest::of(b"dep"))],
        cmds: vec![
            Cmd::Exec {
                argv: vec!["cc".into(), "{{SOURCE_DIR}}/a/b.c".into()],
                env: BTreeMap::from([("K".into(), "V".into())]),
                cwd: Some("{{SOURCE_DIR}}/a".into()),
            },
            Cmd::Cat {
                output: "{{OUTPUT_DIR}}/x".into(),
                template: "hi".into(),
            },
        ],
        env: BTreeMap::new(),
        outs: vec!["x".into()],
        toolchain: Toolchain {
            platform: "linux-x86_64".into(),
            tools: BTreeMap::from([("cc".into(), Digest::of(b"cc"))]),
            system: None,
        },
        network: false,
    }
}

fn sample_result() -> ActionResult {
    ActionResult {
        exit_code: 0,
        outputs: vec![OutputFile {
            path: "x".into(),
            digest: Digest::of(b"x"),
            size: 1,
            executable: false,
        }],
        output_tree: Digest::of(b"tree"),
        stdout: Digest::of(b""),
        stderr: Digest::of(b""),
        duration_ms: 12,
        executed_by: NodeId([7; 32]),
        signature: Some(Signature([9; 64])),
    }
}

fn sample_peer_messages() -> Vec<PeerMessage> {
    vec![
        PeerMessage::Have {
            jobs: vec![JobId(Digest::of(b"1")), JobId(Digest::of(b"2"))],
        },
        PeerMessage::CacheAnswer {
            job: JobId(Digest::of(b"1")),
            result: Some(sample_result()),
            inline: vec![wire::InlineBlob {
                digest: Digest::of(b"tree"),
                bytes: bytes::Bytes::from_static(b"tree"),
            }],
        },
        PeerMessage::CacheQuery {
            job: JobId(Digest::of(b"1")),
            inline_limit: 256 << 10,
        },
        PeerMessage::Granted {
            leases: vec![wire::Lease {
                job: sample_job(),
                ttl_ms: 5000,
                deps: vec![wire::LeaseDep {
                    job: JobId(Digest::of(b"dep")),
                    tree: Digest::of(b"tree"),
                    holders: vec![NodeId([3; 32])],
                }],
            }],
        },
        PeerMessage::BlobHeader {
            digest: Digest::of(b"blob"),
            size: 1 << 40,
        },
        PeerMessage::Statements {
            statements: vec![weft_protocol::TrustStatement {
                subject: NodeId([4; 32]),
                verdict: weft_protocol::Verdict::Distrust,
                reason: "left".into(),
                issuer: NodeId([5; 32]),
                issued_at: 7,
                signature: weft_protocol::Signature([6; 64]),
            }],
        },
    ]
}

#[test]
fn messages_round_trip() {
    for message in sample_peer_messages() {
        let mut buf = BytesMut::new();
        wire::write_message(&message, &mut buf).expect("encode");
        assert_eq!(
            wire::read_message::<PeerMessage>(&mut buf),
            Ok(Some(message))
        );
    }
    let client = [
        ClientMessage::Hello {
            binary_id: "weft 0.1.0 abc".into(),
        },
        ClientMessage::Build(BuildRequest {
            workspace: "/w".into(),
            targets: vec!["//...".into()],
            jobs: Some(4),
            keep_going: true,
            block_for_lock: false,
            job_timeout_secs: None,
            every_event: false,
        }),
    ];
    for message in client {
        let bytes = wire::encode(&message).expect("encode");
        assert_eq!(wire::decode::<ClientMessage>(&bytes), Ok(message));
    }
    let event = DaemonMessage::Event(BuildEvent::Planned { n_jobs: 3 });
    let bytes = wire::encode(&event).expect("encode");
    assert_eq!(wire::decode::<DaemonMessage>(&bytes), Ok(event));
}

#[test]
fn trees_round_trip_and_reject_escapes() {
    let mut tree = Tree {
        entries: vec![
            TreeEntry {
                name: "z".into(),
                node: TreeNode::Symlink { target: "a".into() },
            },
            TreeEntry {
                name: "a".into(),
                node: TreeNode::File {
                    digest: Digest::of(b"a"),
                    size: 1,
                    executable: true,
                },
            },
            TreeEntry {
                name: "d".into(),
                node: TreeNode::Dir {
                    digest: Digest::of(b"d"),
                },
            },
        ],
    };
    let bytes = tree.encode();
    assert_eq!(Tree::decode(&bytes), Ok(tree));
    for name in ["..", ".", "a/b", "", "/etc"] {
        let mut hostile = Tree {
            entries: vec![TreeEntry {
                name: name.into(),
                node: TreeNode::Dir {
                    digest: Digest::of(b"d"),
                },
            }],
        };
        let bytes = hostile.encode();
        assert!(Tree::decode(&bytes).is_err(), "{name:?} must be refused");
    }
    let mut absolute = Tree {
        entries: vec![TreeEntry {
            name: "l".into(),
            node: TreeNode::Symlink {
                target: "/etc".into(),
            },
        }],
    };
    assert!(Tree::decode(&absolute.encode()).is_err());
}

#[test]
fn version_mismatch_is_an_error_not_a_garbled_decode() {
    let mut theirs = Handshake::ours(Role::Peer).encode();
    theirs[4..8].copy_from_slice(&(wire::PROTOCOL_VERSION + 1).to_be_bytes());
    let err = Handshake::decode_expecting(&theirs, Role::Peer).expect_err("mismatch");
    assert!(
        err.to_string().contains("protocol version mismatch"),
        "{err}"
    );
}

#[test]
fn the_replacement_path_keeps_its_encoding() {
    // A client must greet, and stop, a daemon of any other build: these encodings never change.
    let hello = wire::encode(&ClientMessage::Hello {
        binary_id: "x".into(),
    })
    .expect("encode");
    assert_eq!(hello, [0, 1, b'x']);
    assert_eq!(wire::encode(&ClientMessage::Shutdown).expect("encode"), [8]);
    let answer = wire::encode(&DaemonMessage::Hello {
        binary_id: "y".into(),
        pid: 7,
    })
    .expect("encode");
    assert_eq!(answer, [0, 1, b'y', 7]);
    assert_eq!(
        wire::encode(&DaemonMessage::ShuttingDown).expect("encode"),
        [6]
    );
}
