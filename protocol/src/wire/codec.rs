//! The one codec: bincode 2 through serde, with a byte limit on every decode.
//!
//! Every decode of bytes from outside goes through [`decode`], so swapping the codec touches
//! this file only.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MAX_FRAME;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Encodes `value`. Fails when the encoding would exceed [`MAX_FRAME`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes a whole `T` from `bytes`. Fails, without panicking and without allocating more
/// than [`MAX_FRAME`], on any input that is not exactly one encoded `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            n: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Bytes that are not a message, or a message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Decode(String),
    /// A valid message was followed by more bytes.
    #[error("malformed message: {n} bytes left over after the message")]
    TrailingBytes {
        /// How many bytes were left over.
        n: usize,
    },
    /// The message is larger than a frame may be.
    #[error("message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit")]
    TooLarge {
        /// The message's size.
        len: usize,
    },
}
