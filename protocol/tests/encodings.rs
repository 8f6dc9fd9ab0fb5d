//! Snapshots of the bytes weft writes: the handshake, messages on the wire, frames and a tree
//! blob. An accidental change of an encoding shows here as a diff; an intended one is taken
//! with `UPDATE_EXPECT=1 cargo test -p weft-protocol --test encodings`, and, for a message,
//! a bump of `PROTOCOL_VERSION`. (The canonical encoding that ids and signatures are hashed
//! from has its snapshots beside the code, in `src/job/id.rs` and `src/result.rs`.)
//!
//! Digests are made of one repeated byte, so that each field can be told apart in a dump.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use expect_test::{Expect, expect};
use weft_protocol::wire::{
    self, BuildEvent, BuildRequest, ClientMessage, DaemonMessage, ErrorReport, FailureReport,
    GossipMessage, Handshake, InlineBlob, Lease, LeaseDep, LoadBeacon, PeerMessage, Role,
    SharePolicy, StealRequest, VerdictReport, VerdictRequest,
};
use weft_protocol::{
    ActionResult, Cmd, Digest, Input, Job, JobId, NodeId, OutputFile, Signature, Toolchain, Tree,
    TreeEntry, TreeNode, TrustStatement, Verdict,
};

/// `bytes` as lines of 16: offset, hex, and the printable ASCII.
fn hexdump(bytes: &[u8]) -> String {
    let mut text = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&byte| {
                if byte.is_ascii_graphic() || byte == b' ' {
                    char::from(byte)
                } else {
                    '.'
                }
            })
            .collect();
        text.push_str(&format!(
            "{:04x}  {:<47}  |{ascii}|\n",
            row * 16,
            hex.join(" ")
        ));
    }
    text
}

/// Each value's name, size and dump, checked against `expected`.
fn check(expected: Expect, values: &[(&str, Vec<u8>)]) {
    let mut text = String::new();
    for (name, bytes) in values {
        text.push_str(&format!("{name} ({} bytes)\n", bytes.len()));
        text.push_str(&hexdump(bytes));
    }
    expected.assert_eq(&text);
}

fn encoded<T: serde::Serialize>(value: &T) -> Vec<u8> {
    wire::encode(value).expect("encodes")
}

fn digest(byte: u8) -> Digest {
    Digest::from_bytes([byte; 32])
}

fn job() -> Job {
    Job {
        name: "//lib:greet".into(),
        inputs: vec![Input {
            path: "lib/greet.c".into(),
            digest: digest(0xaa),
            executable: false,
        }],
        deps: vec![JobId(digest(0x11))],
        cmds: vec![Cmd::Exec {
            argv: vec!["cc".into(), "-c".into()],
            env: BTreeMap::new(),
            cwd: None,
        }],
        env: BTreeMap::from([("LANG".into(), "C".into())]),
        outs: vec!["greet.o".into()],
        toolchain: Toolchain {
            platform: "linux-x86_64".into(),
            tools: BTreeMap::from([("cc".into(), digest(0xcc))]),
            system: None,
        },
        network: false,
    }
}

fn result() -> ActionResult {
    ActionResult {
        exit_code: 0,
        outputs: vec![OutputFile {
            path: "greet.o".into(),
            digest: digest(0xdd),
            size: 1500,
            executable: false,
        }],
        output_tree: digest(0xee),
        stdout: digest(0x01),
        stderr: digest(0x02),
        duration_ms: 250,
        executed_by: NodeId([0x07; 32]),
        signature: Some(Signature([0x09; 64])),
    }
}

#[test]
fn handshakes() {
    check(
        expect![[r#"
            client (12 bytes)
            0000  57 45 46 54 00 00 00 05 01 00 00 00              |WEFT........|
            daemon (12 bytes)
            0000  57 45 46 54 00 00 00 05 02 00 00 00              |WEFT........|
            peer (12 bytes)
            0000  57 45 46 54 00 00 00 05 03 00 00 00              |WEFT........|
        "#]],
        &[
            ("client", Handshake::ours(Role::Client).encode().to_vec()),
            ("daemon", Handshake::ours(Role::Daemon).encode().to_vec()),
            ("peer", Handshake::ours(Role::Peer).encode().to_vec()),
        ],
    );
}

#[test]
fn client_and_daemon_messages() {
    let build = ClientMessage::Build(BuildRequest {
        workspace: "/w".into(),
        targets: vec!["//...".into(), "//app:main".into()],
        jobs: Some(4),
        keep_going: true,
        block_for_lock: false,
        job_timeout_secs: Some(600),
        every_event: false,
    });
    let finished = DaemonMessage::Event(BuildEvent::Finished {
        job: JobId(digest(0x11)),
        name: "//lib:greet".into(),
        node: NodeId([0x07; 32]),
        duration_ms: 1_000_000,
    });
    let failed = DaemonMessage::Event(BuildEvent::Failed(FailureReport {
        job: JobId(digest(0x11)),
        name: "//:bad".into(),
        command: vec!["sh".into()],
        exit_code: Some(-1),
        message: String::new(),
        stderr_tail: "boom\n".into(),
    }));
    let refused = DaemonMessage::Error(ErrorReport {
        message: "no `weft.toml`".into(),
    });
    check(
        expect![[r#"
            ClientMessage::Build (31 bytes)
            0000  01 02 2f 77 02 05 2f 2f 2e 2e 2e 0a 2f 2f 61 70  |../w..//....//ap|
            0010  70 3a 6d 61 69 6e 01 04 01 00 01 fb 58 02 00     |p:main......X..|
            ClientMessage::CacheGc (6 bytes)
            0000  06 fc 00 00 00 40                                |.....@|
            ClientMessage::Peers (1 bytes)
            0000  09                                               |.|
            DaemonMessage::Event(Finished) (83 bytes)
            0000  01 04 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0010  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0020  11 11 0b 2f 2f 6c 69 62 3a 67 72 65 65 74 07 07  |...//lib:greet..|
            0030  07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07  |................|
            0040  07 07 07 07 07 07 07 07 07 07 07 07 07 07 fc 40  |...............@|
            0050  42 0f 00                                         |B..|
            DaemonMessage::Event(Failed) (54 bytes)
            0000  01 05 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0010  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0020  11 11 06 2f 2f 3a 62 61 64 01 02 73 68 01 01 00  |...//:bad..sh...|
            0030  05 62 6f 6f 6d 0a                                |.boom.|
            DaemonMessage::Error (16 bytes)
            0000  05 0e 6e 6f 20 60 77 65 66 74 2e 74 6f 6d 6c 60  |..no `weft.toml`|
            ClientMessage::Verdict (16 bytes)
            0000  0a 08 61 62 31 32 63 64 33 34 01 04 6c 65 66 74  |..ab12cd34..left|
            ClientMessage::CacheForget (9 bytes)
            0000  0b 02 2f 77 04 2f 2f 3a 61                       |../w.//:a|
            DaemonMessage::Verdict (39 bytes)
            0000  08 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07  |................|
            0010  07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07  |................|
            0020  07 00 01 fb 2c 01 00                             |....,..|
        "#]],
        &[
            ("ClientMessage::Build", encoded(&build)),
            (
                "ClientMessage::CacheGc",
                encoded(&ClientMessage::CacheGc { max_bytes: 1 << 30 }),
            ),
            ("ClientMessage::Peers", encoded(&ClientMessage::Peers)),
            ("DaemonMessage::Event(Finished)", encoded(&finished)),
            ("DaemonMessage::Event(Failed)", encoded(&failed)),
            ("DaemonMessage::Error", encoded(&refused)),
            (
                "ClientMessage::Verdict",
                encoded(&ClientMessage::Verdict(VerdictRequest {
                    node: "ab12cd34".into(),
                    verdict: Verdict::Distrust,
                    reason: "left".into(),
                })),
            ),
            (
                "ClientMessage::CacheForget",
                encoded(&ClientMessage::CacheForget {
                    workspace: "/w".into(),
                    target: "//:a".into(),
                }),
            ),
            (
                "DaemonMessage::Verdict",
                encoded(&DaemonMessage::Verdict(VerdictReport {
                    node: NodeId([0x07; 32]),
                    verdict: Verdict::Trust,
                    changed: true,
                    n_removed: 300,
                    gossiped: false,
                })),
            ),
        ],
    );
}

fn statement() -> TrustStatement {
    TrustStatement {
        subject: NodeId([0x0a; 32]),
        verdict: Verdict::Distrust,
        reason: "gone".into(),
        issuer: NodeId([0x0b; 32]),
        issued_at: 1_767_225_600_000,
        signature: Signature([0x09; 64]),
    }
}

#[test]
fn peer_and_gossip_messages() {
    let beacon = LoadBeacon {
        free_slots: 3,
        queue_len: 300,
        platform: "linux-x86_64".into(),
        tools: vec![digest(0xcc)],
        share: SharePolicy::Idle,
        max_shared_slots: 4,
        speed: 1500,
        reserved: 2,
    };
    let steal = PeerMessage::Steal(StealRequest {
        max_jobs: 8,
        platform: "linux-x86_64".into(),
        tools: vec![digest(0xcc)],
    });
    let granted = PeerMessage::Granted {
        leases: vec![Lease {
            job: job(),
            ttl_ms: 5000,
            deps: vec![LeaseDep {
                job: JobId(digest(0x11)),
                tree: digest(0xee),
                holders: vec![NodeId([0x03; 32])],
            }],
        }],
    };
    let answer = PeerMessage::CacheAnswer {
        job: JobId(digest(0x22)),
        result: Some(result()),
        inline: vec![InlineBlob {
            digest: digest(0xee),
            bytes: Bytes::from_static(b"tree"),
        }],
    };
    check(
        expect![[r#"
            GossipMessage::Beacon (57 bytes)
            0000  00 03 fb 2c 01 0c 6c 69 6e 75 78 2d 78 38 36 5f  |...,..linux-x86_|
            0010  36 34 01 cc cc cc cc cc cc cc cc cc cc cc cc cc  |64..............|
            0020  cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  |................|
            0030  cc cc cc 01 04 fb dc 05 02                       |.........|
            GossipMessage::Have (66 bytes)
            0000  01 02 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0010  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0020  11 11 22 22 22 22 22 22 22 22 22 22 22 22 22 22  |..""""""""""""""|
            0030  22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22  |""""""""""""""""|
            0040  22 22                                            |""|
            PeerMessage::Steal (48 bytes)
            0000  04 08 0c 6c 69 6e 75 78 2d 78 38 36 5f 36 34 01  |...linux-x86_64.|
            0010  cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  |................|
            0020  cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  |................|
            PeerMessage::Granted (273 bytes)
            0000  05 01 0b 2f 2f 6c 69 62 3a 67 72 65 65 74 01 0b  |...//lib:greet..|
            0010  6c 69 62 2f 67 72 65 65 74 2e 63 aa aa aa aa aa  |lib/greet.c.....|
            0020  aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa  |................|
            0030  aa aa aa aa aa aa aa aa aa aa aa 00 01 11 11 11  |................|
            0040  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            0050  11 11 11 11 11 11 11 11 11 11 11 11 11 01 00 02  |................|
            0060  02 63 63 02 2d 63 00 00 01 04 4c 41 4e 47 01 43  |.cc.-c....LANG.C|
            0070  01 07 67 72 65 65 74 2e 6f 0c 6c 69 6e 75 78 2d  |..greet.o.linux-|
            0080  78 38 36 5f 36 34 01 02 63 63 cc cc cc cc cc cc  |x86_64..cc......|
            0090  cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc cc  |................|
            00a0  cc cc cc cc cc cc cc cc cc cc 00 00 fb 88 13 01  |................|
            00b0  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            00c0  11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11  |................|
            00d0  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            00e0  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            00f0  01 03 03 03 03 03 03 03 03 03 03 03 03 03 03 03  |................|
            0100  03 03 03 03 03 03 03 03 03 03 03 03 03 03 03 03  |................|
            0110  03                                               |.|
            PeerMessage::CacheAnswer (313 bytes)
            0000  03 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22  |."""""""""""""""|
            0010  22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22  |""""""""""""""""|
            0020  22 01 00 01 07 67 72 65 65 74 2e 6f dd dd dd dd  |"....greet.o....|
            0030  dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd  |................|
            0040  dd dd dd dd dd dd dd dd dd dd dd dd fb dc 05 00  |................|
            0050  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            0060  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            0070  01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01  |................|
            0080  01 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01  |................|
            0090  02 02 02 02 02 02 02 02 02 02 02 02 02 02 02 02  |................|
            00a0  02 02 02 02 02 02 02 02 02 02 02 02 02 02 02 02  |................|
            00b0  fa 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07  |................|
            00c0  07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07  |................|
            00d0  07 01 40 09 09 09 09 09 09 09 09 09 09 09 09 09  |..@.............|
            00e0  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            00f0  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0100  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0110  09 09 09 01 ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            0120  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
            0130  ee ee ee ee 04 74 72 65 65                       |.....tree|
            PeerMessage::BlobRequest (38 bytes)
            0000  0c dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd  |................|
            0010  dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd  |................|
            0020  dd fc 00 00 10 00                                |......|
            GossipMessage::Statement (145 bytes)
            0000  02 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a  |................|
            0010  0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a  |................|
            0020  0a 01 04 67 6f 6e 65 0b 0b 0b 0b 0b 0b 0b 0b 0b  |...gone.........|
            0030  0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b  |................|
            0040  0b 0b 0b 0b 0b 0b 0b fd 00 a8 da 76 9b 01 00 00  |...........v....|
            0050  40 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |@...............|
            0060  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0070  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0080  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0090  09                                               |.|
            PeerMessage::Statements (146 bytes)
            0000  11 01 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a  |................|
            0010  0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a 0a  |................|
            0020  0a 0a 01 04 67 6f 6e 65 0b 0b 0b 0b 0b 0b 0b 0b  |....gone........|
            0030  0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b 0b  |................|
            0040  0b 0b 0b 0b 0b 0b 0b 0b fd 00 a8 da 76 9b 01 00  |............v...|
            0050  00 40 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |.@..............|
            0060  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0070  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0080  09 09 09 09 09 09 09 09 09 09 09 09 09 09 09 09  |................|
            0090  09 09                                            |..|
        "#]],
        &[
            (
                "GossipMessage::Beacon",
                encoded(&GossipMessage::Beacon(beacon)),
            ),
            (
                "GossipMessage::Have",
                encoded(&GossipMessage::Have {
                    jobs: vec![JobId(digest(0x11)), JobId(digest(0x22))],
                }),
            ),
            ("PeerMessage::Steal", encoded(&steal)),
            ("PeerMessage::Granted", encoded(&granted)),
            ("PeerMessage::CacheAnswer", encoded(&answer)),
            (
                "PeerMessage::BlobRequest",
                encoded(&PeerMessage::BlobRequest {
                    digest: digest(0xdd),
                    offset: 1 << 20,
                }),
            ),
            (
                "GossipMessage::Statement",
                encoded(&GossipMessage::Statement(statement())),
            ),
            (
                "PeerMessage::Statements",
                encoded(&PeerMessage::Statements {
                    statements: vec![statement()],
                }),
            ),
        ],
    );
}

#[test]
fn a_frame() {
    let mut frame = BytesMut::new();
    wire::write_message(&ClientMessage::Status, &mut frame).expect("encodes");
    wire::write_message(
        &DaemonMessage::Lines(vec!["//:a".into(), "//:b".into()]),
        &mut frame,
    )
    .expect("encodes");
    check(
        expect![[r#"
            Status, then Lines, framed (21 bytes)
            0000  00 00 00 01 04 00 00 00 0c 03 02 04 2f 2f 3a 61  |............//:a|
            0010  04 2f 2f 3a 62                                   |.//:b|
        "#]],
        &[("Status, then Lines, framed", frame.to_vec())],
    );
}

#[test]
fn a_tree_blob() {
    // Given out of order: the blob has them sorted by name.
    let mut tree = Tree {
        entries: vec![
            TreeEntry {
                name: "sub".into(),
                node: TreeNode::Dir {
                    digest: digest(0xee),
                },
            },
            TreeEntry {
                name: "run.sh".into(),
                node: TreeNode::File {
                    digest: digest(0xdd),
                    size: 70_000,
                    executable: true,
                },
            },
            TreeEntry {
                name: "latest".into(),
                node: TreeNode::Symlink {
                    target: "sub/v2".into(),
                },
            },
        ],
    };
    let blob = tree.encode();
    assert_eq!(Tree::decode(&blob).map(|t| t.entries.len()), Ok(3));
    check(
        expect![[r#"
        Tree (99 bytes)
        0000  03 06 6c 61 74 65 73 74 02 06 73 75 62 2f 76 32  |..latest..sub/v2|
        0010  06 72 75 6e 2e 73 68 00 dd dd dd dd dd dd dd dd  |.run.sh.........|
        0020  dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd dd  |................|
        0030  dd dd dd dd dd dd dd dd fc 70 11 01 00 01 03 73  |.........p.....s|
        0040  75 62 01 ee ee ee ee ee ee ee ee ee ee ee ee ee  |ub..............|
        0050  ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee ee  |................|
        0060  ee ee ee                                         |...|
    "#]],
        &[("Tree", blob)],
    );
}
