//! `weft peers`: each peer of the mesh, or why there are none.

use weft_protocol::wire::{PeerReport, SharePolicy};

use super::lines::text;

/// Every peer: its id, admission, address, round trip, load, tools, speed and results.
pub(crate) fn peers_text(peers: &[PeerReport]) -> String {
    if peers.is_empty() {
        return text(vec![
            "no peers yet. With no team there is no mesh (see `weft team`); on a network \
             without multicast, list peers in `config.toml` or pass `--peer`"
                .to_owned(),
        ]);
    }
    text(peers.iter().flat_map(peer_lines).collect())
}

fn peer_lines(peer: &PeerReport) -> Vec<String> {
    let rtt = peer
        .rtt_us
        .map_or("-".to_owned(), |us| format!("{:.2}ms", us as f64 / 1000.0));
    let share = match peer.share {
        Some(SharePolicy::Always) => "always",
        Some(SharePolicy::Idle) => "idle",
        Some(SharePolicy::Never) => "never",
        None => "-",
    };
    let num = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
    vec![
        peer.peer_id.clone(),
        format!(
            "  admission {}{}",
            peer.admission,
            if peer.avoided { ", avoided" } else { "" }
        ),
        format!(
            "  address   {}",
            peer.addrs.first().map_or("-", String::as_str)
        ),
        format!("  rtt       {rtt}"),
        format!(
            "  load      {} free slots, {} queued; sharing {share} (at most {} slots)",
            num(peer.free_slots),
            num(peer.queue_len),
            num(peer.max_shared_slots)
        ),
        format!(
            "  tools     {} on {}; speed {}",
            num(peer.n_tools),
            peer.platform.as_deref().unwrap_or("-"),
            peer.speed
                .map_or("-".to_owned(), |s| format!("{:.2}×", f64::from(s) / 1000.0))
        ),
        format!(
            "  results   {} announced; {} of our jobs running there; {} corrupt blobs",
            peer.n_results, peer.n_leased, peer.corrupt_blobs
        ),
    ]
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn no_peers_says_why() {
        expect![[r#"
            no peers yet. With no team there is no mesh (see `weft team`); on a network without multicast, list peers in `config.toml` or pass `--peer`
        "#]]
        .assert_eq(&peers_text(&[]));
    }

    #[test]
    fn peers_with_and_without_a_beacon() {
        let busy = PeerReport {
            peer_id: "12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT".into(),
            addrs: vec![
                "/ip4/192.0.2.11/udp/7070/quic-v1".into(),
                "/ip4/198.51.100.11/udp/7070/quic-v1".into(),
            ],
            rtt_us: Some(1_375),
            admission: "admitted".into(),
            free_slots: Some(2),
            queue_len: Some(17),
            platform: Some("linux-x86_64".into()),
            n_tools: Some(5),
            share: Some(SharePolicy::Idle),
            max_shared_slots: Some(4),
            speed: Some(1_250),
            n_results: 310,
            n_leased: 3,
            avoided: true,
            corrupt_blobs: 1,
        };
        let new = PeerReport {
            peer_id: "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK".into(),
            addrs: vec![],
            rtt_us: None,
            admission: "blocked (42s)".into(),
            free_slots: None,
            queue_len: None,
            platform: None,
            n_tools: None,
            share: None,
            max_shared_slots: None,
            speed: None,
            n_results: 0,
            n_leased: 0,
            avoided: false,
            corrupt_blobs: 0,
        };
        let always = PeerReport {
            share: Some(SharePolicy::Always),
            avoided: false,
            ..busy.clone()
        };
        let never = PeerReport {
            share: Some(SharePolicy::Never),
            ..new.clone()
        };
        expect![[r#"
            12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT
              admission admitted, avoided
              address   /ip4/192.0.2.11/udp/7070/quic-v1
              rtt       1.38ms
              load      2 free slots, 17 queued; sharing idle (at most 4 slots)
              tools     5 on linux-x86_64; speed 1.25×
              results   310 announced; 3 of our jobs running there; 1 corrupt blobs
            12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK
              admission blocked (42s)
              address   -
              rtt       -
              load      - free slots, - queued; sharing - (at most - slots)
              tools     - on -; speed -
              results   0 announced; 0 of our jobs running there; 0 corrupt blobs
            12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT
              admission admitted
              address   /ip4/192.0.2.11/udp/7070/quic-v1
              rtt       1.38ms
              load      2 free slots, 17 queued; sharing always (at most 4 slots)
              tools     5 on linux-x86_64; speed 1.25×
              results   310 announced; 3 of our jobs running there; 1 corrupt blobs
            12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK
              admission blocked (42s)
              address   -
              rtt       -
              load      - free slots, - queued; sharing never (at most - slots)
              tools     - on -; speed -
              results   0 announced; 0 of our jobs running there; 0 corrupt blobs
        "#]]
        .assert_eq(&peers_text(&[busy, new, always, never]));
    }
}
