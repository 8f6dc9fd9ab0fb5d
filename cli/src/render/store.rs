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
        CacheReport::Forgot(entries) if entries.is_empty() => {
            vec!["the pattern names no target; nothing was forgotten".to_owned()]
        }
        CacheReport::Forgot(entries) => entries
            .iter()
            .map(|entry| {
                let job = entry.job.short(12);
                if entry.removed {
                    format!(
                        "forgot {} (job {job}): its next build runs it or takes it from a \
                         teammate",
                        entry.label
                    )
                } else {
                    format!("{} (job {job}): no entry here", entry.label)
                }
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn store() -> StoreReport {
        StoreReport {
            path: "/home/dev/.local/state/weft/store".into(),
            n_blobs: 1234,
            bytes: 56_789_012,
            n_actions: 321,
            n_pinned: 7,
        }
    }

    #[test]
    fn stats() {
        expect![[r#"
            store       /home/dev/.local/state/weft/store
              blobs     1234 (54.2 MiB)
              actions   321
              pinned    7
        "#]]
        .assert_eq(&cache_text(&CacheReport::Stats(store())));
        assert_eq!(
            store_text(&store()),
            cache_text(&CacheReport::Stats(store()))
        );
    }

    #[test]
    fn gc() {
        let report = CacheReport::Gc {
            n_removed: 17,
            bytes_freed: 5 << 30,
            after: StoreReport {
                path: "/home/dev/.local/state/weft/store".into(),
                ..StoreReport::default()
            },
        };
        expect![[r#"
            removed 17 blobs, freed 5.0 GiB
            store       /home/dev/.local/state/weft/store
              blobs     0 (0 B)
              actions   0
              pinned    0
        "#]]
        .assert_eq(&cache_text(&report));
    }

    #[test]
    fn verify() {
        let report = CacheReport::Verify {
            n_checked: 1234,
            n_corrupt: 2,
            n_index_fixed: 3,
        };
        expect![[r#"
            checked 1234 blobs: 2 corrupt (removed), 3 index entries fixed
        "#]]
        .assert_eq(&cache_text(&report));
    }

    #[test]
    fn forget() {
        use weft_protocol::wire::ForgotEntry;
        use weft_protocol::{Digest, JobId};
        let report = CacheReport::Forgot(vec![
            ForgotEntry {
                label: "//src:app".into(),
                job: JobId(Digest::from_bytes([0x5a; 32])),
                removed: true,
            },
            ForgotEntry {
                label: "//src:lib".into(),
                job: JobId(Digest::from_bytes([0x07; 32])),
                removed: false,
            },
        ]);
        expect![[r#"
            forgot //src:app (job 5a5a5a5a5a5a): its next build runs it or takes it from a teammate
            //src:lib (job 070707070707): no entry here
        "#]]
        .assert_eq(&cache_text(&report));
        expect![[r#"
            the pattern names no target; nothing was forgotten
        "#]]
        .assert_eq(&cache_text(&CacheReport::Forgot(Vec::new())));
    }

    #[test]
    fn sizes() {
        let sizes = [
            0,
            1,
            1023,
            1024,
            1536,
            1024 * 1024 - 1,
            10 << 20,
            (3 << 30) + (1 << 29),
            5 << 40,
            7 << 50,
            u64::MAX,
        ];
        let table: String = sizes
            .iter()
            .map(|&bytes| format!("{bytes} -> {}\n", human_bytes(bytes)))
            .collect();
        expect![[r#"
            0 -> 0 B
            1 -> 1 B
            1023 -> 1023 B
            1024 -> 1.0 KiB
            1536 -> 1.5 KiB
            1048575 -> 1024.0 KiB
            10485760 -> 10.0 MiB
            3758096384 -> 3.5 GiB
            5497558138880 -> 5.0 TiB
            7881299347898368 -> 7168.0 TiB
            18446744073709551615 -> 16777216.0 TiB
        "#]]
        .assert_eq(&table);
    }
}
