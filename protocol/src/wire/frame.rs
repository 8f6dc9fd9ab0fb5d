//! Length-prefixed frames with a hard maximum.
//!
//! Like mini-redis's `frame.rs`, this parses bytes and knows nothing of sockets: "need more
//! bytes" is `Ok(None)`, not an error.

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, CodecError};

/// The largest frame payload, in bytes: 16 MiB. Blobs stream outside frames.
pub const MAX_FRAME: usize = 16 << 20;

/// The size of the big-endian length that precedes every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Appends `payload` to `dst` as one frame.
pub fn encode_frame(payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or(FrameError::TooLarge {
            len: payload.len() as u64,
        })?;
    dst.reserve(LENGTH_PREFIX + payload.len());
    dst.put_u32(len);
    dst.put_slice(payload);
    Ok(())
}

/// Takes one whole frame's payload off the front of `src`, or returns `Ok(None)` when `src`
/// does not hold a whole frame yet. A length over [`MAX_FRAME`] is an error as soon as the
/// prefix arrives, before anything is buffered for it.
pub fn decode_frame(src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
    let Some(prefix) = src.get(..LENGTH_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    if src.len() < LENGTH_PREFIX + len {
        src.reserve(LENGTH_PREFIX + len - src.len());
        return Ok(None);
    }
    src.advance(LENGTH_PREFIX);
    Ok(Some(src.split_to(len)))
}

/// Encodes `message` and appends it to `dst` as one frame.
pub fn write_message<T: Serialize>(message: &T, dst: &mut BytesMut) -> Result<(), WireError> {
    let payload = codec::encode(message)?;
    encode_frame(&payload, dst)?;
    Ok(())
}

/// Takes one message off the front of `src`, or `Ok(None)` when more bytes are needed.
pub fn read_message<T: DeserializeOwned>(src: &mut BytesMut) -> Result<Option<T>, WireError> {
    match decode_frame(src)? {
        Some(payload) => Ok(Some(codec::decode(&payload)?)),
        None => Ok(None),
    }
}

/// A frame whose length is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The length the frame claims.
        len: u64,
    },
}

/// A frame or the message in it is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The framing is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The message inside the frame is bad.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_more_bytes_is_not_an_error() {
        let mut buf = BytesMut::new();
        encode_frame(b"hello", &mut buf).expect("small frame");
        let whole = buf.clone();
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_frame(&mut partial), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            decode_frame(&mut buf).expect("whole").as_deref(),
            Some(&b"hello"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_fails_before_buffering() {
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(
            decode_frame(&mut buf),
            Err(FrameError::TooLarge {
                len: u32::MAX as u64
            })
        );
        assert!(buf.capacity() < 1024);
        let too_big = vec![0u8; MAX_FRAME + 1];
        let mut out = BytesMut::new();
        assert!(encode_frame(&too_big, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut buf = BytesMut::new();
        write_message(&"one".to_owned(), &mut buf).expect("encode");
        write_message(&"two".to_owned(), &mut buf).expect("encode");
        assert_eq!(read_message::<String>(&mut buf), Ok(Some("one".to_owned())));
        assert_eq!(read_message::<String>(&mut buf), Ok(Some("two".to_owned())));
        assert_eq!(read_message::<String>(&mut buf), Ok(None));
    }
}
