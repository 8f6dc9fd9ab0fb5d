//! The hermetic sandbox: each job in its own user, mount, pid, network, IPC and UTS namespaces,
//! with a root of its own that holds the toolchain directories read-only and its sandbox.
//!
//! - `host`: what of the machine a job sees (`HostView`, looked up once);
//! - `plan`: what one spawn does, made before the fork (`SpawnPlan`);
//! - `child`: the steps between `fork` and `exec`;
//! - `spawn`: the daemon's side: the probe at start (`Hermetic::probe`) and each spawn
//!   (`Prepared`).

mod child;
mod host;
mod plan;
mod spawn;

pub use host::TOOLCHAIN_DIRS;
pub(crate) use plan::SpawnSpec;
pub(crate) use spawn::{Hermetic, SpawnFailure};
