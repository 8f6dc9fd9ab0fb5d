//! The store's report (`weft cache stats`, and a part of `weft status` and `weft info`) and what
//! the other cache commands did.

use weft_protocol::wire::{CacheReport, StoreReport};

use super::lines::text;

/// The store: where it is, its blobs and their size, actions and pinned blobs.
pub(crate) fn store_text(store: &StoreReport) -> String {
    text(store_lines(store))
}

/// What `weft cache stats|gc|verify` answered.
pub(crate) fn cache_text(report: &CacheReport) -> String {
    let lines = match report {
        CacheReport::Stats(store) => store_lines(store),
        CacheReport::Gc {
            n_removed,
            bytes_freed,
            after,
        } => {
            let mut lines = vec![format!(
                "removed {n_removed} blobs, freed {}",
                human_bytes(*bytes_freed)
            )];
            lines.extend(store_lines(after));
            lines
        }
        CacheReport::Verify {
            n_checked,
            n_corrupt,
            n_index_fixed,
        } => vec![format!(
            "checked {n_checked} blobs: {n_corrupt} corrupt (removed), {n_index_fixed} index \
             entries fixed"
        )],
    };
    text(lines)
}

pub(super) fn store_lines(store: &StoreReport) -> Vec<String> {
    vec![
        format!("store       {}", store.path),
        format!(
            "  blobs     {} ({})",
            store.n_blobs,
            human_bytes(store.bytes)
        ),
        format!("  actions   {}", store.n_actions),
        format!("  pinned    {}", store.n_pinned),
    ]
}

/// A size in bytes, in binary units with one decimal from 1 KiB on.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
