//! Arbitrary bytes, split at an arbitrary point, through the frame decoder and the message
//! codec: never a panic, and every decoded frame is within the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_protocol::wire::{self, PeerMessage, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::from(&data[..cut]);
    let mut fed = cut;
    loop {
        match wire::decode_frame(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= MAX_FRAME);
                let _ = wire::decode::<PeerMessage>(&frame);
            }
            Ok(None) if fed < data.len() => {
                buf.extend_from_slice(&data[fed..]);
                fed = data.len();
            }
            Ok(None) | Err(_) => break,
        }
    }
});
