//! What `weft` shows. The daemon's reports become text in pure functions, one file per report,
//! each snapshot-tested beside it. [`Renderer`] draws a build's events, live on a terminal or
//! as plain lines; what those lines say is decided in `progress.rs`, also pure.

mod build;
mod error;
mod lines;
mod peers;
mod progress;
mod status;
mod store;
mod team;

pub(crate) use build::Renderer;
pub(crate) use error::{error_text, refusal_text};
pub(crate) use peers::peers_text;
pub(crate) use status::{info_text, status_text};
pub(crate) use store::{cache_text, store_text};
pub(crate) use team::{rotate_text, share_text, verdict_text};
