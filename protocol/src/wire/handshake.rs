//! The first bytes on every connection: magic, protocol version and role.
//!
//! The handshake has a fixed layout that no codec touches, so that two ends of different
//! versions always understand each other well enough to say so.
//!
//! ```text
//! bytes 0..4   b"WEFT"
//! bytes 4..8   protocol version, u32 big-endian
//! byte  8      role: 1 client, 2 daemon, 3 peer
//! bytes 9..12  zero (reserved)
//! ```

use std::fmt;

/// The protocol version this build speaks. Bump it on any incompatible change to the message
/// enums, the framing or the codec.
pub const PROTOCOL_VERSION: u32 = 5;

/// The first four bytes of every weft connection.
pub const MAGIC: [u8; 4] = *b"WEFT";

/// The size of a handshake in bytes.
pub const HANDSHAKE_LEN: usize = 12;

/// Who is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The `weft` command talking to its daemon.
    Client,
    /// A daemon answering a client.
    Daemon,
    /// A daemon talking to another daemon.
    Peer,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Daemon => 2,
            Role::Peer => 3,
        }
    }

    fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Client),
            2 => Some(Role::Daemon),
            3 => Some(Role::Peer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Daemon => "daemon",
            Role::Peer => "peer",
        })
    }
}

/// One side's opening words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The protocol version the sender speaks.
    pub version: u32,
    /// What the sender is.
    pub role: Role,
}

impl Handshake {
    /// This build's handshake for `role`.
    pub fn ours(role: Role) -> Handshake {
        Handshake {
            version: PROTOCOL_VERSION,
            role,
        }
    }

    /// The handshake's bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut bytes = [0u8; HANDSHAKE_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..8].copy_from_slice(&self.version.to_be_bytes());
        bytes[8] = self.role.to_byte();
        bytes
    }

    /// Reads the other side's handshake and checks that it speaks our version and plays the
    /// role we expect.
    pub fn decode_expecting(
        bytes: &[u8; HANDSHAKE_LEN],
        expected: Role,
    ) -> Result<Handshake, HandshakeError> {
        if bytes[..4] != MAGIC {
            return Err(HandshakeError::NotWeft {
                found: [bytes[0], bytes[1], bytes[2], bytes[3]],
            });
        }
        let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        let role = Role::from_byte(bytes[8]).ok_or(HandshakeError::UnknownRole(bytes[8]))?;
        if role != expected {
            return Err(HandshakeError::WrongRole {
                expected,
                found: role,
            });
        }
        Ok(Handshake { version, role })
    }
}

/// The other side is not a weft of our version, or not the party we expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first bytes are not `WEFT`.
    #[error("the other side does not speak weft (its first bytes are {found:02x?})")]
    NotWeft {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The versions differ.
    #[error(
        "protocol version mismatch: we speak {ours}, the other side speaks {theirs}; \
         run the same weft version on both ends"
    )]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The role byte is none we know.
    #[error("unknown role byte {0} in handshake")]
    UnknownRole(u8),
    /// The other side plays another role than expected.
    #[error("expected a {expected}, but the other side is a {found}")]
    WrongRole {
        /// The role we expected.
        expected: Role,
        /// The role it announced.
        found: Role,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_golden_bytes() {
        let bytes = Handshake::ours(Role::Client).encode();
        assert_eq!(bytes, [b'W', b'E', b'F', b'T', 0, 0, 0, 5, 1, 0, 0, 0]);
        assert_eq!(
            Handshake::decode_expecting(&bytes, Role::Client),
            Ok(Handshake::ours(Role::Client))
        );
    }

    #[test]
    fn mismatches_are_clear_errors() {
        let mut future = Handshake::ours(Role::Peer).encode();
        future[7] = 9;
        let err = Handshake::decode_expecting(&future, Role::Peer).expect_err("version");
        assert_eq!(
            err,
            HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 9
            }
        );
        assert_eq!(
            err.to_string(),
            "protocol version mismatch: we speak 5, the other side speaks 9; run the same weft \
             version on both ends"
        );
        let http = *b"GET / HTTP/1.";
        let mut head = [0u8; HANDSHAKE_LEN];
        head.copy_from_slice(&http[..HANDSHAKE_LEN]);
        assert!(matches!(
            Handshake::decode_expecting(&head, Role::Peer),
            Err(HandshakeError::NotWeft { .. })
        ));
        let daemon = Handshake::ours(Role::Daemon).encode();
        assert_eq!(
            Handshake::decode_expecting(&daemon, Role::Peer),
            Err(HandshakeError::WrongRole {
                expected: Role::Peer,
                found: Role::Daemon
            })
        );
        let mut odd = daemon;
        odd[8] = 77;
        assert_eq!(
            Handshake::decode_expecting(&odd, Role::Daemon),
            Err(HandshakeError::UnknownRole(77))
        );
    }
}
