//! [`ActionResult`]: what running a job produced, signed by the node that ran it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canon::Canon;
use crate::{Digest, JobId};

/// The public half of a node's ed25519 identity key, which also names the node.
///
/// Encoded like a [`Digest`]: raw bytes in binary encodings, hex in human-readable ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Digest::from_bytes(self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NodeId, D::Error> {
        Digest::deserialize(deserializer).map(|d| NodeId(*d.as_bytes()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Digest::from_bytes(self.0).short(16))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", Digest::of(&self.0).short(8))
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Signature, E> {
                let array = <[u8; 64]>::try_from(bytes)
                    .map_err(|_| E::invalid_length(bytes.len(), &self))?;
                Ok(Signature(array))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

/// One file a job left under its output directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the output directory.
    pub path: String,
    /// The digest of the file's content.
    pub digest: Digest,
    /// The size in bytes.
    pub size: u64,
    /// Whether the file is executable.
    pub executable: bool,
}

/// What running a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// The exit code of the last command that ran (0 when all succeeded; -1 when a signal
    /// ended it).
    pub exit_code: i32,
    /// Every file under the output directory, sorted by path.
    pub outputs: Vec<OutputFile>,
    /// The [`Tree`](crate::Tree) digest of the whole output directory, for fetching or
    /// materializing it in one go.
    pub output_tree: Digest,
    /// The digest of everything the commands wrote to stdout.
    pub stdout: Digest,
    /// The digest of everything the commands wrote to stderr.
    pub stderr: Digest,
    /// How long the commands ran, in milliseconds.
    pub duration_ms: u64,
    /// The node that ran the job.
    pub executed_by: NodeId,
    /// `executed_by`'s signature over [`ActionResult::signing_digest`].
    pub signature: Option<Signature>,
}

impl ActionResult {
    /// Whether the job succeeded.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The digest a node signs to vouch for this result of `job`: the canonical encoding of
    /// every field but the signature, bound to the job's id.
    pub fn signing_digest(&self, job: JobId) -> Digest {
        self.signing_canon(job).finish()
    }

    /// The canonical encoding that [`ActionResult::signing_digest`] hashes.
    fn signing_canon(&self, job: JobId) -> Canon {
        let mut canon = Canon::new("weft.result.v1");
        canon.tag(1).digest(job.digest());
        canon.tag(2).i32(self.exit_code);
        canon.tag(3).len(self.outputs.len());
        for out in &self.outputs {
            canon
                .str(&out.path)
                .digest(&out.digest)
                .u64(out.size)
                .bool(out.executable);
        }
        canon.tag(4).digest(&self.output_tree);
        canon.tag(5).digest(&self.stdout).digest(&self.stderr);
        canon.tag(6).u64(self.duration_ms);
        canon.tag(7).bytes(&self.executed_by.0);
        canon
    }

    /// Every blob this result refers to: its outputs, the output tree, stdout and stderr.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.outputs.iter().map(|out| out.digest).chain([
            self.output_tree,
            self.stdout,
            self.stderr,
        ])
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn the_canonical_encoding_of_a_signature() {
        // A change here makes every signed result in every cache fail its check.
        let result = ActionResult {
            exit_code: -1,
            outputs: vec![OutputFile {
                path: "bin/app".into(),
                digest: Digest::from_bytes([0xdd; 32]),
                size: 4096,
                executable: true,
            }],
            output_tree: Digest::from_bytes([0xee; 32]),
            stdout: Digest::from_bytes([0x01; 32]),
            stderr: Digest::from_bytes([0x02; 32]),
            duration_ms: 1234,
            executed_by: NodeId([0x07; 32]),
            signature: Some(Signature([0x09; 64])),
        };
        let job = JobId(Digest::from_bytes([0x11; 32]));
        let canon = result.signing_canon(job);
        assert_eq!(Digest::of(&canon.fed_bytes()), canon.finish());
        expect![[r#"
            str    0e00000000000000 776566742e726573756c742e7631 "weft.result.v1"
            tag    01
            digest 1111111111111111111111111111111111111111111111111111111111111111
            tag    02
            i32    ffffffff
            tag    03
            len    0100000000000000
            str    0700000000000000 62696e2f617070 "bin/app"
            digest dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd
            u64    0010000000000000
            bool   01
            tag    04
            digest eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee
            tag    05
            digest 0101010101010101010101010101010101010101010101010101010101010101
            digest 0202020202020202020202020202020202020202020202020202020202020202
            tag    06
            u64    d204000000000000
            tag    07
            bytes  2000000000000000 0707070707070707070707070707070707070707070707070707070707070707
        "#]]
        .assert_eq(&canon.trace());
        expect!["1034698e04c080ff5f15d84da83f0136ec1e2b231ac7bcb49114ec6d6832894c"]
            .assert_eq(&result.signing_digest(job).to_string());
    }
}
