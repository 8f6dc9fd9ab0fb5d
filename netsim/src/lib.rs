//! netsim: a deterministic discrete-event simulator of weft meshes.
//!
//! It will run many instances of the very `weft_node::core` state machines the daemon runs
//! (scheduling, stealing, leases, the peer table, cache lookups) over simulated links with
//! latency, bandwidth, loss and partitions, under churn, on a virtual clock and a seeded RNG,
//! so that the same seed always gives the same trace. It depends on `weft-node` without the
//! `shell` feature: no tokio, no sockets, no store.

#![warn(missing_docs, unreachable_pub)]
