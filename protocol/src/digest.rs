//! [`Digest`]: the blake3 hash that names every blob, tree and job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hex::{self, HexError};

/// A blake3 digest: 32 bytes, shown as 64 lower-case hex characters.
///
/// Binary encodings carry the 32 raw bytes; human-readable ones (JSON event logs) the hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; Digest::LEN]);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; Digest::LEN]>::deserialize(deserializer).map(Digest)
        }
    }
}

impl Digest {
    /// The length of a digest in bytes.
    pub const LEN: usize = 32;
    /// The length of a digest in hex characters.
    pub const HEX_LEN: usize = 2 * Self::LEN;

    /// Hashes `bytes` in one go.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; Digest::LEN]) -> Digest {
        Digest(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; Digest::LEN] {
        &self.0
    }

    /// The digest as 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The first `n` hex characters, for logs and progress lines.
    pub fn short(&self, n: usize) -> String {
        let mut hex = self.to_hex();
        hex.truncate(n.min(Self::HEX_LEN));
        hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short(12))
    }
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The string does not have exactly 64 characters.
    #[error("a digest has {expected} hex characters, but `{text}` has {found}", expected = Digest::HEX_LEN)]
    WrongLength {
        /// The offending text, shortened when very long.
        text: String,
        /// How many characters it has.
        found: usize,
    },
    /// A character is not a hex digit.
    #[error("`{found}` at position {position} is not a hex digit (expected 0-9 or a-f)")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its byte offset in the string.
        position: usize,
    },
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Digest, DigestParseError> {
        let mut bytes = [0u8; Digest::LEN];
        match hex::decode(text, &mut bytes) {
            Ok(()) => Ok(Digest(bytes)),
            Err(HexError::NotHex { found, position }) => {
                Err(DigestParseError::NotHex { found, position })
            }
            Err(HexError::WrongLength { found, .. }) => {
                let shown: String = text.chars().take(Digest::HEX_LEN + 8).collect();
                Err(DigestParseError::WrongLength { text: shown, found })
            }
        }
    }
}

/// An incremental blake3 hasher that produces a [`Digest`].
#[derive(Default, Clone)]
pub struct DigestHasher(blake3::Hasher);

impl DigestHasher {
    /// A hasher with nothing fed to it yet.
    pub fn new() -> DigestHasher {
        DigestHasher(blake3::Hasher::new())
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut DigestHasher {
        self.0.update(bytes);
        self
    }

    /// The digest of everything fed so far.
    pub fn finalize(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_of_empty_input() {
        // b3sum of the empty file.
        assert_eq!(
            Digest::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trips_and_accepts_upper_case() {
        let digest = Digest::of(b"weft");
        assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        assert_eq!(
            digest.to_string().to_uppercase().parse::<Digest>(),
            Ok(digest)
        );
    }

    #[test]
    fn bad_digests_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "a digest has 64 hex characters, but `` has 0"),
            ("abc", "a digest has 64 hex characters, but `abc` has 3"),
            (
                "zz",
                "`z` at position 0 is not a hex digit (expected 0-9 or a-f)",
            ),
            (
                &format!("{}g", "0".repeat(63)),
                "`g` at position 63 is not a hex digit (expected 0-9 or a-f)",
            ),
            (
                &"0".repeat(65),
                "a digest has 64 hex characters, but `00000000000000000000000000000000000000000000000000000000000000000` has 65",
            ),
            (
                "é",
                "`é` at position 0 is not a hex digit (expected 0-9 or a-f)",
            ),
        ];
        for (text, message) in cases {
            let err = text.parse::<Digest>().expect_err(text);
            assert_eq!(err.to_string(), *message, "input {text:?}");
        }
    }

    #[test]
    fn incremental_hashing_matches_one_shot() {
        let mut hasher = DigestHasher::new();
        hasher.update(b"we").update(b"ft");
        assert_eq!(hasher.finalize(), Digest::of(b"weft"));
    }
}
