//! The requests of the local API, one per connection, each kind in its own file.
//!
//! Protocol flow (the messages are in [`weft_protocol::wire`]'s client module):
//! 1. the client and the daemon exchange handshakes (role `Client` and `Daemon`), then
//!    `Hello` messages;
//! 2. the client sends one request;
//! 3. the daemon answers it: a build or graph run streams events and ends with
//!    [`BuildEvent::Done`](weft_protocol::wire::BuildEvent::Done); the others send one
//!    answer. A request that fails gets an error report instead.
//!
//! - `serve`: the connection, and which file serves its request;
//! - `build`: `weft build` (load, lower, run or replay, publish);
//! - `graph`: `weft graph run` (a distbuild JSON graph);
//! - `query`, `cache`, `status` (with `weft peers`), `team` (`weft team distrust` and
//!   `trust`): the one-answer requests;
//! - `forget`: `weft cache forget` (loads and lowers the targets as a build does, under the
//!   build lock, then drops their entries);
//! - `lock`, `run`, `reply`: what builds and graph runs share: taking the build lock,
//!   handing the jobs to the engine and relaying its events, and what is sent back.

mod build;
mod cache;
mod forget;
mod graph;
mod lock;
mod query;
mod reply;
mod run;
mod serve;
mod status;
mod team;

pub(crate) use serve::serve;
