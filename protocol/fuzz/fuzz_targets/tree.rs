//! Arbitrary bytes through the tree decoder: never a panic, and a tree that decodes names
//! nothing outside its directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_protocol::{path, Tree};

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        for entry in &tree.entries {
            assert!(path::check_file_name(&entry.name).is_ok());
        }
    }
});
