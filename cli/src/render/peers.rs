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
