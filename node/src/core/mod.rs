//! The sans-IO core: scheduling and (later) mesh state machines, driven by events with a time.
