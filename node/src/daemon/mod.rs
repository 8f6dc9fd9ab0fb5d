//! The daemon: the local API on a Unix socket, build sessions and workspace locks.
//!
//! Protocol flow of the local API is in [`weft_protocol::wire`]'s client module; this module
//! serves it ([`run`]) and speaks it from the client side ([`client`]).
//!
//! `server` starts the daemon and accepts connections; `request` serves each connection's
//! request, one file per kind, over the state in `shared`; `engine` runs the jobs; `lower`
//! turns targets and graph jobs into jobs, and `outputs` publishes what they made.

pub mod client;
mod config;
mod conn;
mod disown;
mod engine;
mod home;
mod locks;
mod lower;
mod outputs;
mod request;
mod server;
mod shared;
mod speed;

pub use config::{DaemonConfig, MeshSettings};
pub use conn::ConnError;
pub use disown::DistrustFileError;
pub use home::{Home, IdentityError, PidLockError, node_id};
pub use server::{DaemonError, run};
