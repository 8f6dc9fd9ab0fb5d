//! Layering, checked: between the workspace's crates (`layering/crates.rs`, from `cargo
//! metadata`) and between the modules of `node` (`layering/modules.rs`, from the sources of
//! `node/src`).

#[path = "layering/crates.rs"]
mod crates;
#[path = "layering/modules.rs"]
mod modules;
