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
}

impl Canon {
    /// Starts a hash in the given domain, such as `weft.job.v1`.
    pub(crate) fn new(domain: &str) -> Canon {
        let mut canon = Canon {
            hasher: DigestHasher::new(),
        };
        canon.str(domain);
        canon
    }

    pub(crate) fn tag(&mut self, tag: u8) -> &mut Canon {
        self.u8(tag)
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Canon {
        self.hasher.update(&[value]);
        self
    }

    pub(crate) fn i32(&mut self, value: i32) -> &mut Canon {
        self.hasher.update(&value.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Canon {
        self.hasher.update(&value.to_le_bytes());
        self
    }

    pub(crate) fn len(&mut self, len: usize) -> &mut Canon {
        // usize is at most 64 bits on every platform Rust supports.
        self.u64(len as u64)
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Canon {
        self.u8(u8::from(value))
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Canon {
        self.len(bytes.len());
        self.hasher.update(bytes);
        self
    }

    pub(crate) fn str(&mut self, text: &str) -> &mut Canon {
        self.bytes(text.as_bytes())
    }

    pub(crate) fn digest(&mut self, digest: &Digest) -> &mut Canon {
        self.hasher.update(digest.as_bytes());
        self
    }

    pub(crate) fn finish(&self) -> Digest {
        self.hasher.finalize()
    }
}
