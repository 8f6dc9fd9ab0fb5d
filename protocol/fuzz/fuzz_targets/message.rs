//! Arbitrary bytes through every message decoder: never a panic, and what decodes re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_protocol::wire::{self, ClientMessage, DaemonMessage, PeerMessage};
use weft_protocol::{ActionResult, Job};

fn check<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(value) = wire::decode::<T>(data) {
        let again = wire::encode(&value).expect("a decoded message re-encodes");
        assert!(wire::decode::<T>(&again).is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    check::<ClientMessage>(data);
    check::<DaemonMessage>(data);
    check::<PeerMessage>(data);
    check::<ActionResult>(data);
    check::<Job>(data);
    if let Ok(job) = wire::decode::<Job>(data) {
        let _ = job.validate();
        let _ = job.id();
    }
});
