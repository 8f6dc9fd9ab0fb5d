//! Disowning nodes, the shell's part: what `weft team distrust NODE` may name ([`NodeRef`]),
//! making and checking the signatures of [`TrustStatement`]s, and the file they are kept in
//! across restarts, `$WEFT_HOME/distrusted.toml`. Which statements count is
//! [`Verdicts`](crate::core::Verdicts)' to say.
//!
//! ```toml
//! # written whole by the daemon; one table per statement, this node's and those it heard
//! [[statement]]
//! subject = "<64 hex: the node>"
//! verdict = "distrust"            # or "trust"
//! reason = "left the team"
//! issuer = "<64 hex: the node that said so>"
//! issued_at = 1767225600000       # ms since the Unix epoch, raised past earlier statements
//! signature = "<128 hex: the issuer's ed25519 signature>"
//! ```
//!
//! Every statement in the file must carry its issuer's valid signature: a file that does not
//! parse, or a statement that does not check, is an error at start that names the file, never
//! a silent return to trusting everyone.

use std::io;
use std::path::{Path, PathBuf};

use libp2p_identity::Keypair;
use weft_protocol::hex;
use weft_protocol::{Digest, NodeId, Signature, TrustStatement, Verdict};

use crate::fs::{Contents, write_replacing};
use crate::mesh::{PeerId, node_id_of};

/// The fewest hex digits of a node key that may name a node.
pub(crate) const MIN_PREFIX: usize = 8;

/// A node as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeRef {
    /// A whole node key (or a PeerId, which carries one).
    Key(NodeId),
    /// The first hex digits of a known node's key, lower-case.
    Prefix(String),
}

/// A node name that names no node, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NodeRefError {
    /// Neither hex digits nor a PeerId.
    #[error(
        "`{0}` names no node: give its node key (64 hex digits, as `weft team show` prints it), \
         its PeerId (as `weft peers` prints it), or at least {MIN_PREFIX} hex digits of a known \
         node's key"
    )]
    NotANode(String),
    /// Too few hex digits to stand for a node.
    #[error(
        "`{0}` is too short to name a node: give at least {MIN_PREFIX} hex digits of its node key"
    )]
    TooShort(String),
    /// 64 hex digits that are no ed25519 public key.
    #[error("`{0}` is not a node key (no ed25519 public key); copy it from `weft team show` again")]
    NotAKey(String),
    /// A PeerId that carries no ed25519 key, so no weft node's.
    #[error("`{0}` is not a weft node's PeerId (it carries no ed25519 key)")]
    ForeignPeerId(String),
    /// No known node's key starts so.
    #[error(
        "no known node's key starts with `{prefix}`{}; a node not admitted since the daemon \
         started is named by its whole node key (from `weft team show` on it)",
        known_list(known)
    )]
    NoMatch {
        /// The digits given.
        prefix: String,
        /// The known nodes' keys.
        known: Vec<String>,
    },
    /// Several known nodes' keys start so.
    #[error("`{prefix}` names more than one node: {}; give more digits", matches.join(", "))]
    Ambiguous {
        /// The digits given.
        prefix: String,
        /// The keys that start with them.
        matches: Vec<String>,
    },
    /// It is this node.
    #[error("`{0}` is this node, which cannot disown itself")]
    ThisNode(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (no peer has been admitted since the daemon started)".to_owned()
    } else {
        format!(" (known: {})", known.join(", "))
    }
}

/// A node key in full, as `weft team show` prints it.
pub(crate) fn key_text(node: &NodeId) -> String {
    Digest::from_bytes(node.0).to_string()
}

impl NodeRef {
    /// Reads what the user wrote: 64 hex digits, a PeerId, or at least [`MIN_PREFIX`] hex
    /// digits.
    pub(crate) fn parse(text: &str) -> Result<NodeRef, NodeRefError> {
        let text = text.trim();
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit()) {
            let lower = text.to_ascii_lowercase();
            return match lower.len() {
                64 => {
                    let mut bytes = [0u8; 32];
                    hex::decode(&lower, &mut bytes)
                        .map_err(|_| NodeRefError::NotAKey(text.to_owned()))?;
                    let node = NodeId(bytes);
                    if libp2p_identity::ed25519::PublicKey::try_from_bytes(&node.0).is_err() {
                        return Err(NodeRefError::NotAKey(text.to_owned()));
                    }
                    Ok(NodeRef::Key(node))
                }
                n if n < MIN_PREFIX => Err(NodeRefError::TooShort(text.to_owned())),
                n if n > 64 => Err(NodeRefError::NotANode(text.to_owned())),
                _ => Ok(NodeRef::Prefix(lower)),
            };
        }
        match text.parse::<PeerId>() {
            Ok(peer) => node_id_of(&peer)
                .map(NodeRef::Key)
                .ok_or_else(|| NodeRefError::ForeignPeerId(text.to_owned())),
            Err(_) => Err(NodeRefError::NotANode(text.to_owned())),
        }
    }

    /// The node this names, among the `known` ones (admitted since the daemon started, or
    /// named in a statement) for a prefix; `this` is the node itself, which no name may be.
    pub(crate) fn resolve(&self, known: &[NodeId], this: NodeId) -> Result<NodeId, NodeRefError> {
        let node = match self {
            NodeRef::Key(node) => *node,
            NodeRef::Prefix(prefix) => {
                let mut keys: Vec<String> =
                    known.iter().filter(|n| **n != this).map(key_text).collect();
                keys.sort();
                keys.dedup();
                let matches: Vec<String> = keys
                    .iter()
                    .filter(|k| k.starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                match matches.as_slice() {
                    [one] => {
                        let mut bytes = [0u8; 32];
                        hex::decode(one, &mut bytes)
                            .map_err(|_| NodeRefError::NotAKey(one.clone()))?;
                        NodeId(bytes)
                    }
                    [] if key_text(&this).starts_with(prefix.as_str()) => {
                        return Err(NodeRefError::ThisNode(prefix.clone()));
                    }
                    [] => {
                        return Err(NodeRefError::NoMatch {
                            prefix: prefix.clone(),
                            known: keys,
                        });
                    }
                    _ => {
                        return Err(NodeRefError::Ambiguous {
                            prefix: prefix.clone(),
                            matches,
                        });
                    }
                }
            }
        };
        if node == this {
            return Err(NodeRefError::ThisNode(key_text(&node)));
        }
        Ok(node)
    }
}

/// A statement by the node of `keypair`, signed; `None` when the key cannot sign (only
/// ed25519 keys are ever loaded, and those always can).
pub(crate) fn sign(
    keypair: &Keypair,
    subject: NodeId,
    verdict: Verdict,
    reason: String,
    issued_at: u64,
) -> Option<TrustStatement> {
    let issuer = crate::daemon::node_id(keypair);
    let digest = TrustStatement::digest_to_sign(&subject, verdict, &reason, &issuer, issued_at);
    let bytes = keypair.sign(digest.as_bytes()).ok()?;
    let signature = Signature(<[u8; 64]>::try_from(bytes.as_slice()).ok()?);
    Some(TrustStatement {
        subject,
        verdict,
        reason,
        issuer,
        issued_at,
        signature,
    })
}

/// Whether `statement` carries its issuer's valid signature.
pub(crate) fn verify(statement: &TrustStatement) -> bool {
    libp2p_identity::ed25519::PublicKey::try_from_bytes(&statement.issuer.0).is_ok_and(|key| {
        key.verify(
            statement.signing_digest().as_bytes(),
            &statement.signature.0,
        )
    })
}

/// `distrusted.toml` cannot be read, or is damaged.
#[derive(Debug, thiserror::Error)]
pub enum DistrustFileError {
    /// The file cannot be read or written.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not what the daemon writes.
    #[error(
        "`{}` is damaged: {reason}; fix it, or remove it and run `weft team distrust` again for \
         each node this node disowned (until then it trusts them)",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    statement: Vec<Entry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    subject: String,
    verdict: String,
    reason: String,
    issuer: String,
    issued_at: u64,
    signature: String,
}

/// The statements kept in `path`, each checked; none when there is no file.
pub(crate) fn load(path: &Path) -> Result<Vec<TrustStatement>, DistrustFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DistrustFileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    decode(&text).map_err(|reason| DistrustFileError::Damaged {
        path: path.to_owned(),
        reason,
    })
}

/// Writes `statements` to `path`, whole (a reader sees the old file or the new one), synced.
pub(crate) fn store(path: &Path, statements: &[TrustStatement]) -> Result<(), DistrustFileError> {
    write_replacing(path, encode(statements).as_bytes(), Contents::Record).map_err(|source| {
        DistrustFileError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// The file's text for `statements`.
pub(crate) fn encode(statements: &[TrustStatement]) -> String {
    let file = File {
        statement: statements
            .iter()
            .map(|s| Entry {
                subject: key_text(&s.subject),
                verdict: s.verdict.name().to_owned(),
                reason: s.reason.clone(),
                issuer: key_text(&s.issuer),
                issued_at: s.issued_at,
                signature: hex::encode(&s.signature.0),
            })
            .collect(),
    };
    let body = toml::to_string(&file).unwrap_or_default();
    format!(
        "# The nodes this node disowned or took back (`weft team distrust`, `weft team trust`),\n\
         # and what teammates said of them. Written whole by the daemon; each statement is\n\
         # signed by its issuer, and one that does not check stops the daemon at start.\n\
         {body}"
    )
}

/// The statements of a file's text, or what is wrong with it.
fn decode(text: &str) -> Result<Vec<TrustStatement>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    file.statement
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let at = |what: &str| format!("statement {} ({what})", i + 1);
            let key = |text: &str, field: &str| -> Result<NodeId, String> {
                let mut bytes = [0u8; 32];
                hex::decode(text, &mut bytes)
                    .map_err(|e| format!("{}: {e}", at(&format!("`{field}`"))))?;
                Ok(NodeId(bytes))
            };
            let verdict = match entry.verdict.as_str() {
                "distrust" => Verdict::Distrust,
                "trust" => Verdict::Trust,
                other => {
                    return Err(format!(
                        "{}: `{other}` is neither \"distrust\" nor \"trust\"",
                        at("`verdict`")
                    ));
                }
            };
            let mut signature = [0u8; 64];
            hex::decode(&entry.signature, &mut signature)
                .map_err(|e| format!("{}: {e}", at("`signature`")))?;
            let statement = TrustStatement {
                subject: key(&entry.subject, "subject")?,
                verdict,
                reason: entry.reason,
                issuer: key(&entry.issuer, "issuer")?,
                issued_at: entry.issued_at,
                signature: Signature(signature),
            };
            if !verify(&statement) {
                return Err(format!(
                    "{}: the signature does not match",
                    at(&format!("about `{}`", key_text(&statement.subject)))
                ));
            }
            Ok(statement)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> Keypair {
        let mut bytes = [seed; 32];
        Keypair::ed25519_from_bytes(&mut bytes).expect("a key")
    }

    fn node(seed: u8) -> NodeId {
        crate::daemon::node_id(&keypair(seed))
    }

    #[test]
    fn a_node_is_named_by_its_key_its_peer_id_or_a_prefix() {
        let (me, a, b) = (node(1), node(2), node(3));
        let known = [me, a, b];
        let key = key_text(&a);
        let parse = |text: &str| NodeRef::parse(text).and_then(|r| r.resolve(&known, me));
        assert_eq!(parse(&key), Ok(a));
        assert_eq!(parse(&key.to_ascii_uppercase()), Ok(a));
        let peer = keypair(2).public().to_peer_id().to_string();
        assert_eq!(parse(&peer), Ok(a));
        assert_eq!(parse(&key[..MIN_PREFIX]), Ok(a));
        // A whole key names a node that is not known, too.
        assert_eq!(
            NodeRef::parse(&key_text(&node(4))).and_then(|r| r.resolve(&[], me)),
            Ok(node(4))
        );

        let table: Vec<(String, &str)> = vec![
            (key[..7].to_owned(), "too short"),
            ("hello".to_owned(), "names no node"),
            ("f".repeat(65), "names no node"),
            ("02".repeat(32), "is not a node key"),
            ("12D3KooW0OIl".to_owned(), "names no node"),
            (
                libp2p::PeerId::random().to_string(),
                "carries no ed25519 key",
            ),
            (
                "deadbeefdeadbeef".to_owned(),
                "no known node's key starts with",
            ),
            (key_text(&me), "is this node"),
            (key_text(&me)[..10].to_owned(), "is this node"),
        ];
        for (text, wanted) in table {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        // Two keys that share a prefix: ambiguous, and both are listed.
        let twins = [NodeId([0xab; 32]), {
            let mut bytes = [0xab; 32];
            bytes[31] = 0;
            NodeId(bytes)
        }];
        let err = NodeRef::Prefix("abababab".into())
            .resolve(&twins, me)
            .expect_err("ambiguous");
        assert!(
            matches!(&err, NodeRefError::Ambiguous { matches, .. } if matches.len() == 2),
            "{err}"
        );
        assert!(err.to_string().contains(&key_text(&twins[0])), "{err}");
        let err = NodeRef::Prefix("99999999".into())
            .resolve(&[a], me)
            .expect_err("no match");
        assert!(err.to_string().contains(&key), "lists the known: {err}");
    }

    #[test]
    fn statements_are_signed_and_checked() {
        let statement =
            sign(&keypair(1), node(2), Verdict::Distrust, "gone".into(), 5).expect("signed");
        assert_eq!(statement.issuer, node(1));
        assert!(verify(&statement));
        let mut forged = statement.clone();
        forged.verdict = Verdict::Trust;
        assert!(!verify(&forged));
        let mut other_issuer = statement;
        other_issuer.issuer = node(3);
        assert!(!verify(&other_issuer));
    }

    #[test]
    fn the_file_round_trips_and_damage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("distrusted.toml");
        assert!(load(&path).expect("no file").is_empty());
        let statements = vec![
            sign(
                &keypair(1),
                node(2),
                Verdict::Distrust,
                "left \"the\" team".into(),
                5,
            )
            .expect("signed"),
            sign(&keypair(3), node(4), Verdict::Trust, String::new(), 6).expect("signed"),
        ];
        store(&path, &statements).expect("store");
        assert_eq!(load(&path).expect("load"), statements);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# The nodes this node disowned"), "{text}");

        let damaged = [
            ("[[statement]]\nsubject = 3\n", "invalid type"),
            ("statements = []\n", "unknown field"),
            (&text.replacen("\"distrust\"", "\"maybe\"", 1), "neither"),
            (
                &text.replacen("issued_at = 5", "issued_at = 7", 1),
                "does not match",
            ),
        ];
        for (bad, wanted) in damaged {
            std::fs::write(&path, bad).expect("write");
            let err = load(&path).expect_err(bad).to_string();
            assert!(err.contains(wanted), "{bad}: {err}");
            assert!(err.contains("distrusted.toml` is damaged"), "{err}");
            assert!(err.contains("remove it"), "{err}");
        }
    }
}
