//! Arbitrary strings through the label, template and digest parsers: never a panic, and
//! every label that parses round-trips through its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_protocol::{Digest, Label, PackagePath, Template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(label) = Label::parse(text) {
        assert_eq!(Label::parse(&label.to_string()).as_ref(), Ok(&label));
    }
    if let Ok(here) = PackagePath::new(Some("pkg"), "a/b") {
        let _ = Label::parse_relative(text, &here);
    }
    let _ = Template::parse(text);
    let _ = text.parse::<Digest>();
});
