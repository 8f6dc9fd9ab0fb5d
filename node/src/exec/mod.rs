//! Source digests, toolchain fingerprints and the sandboxed executor.
