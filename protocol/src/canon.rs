//! The canonical encoding that [`JobId`](crate::JobId)s and result signatures are hashed from.
//!
//! It is written by hand, not by the wire codec, so that a change of codec never changes an ID.
//! The rules, which `ARCHITECTURE.md` repeats:
//!
//! - every hash starts with a domain string such as `weft.job.v1`, itself encoded as a string;
//! - integers are little-endian and fixed width (`u8`, `u64`, and `i32` as four bytes of two's
//!   complement);
//! - a `bool` is one byte, 0 or 1;
//! - a string or a byte string is its length as `u64`, then its bytes;
//! - a digest is its 32 raw bytes;
//! - a list is its length as `u64`, then its items; a map is a list of (key, value) pairs in
//!   ascending key order;
//! - an `Option` is a `bool` (present or not), then the value when present;
//! - each struct field is preceded by a one-byte tag, so that adding a field later cannot make
//!   two different encodings collide.

use crate::{Digest, DigestHasher};

/// Feeds canonically encoded values into a blake3 hasher.
pub(crate) struct Canon {
    hasher: DigestHasher,
    /// In tests, every value fed, by kind, so that a snapshot can show the encoding itself.
    #[cfg(test)]
    fed: Vec<(&'static str, Vec<u8>)>,
}

impl Canon {
    /// Starts a hash in the given domain, such as `weft.job.v1`.
    pub(crate) fn new(domain: &str) -> Canon {
        let mut canon = Canon {
            hasher: DigestHasher::new(),
            #[cfg(test)]
            fed: Vec::new(),
        };
        canon.str(domain);
        canon
    }

    /// Hashes the parts of one value, in order.
    #[cfg_attr(not(test), allow(unused_variables))]
    fn feed(&mut self, kind: &'static str, parts: &[&[u8]]) -> &mut Canon {
        for part in parts {
            self.hasher.update(part);
        }
        #[cfg(test)]
        self.fed.push((kind, parts.concat()));
        self
    }

    pub(crate) fn tag(&mut self, tag: u8) -> &mut Canon {
        self.feed("tag", &[&[tag]])
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Canon {
        self.feed("u8", &[&[value]])
    }

    pub(crate) fn i32(&mut self, value: i32) -> &mut Canon {
        self.feed("i32", &[&value.to_le_bytes()])
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Canon {
        self.feed("u64", &[&value.to_le_bytes()])
    }

    pub(crate) fn len(&mut self, len: usize) -> &mut Canon {
        // usize is at most 64 bits on every platform Rust supports.
        self.feed("len", &[&(len as u64).to_le_bytes()])
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Canon {
        self.feed("bool", &[&[u8::from(value)]])
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Canon {
        self.feed("bytes", &[&(bytes.len() as u64).to_le_bytes(), bytes])
    }

    pub(crate) fn str(&mut self, text: &str) -> &mut Canon {
        self.feed(
            "str",
            &[&(text.len() as u64).to_le_bytes(), text.as_bytes()],
        )
    }

    pub(crate) fn digest(&mut self, digest: &Digest) -> &mut Canon {
        self.feed("digest", &[digest.as_bytes()])
    }

    pub(crate) fn finish(&self) -> Digest {
        self.hasher.finalize()
    }

    /// Every byte fed so far: what [`Canon::finish`] is the blake3 hash of.
    #[cfg(test)]
    pub(crate) fn fed_bytes(&self) -> Vec<u8> {
        self.fed
            .iter()
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    }

    /// Every value fed so far, one per line: its kind and its bytes in hex, and a string's text.
    #[cfg(test)]
    pub(crate) fn trace(&self) -> String {
        let mut text = String::new();
        for (kind, bytes) in &self.fed {
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            match *kind {
                // The length prefix apart from the bytes, and the text.
                "str" => {
                    let (len, rest) = hex.split_at(16);
                    let shown = String::from_utf8_lossy(&bytes[8..]);
                    text.push_str(&format!("{kind:<6} {len} {rest} {shown:?}\n"));
                }
                "bytes" => {
                    let (len, rest) = hex.split_at(16);
                    text.push_str(&format!("{kind:<6} {len} {rest}\n"));
                }
                _ => text.push_str(&format!("{kind:<6} {hex}\n")),
            }
        }
        text
    }
}
