//! The daemon: the local API on a Unix socket, build sessions and workspace locks.
