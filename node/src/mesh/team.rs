//! The team: a 32-byte secret shared by every member, its join token, its printable id, the
//! key admission proofs are made with, and `<home>/team.toml`.
//!
//! ```text
//! token   = "weft-team-1:" 64 hex digits of the secret, 8 hex digits of checksum
//! checksum = the first 4 bytes of blake3("weft team token checksum v1" key derivation of the secret)
//! team id = the first 8 bytes of a blake3 key derivation of the secret, as 16 hex digits
//! admission key = blake3_derive_key("weft 2026 team admission v1", secret)
//! ```
//!
//! The checksum makes a typo or a truncated paste a clear error rather than a node that
//! silently fails admission everywhere. The team id and the admission key are derived one-way:
//! the id is safe to show, and the key never leaves the node (admission proves knowledge of it
//! with a MAC; the `admit` module has the exchange).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use libp2p::PeerId;
use rand::RngCore;
use weft_protocol::hex::{self, HexError};

use crate::fs::{Contents, write_replacing};

/// The prefix of every join token, with the token format's version.
pub const TOKEN_PREFIX: &str = "weft-team-1:";

/// The blake3 key-derivation context for the token checksum.
const CHECKSUM_CONTEXT: &str = "weft 2026 team token checksum v1";
/// The blake3 key-derivation context for the team id.
const TEAM_ID_CONTEXT: &str = "weft 2026 team id v1";
/// The blake3 key-derivation context for the admission key.
const ADMISSION_CONTEXT: &str = "weft 2026 team admission v1";

/// The bytes of the secret.
const SECRET_LEN: usize = 32;
/// The bytes of the checksum in a token.
const CHECKSUM_LEN: usize = 4;

/// The name of the team file in a daemon's home.
const FILE_NAME: &str = "team.toml";

/// The bytes of each side's nonce in an admission exchange.
pub(crate) const NONCE_LEN: usize = 32;

/// The team secret: 32 random bytes every member knows. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TeamSecret([u8; SECRET_LEN]);

impl TeamSecret {
    /// A new random secret, from the operating system's generator.
    pub fn generate() -> TeamSecret {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TeamSecret(bytes)
    }

    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TeamSecret {
        TeamSecret(bytes)
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The team's printable id.
    pub fn team_id(&self) -> TeamId {
        let key = blake3::derive_key(TEAM_ID_CONTEXT, &self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&key[..8]);
        TeamId(id)
    }

    /// The join token that carries this secret.
    pub fn token(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}{}",
            hex::encode(&self.0),
            hex::encode(&checksum(&self.0))
        )
    }
}

impl fmt::Debug for TeamSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeamSecret(team {})", self.team_id())
    }
}

/// A team's short public id: 8 bytes derived one-way from the secret, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamId([u8; 8]);

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeamId({self})")
    }
}

/// A bad join token, or a `team.toml` that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// The token does not start with [`TOKEN_PREFIX`].
    #[error("not a weft join token: it must start with `{TOKEN_PREFIX}`")]
    BadPrefix,
    /// The token has the wrong number of characters after its prefix.
    #[error(
        "join token has {found} characters after `{TOKEN_PREFIX}`, expected {expected}; \
         was it truncated? copy the whole token"
    )]
    BadLength {
        /// The characters found.
        found: usize,
        /// The characters expected.
        expected: usize,
    },
    /// The token holds a character that is not a hex digit.
    #[error("join token has `{0}`, which is not a hex digit; copy the token again")]
    BadDigit(char),
    /// The checksum does not match the secret.
    #[error("join token checksum does not match: the token was mistyped; copy it again")]
    BadChecksum,
    /// `team.toml` cannot be read or written.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `team.toml` is not what [`store`] writes.
    #[error("`{}` is malformed: {reason}; run `weft team join TOKEN` again", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Makes a new team: its secret and the join token to hand to the other members.
pub fn create() -> (TeamSecret, String) {
    let secret = TeamSecret::generate();
    let token = secret.token();
    (secret, token)
}

/// Reads a join token. Surrounding whitespace is ignored.
pub fn parse_token(token: &str) -> Result<TeamSecret, TeamError> {
    let body = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TeamError::BadPrefix)?;
    let mut bytes = [0u8; SECRET_LEN + CHECKSUM_LEN];
    hex::decode(body, &mut bytes).map_err(|e| match e {
        HexError::NotHex { found, .. } => TeamError::BadDigit(found),
        HexError::WrongLength { found, expected } => TeamError::BadLength { found, expected },
    })?;
    let (secret, sum) = bytes.split_at(SECRET_LEN);
    let mut secret_bytes = [0u8; SECRET_LEN];
    secret_bytes.copy_from_slice(secret);
    if sum != checksum(&secret_bytes) {
        return Err(TeamError::BadChecksum);
    }
    Ok(TeamSecret(secret_bytes))
}

/// The path of the team file in the daemon's home directory `home`.
pub fn path(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

/// Loads the team this node belongs to from the daemon's home directory `home`, or `None` when
/// it has joined none.
pub fn load(home: &Path) -> Result<Option<TeamSecret>, TeamError> {
    let path = path(home);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TeamError::Io { path, source }),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TeamFile {
        token: String,
    }
    let file: TeamFile = toml::from_str(&text).map_err(|e| TeamError::Malformed {
        path: path.clone(),
        reason: e.message().to_owned(),
    })?;
    parse_token(&file.token)
        .map(Some)
        .map_err(|e| TeamError::Malformed {
            path,
            reason: e.to_string(),
        })
}

/// Stores `secret` as this node's team in the daemon's home directory `home`, readable by its
/// owner only (mode 0600), replacing any team it had.
pub fn store(home: &Path, secret: &TeamSecret) -> Result<(), TeamError> {
    let path = path(home);
    let text = format!(
        "# The weft team this node belongs to (team id {}).\n\
         # Anyone with this token can join the team: keep this file private.\n\
         token = \"{}\"\n",
        secret.team_id(),
        secret.token()
    );
    write_replacing(&path, text.as_bytes(), Contents::Secret)
        .map_err(|source| TeamError::Io { path, source })
}

fn checksum(secret: &[u8; SECRET_LEN]) -> [u8; CHECKSUM_LEN] {
    let key = blake3::derive_key(CHECKSUM_CONTEXT, secret);
    [key[0], key[1], key[2], key[3]]
}

/// The key admission proofs are made with, derived from the team secret.
#[derive(Clone)]
pub(crate) struct AdmissionKey([u8; 32]);

impl AdmissionKey {
    pub(crate) fn new(secret: &TeamSecret) -> AdmissionKey {
        AdmissionKey(blake3::derive_key(ADMISSION_CONTEXT, secret.as_bytes()))
    }

    /// The proof for `role` in the exchange between `initiator` and `responder`.
    pub(crate) fn mac(
        &self,
        role: &[u8],
        initiator: &PeerId,
        responder: &PeerId,
        nonce_i: &[u8; NONCE_LEN],
        nonce_r: &[u8; NONCE_LEN],
    ) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for part in [role, &initiator.to_bytes(), &responder.to_bytes()] {
            hasher.update(&(part.len() as u32).to_be_bytes());
            hasher.update(part);
        }
        hasher.update(nonce_i);
        hasher.update(nonce_r);
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_typos() {
        let (secret, token) = create();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 72);
        assert_eq!(parse_token(&format!("  {token}\n")).expect("parse"), secret);
        assert_eq!(format!("{}", secret.team_id()).len(), 16);

        let mut typo = token.clone().into_bytes();
        let last = typo.len() - 20;
        typo[last] = if typo[last] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(matches!(parse_token(&typo), Err(TeamError::BadChecksum)));
        assert!(matches!(
            parse_token(&token[..token.len() - 3]),
            Err(TeamError::BadLength { .. })
        ));
        assert!(matches!(
            parse_token("weft-team-1:xyz"),
            Err(TeamError::BadDigit('x'))
        ));
        assert!(matches!(parse_token("hello"), Err(TeamError::BadPrefix)));
        assert!(!format!("{secret:?}").contains(&token[TOKEN_PREFIX.len()..][..16]));
    }

    #[test]
    fn team_file_round_trip_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path();
        assert!(load(home).expect("load").is_none());
        let (secret, _) = create();
        store(home, &secret).expect("store");
        assert_eq!(load(home).expect("load"), Some(secret));
        let mode = std::fs::metadata(path(home))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(home), "token = 3\n").expect("write");
        assert!(matches!(load(home), Err(TeamError::Malformed { .. })));
    }

    #[test]
    fn proofs_are_bound_to_role_peers_nonces_and_secret() {
        let key = AdmissionKey::new(&TeamSecret::from_bytes([7; 32]));
        let (a, b) = (PeerId::random(), PeerId::random());
        let (n1, n2) = ([1; 32], [2; 32]);
        let base = key.mac(b"responder", &a, &b, &n1, &n2);
        assert_ne!(base, key.mac(b"initiator", &a, &b, &n1, &n2));
        assert_ne!(base, key.mac(b"responder", &b, &a, &n1, &n2));
        assert_ne!(base, key.mac(b"responder", &a, &b, &n2, &n1));
        let other = AdmissionKey::new(&TeamSecret::from_bytes([8; 32]));
        assert_ne!(base, other.mac(b"responder", &a, &b, &n1, &n2));
        assert_eq!(base, key.mac(b"responder", &a, &b, &n1, &n2));
    }
}
