//! The daemon's home directory and what lives in it.
//!
//! ```text
//! <home>/daemon.sock    the local API
//! <home>/daemon.pid     the daemon's pid; locked while it runs, so there is one per home
//! <home>/daemon.lock    taken by clients while they start a daemon
//! <home>/daemon.log     the daemon's log
//! <home>/identity.key   the node's ed25519 key
//! <home>/team.toml      the team this node belongs to
//! <home>/distrusted.toml the nodes this node disowned or took back, and what teammates said
//! <home>/store/         the content-addressed store
//! <home>/sandbox/       job sandboxes (on the store's filesystem, so outputs move in cheaply)
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libp2p_identity::{KeyType, Keypair};
use weft_protocol::NodeId;

/// The paths of a daemon's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The daemon's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }

    /// The pid file, locked by the running daemon.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    /// The lock clients take while starting a daemon.
    pub fn start_lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's log file.
    pub fn log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// The node's identity key.
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// The store's directory.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Where the second links of published files are kept (see `outputs.rs`).
    pub fn kept_outputs(&self) -> PathBuf {
        self.root.join("published")
    }

    /// How long each job took last time (see `engine/durations.rs`).
    pub fn durations(&self) -> PathBuf {
        self.root.join("durations.json")
    }

    /// The digests of the toolchain's system files, by path and stamp (see
    /// `exec/system/cache.rs`).
    pub fn system_digests(&self) -> PathBuf {
        self.root.join("system-digests.json")
    }

    /// The jobs running now, written before each starts (see `engine/journal.rs`).
    pub fn running_journal(&self) -> PathBuf {
        self.root.join("running.log")
    }

    /// The signed statements on disowned nodes (see `disown.rs`).
    pub fn distrusted(&self) -> PathBuf {
        self.root.join("distrusted.toml")
    }

    /// Where job sandboxes are made.
    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandbox")
    }

    /// Creates the home directory, readable by its owner only.
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
    }

    /// Takes the pid-file lock and writes our pid into it, or says which pid holds it. The
    /// lock lasts as long as the returned file is open.
    pub fn lock_pid_file(&self) -> Result<File, PidLockError> {
        let path = self.pid_file();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| PidLockError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(PidLockError::Running {
                    pid: text.trim().parse().unwrap_or(0),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(PidLockError::Io { path, source });
            }
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|source| PidLockError::Io { path, source })?;
        Ok(file)
    }

    /// Loads the node's identity, creating it on first start. A key file that holds a key of
    /// another kind than ed25519 is refused ([`IdentityError::NotEd25519`]).
    pub fn load_or_create_identity(&self) -> Result<Keypair, IdentityError> {
        let path = self.identity();
        match std::fs::read(&path) {
            Ok(bytes) => decode_identity(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair
                    .to_protobuf_encoding()
                    .map_err(|e| IdentityError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                match crate::fs::write_new(&path, &bytes, crate::fs::Contents::Secret) {
                    Ok(()) => Ok(keypair),
                    // Another process made it first: use that one, as every process must.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.load_or_create_identity()
                    }
                    Err(source) => Err(IdentityError::Io { path, source }),
                }
            }
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }
}

/// Decodes the identity key read from `path`: an ed25519 key in libp2p's protobuf encoding.
/// A key of another kind is refused: a node's [`NodeId`] is its ed25519 public key.
fn decode_identity(path: &Path, bytes: &[u8]) -> Result<Keypair, IdentityError> {
    let not_ed25519 = |kind: String| IdentityError::NotEd25519 {
        path: path.to_owned(),
        kind,
    };
    // This build decodes ed25519 keys only, and would call any other kind damaged: name the
    // kind before decoding.
    if let Some(kind) = stored_key_type(bytes).and_then(other_key_type) {
        return Err(not_ed25519(kind.to_owned()));
    }
    let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    match keypair.key_type() {
        KeyType::Ed25519 => Ok(keypair),
        other => Err(not_ed25519(other.to_string().to_lowercase())),
    }
}

/// The `Type` field (number 1) of a libp2p `PrivateKey` protobuf message, or `None` when the
/// bytes are not such a message.
fn stored_key_type(mut bytes: &[u8]) -> Option<u64> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => return varint(&mut bytes),
            (_, 0) => {
                varint(&mut bytes)?;
            }
            (_, 2) => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            _ => return None,
        }
    }
    None
}

/// The name of a libp2p key type other than ed25519 (`KeyType` in libp2p's `keys.proto`);
/// `None` for ed25519 and for numbers that name no key type.
fn other_key_type(kind: u64) -> Option<&'static str> {
    match kind {
        0 => Some("rsa"),
        2 => Some("secp256k1"),
        3 => Some("ecdsa"),
        _ => None,
    }
}

/// The [`NodeId`] of an ed25519 identity.
pub fn node_id(keypair: &Keypair) -> NodeId {
    match keypair.clone().try_into_ed25519() {
        Ok(ed) => NodeId(ed.public().to_bytes()),
        // Identities are only ever created as ed25519 keys; another kind is refused on load.
        Err(_) => NodeId([0; 32]),
    }
}

/// The pid file is locked by another daemon, or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PidLockError {
    /// Another daemon runs with this home.
    #[error("another weft daemon (pid {pid}) is already running with this home")]
    Running {
        /// Its pid, or 0 when the pid file could not be read.
        pid: u32,
    },
    /// The pid file cannot be opened or written.
    #[error("cannot use the pid file `{path}`: {source}")]
    Io {
        /// The pid file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// The identity key cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but does not hold a key.
    #[error("the identity key `{path}` is damaged ({reason}); move it away to make a new identity")]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds a key of another kind than ed25519.
    #[error(
        "the identity key `{path}` is a {kind} key, but a weft node's identity is an ed25519 \
         key; move it away to make a new identity"
    )]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
        /// The kind of key it holds, such as `secp256k1`.
        kind: String,
    },
    /// The key file cannot be read or written.
    #[error("cannot use the identity key `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A libp2p `PrivateKey` message of `kind` holding 32 bytes of key.
    fn private_key(kind: u8) -> Vec<u8> {
        let mut bytes = vec![0x08, kind, 0x12, 32];
        bytes.extend([7u8; 32]);
        bytes
    }

    #[test]
    fn the_node_id_of_a_key_is_the_one_its_peer_id_carries() {
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        assert_eq!(crate::mesh::node_id_of(&peer), Some(node_id(&keypair)));
    }

    #[test]
    fn an_identity_is_made_once_and_loaded_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        let made = home.load_or_create_identity().expect("create");
        let loaded = home.load_or_create_identity().expect("load");
        assert_eq!(node_id(&made), node_id(&loaded));
        assert_ne!(node_id(&made), NodeId([0; 32]));
        let bytes = std::fs::read(home.identity()).expect("read");
        assert_eq!(stored_key_type(&bytes), Some(1), "ed25519");
    }

    #[test]
    fn a_key_of_another_kind_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        for (kind, name) in [(0, "rsa"), (2, "secp256k1"), (3, "ecdsa")] {
            std::fs::write(home.identity(), private_key(kind)).expect("write");
            let err = home.load_or_create_identity().expect_err(name);
            assert!(matches!(err, IdentityError::NotEd25519 { .. }), "{err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "the identity key `{}` is a {name} key, but a weft node's identity is an \
                     ed25519 key; move it away to make a new identity",
                    home.identity().display()
                )
            );
        }
    }

    #[test]
    fn a_damaged_key_is_refused_as_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        // An ed25519 key with too few bytes, an unknown kind, and no protobuf at all.
        let short = vec![0x08, 1, 0x12, 2, 1, 2];
        for bytes in [short, private_key(9), b"not a key".to_vec()] {
            std::fs::write(home.identity(), &bytes).expect("write");
            let err = home.load_or_create_identity().expect_err("damaged");
            assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        }
    }

    #[test]
    fn the_key_type_is_read_from_the_first_field_numbered_one() {
        let cases: [(&[u8], Option<u64>); 7] = [
            (&[0x08, 0x02], Some(2)),
            // Field 2 (bytes) first, then field 1.
            (&[0x12, 0x01, 0xff, 0x08, 0x03], Some(3)),
            // Another varint field first.
            (&[0x18, 0x96, 0x01, 0x08, 0x00], Some(0)),
            (&[0x12, 0x05, 0x00], None),
            (&[0x08], None),
            (&[0x0d, 0, 0, 0, 0], None),
            (&[], None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(stored_key_type(bytes), expected, "{bytes:?}");
        }
        let too_long = [0xff; 11];
        assert_eq!(stored_key_type(&too_long), None);
    }
}
