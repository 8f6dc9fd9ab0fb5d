//! The daemon's home directory and what lives in it.
//!
//! ```text
//! <home>/daemon.sock    the local API
//! <home>/daemon.pid     the daemon's pid; locked while it runs, so there is one per home
//! <home>/daemon.lock    taken by clients while they start a daemon
//! <home>/daemon.log     the daemon's log
//! <home>/identity.key   the node's ed25519 key
//! <home>/team.toml      the team this node belongs to
//! <home>/store/         the content-addressed store
//! <home>/sandbox/       job sandboxes (on the store's filesystem, so outputs move in cheaply)
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libp2p_identity::Keypair;
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

    /// Loads the node's identity, creating it on first start.
    pub fn load_or_create_identity(&self) -> Result<Keypair, IdentityError> {
        let path = self.identity();
        match std::fs::read(&path) {
            Ok(bytes) => {
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            }
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
    /// The key file cannot be read or written.
    #[error("cannot use the identity key `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}
