//! `weft status` and `weft peers`: what the daemon, its store and its mesh are doing.

use std::time::Duration;

use weft_protocol::wire::{DaemonMessage, DaemonStatus, MeshStatus, PeerReport, SharePolicy};

use super::super::conn::{ConnError, ConnWriter};
use super::super::shared::Shared;
use crate::exec::SandboxMode;
use crate::mesh::{Admission, team};

/// Serves `weft status`.
pub(crate) async fn status(shared: &Shared, writer: &mut ConnWriter) -> Result<(), ConnError> {
    let building = shared
        .locks
        .busy()
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    let status = DaemonStatus {
        pid: std::process::id(),
        binary_id: shared.config.binary_id.clone(),
        home: shared.home.root().display().to_string(),
        uptime_secs: shared.started.elapsed().as_secs(),
        building,
        slots: u32::try_from(shared.config.slots).unwrap_or(u32::MAX),
        weak_sandbox: match &shared.sandbox {
            SandboxMode::Hermetic => None,
            SandboxMode::Weak { reason } => Some(reason.clone()),
        },
        store: shared.store_report(),
        mesh: mesh_status(shared).await,
    };
    writer.send(&DaemonMessage::Status(Box::new(status))).await
}

/// Serves `weft peers`.
pub(crate) async fn peers(shared: &Shared, writer: &mut ConnWriter) -> Result<(), ConnError> {
    writer
        .send(&DaemonMessage::Peers(peer_reports(shared).await))
        .await
}

/// The mesh part of `weft status`; `None` without a team.
async fn mesh_status(shared: &Shared) -> Option<MeshStatus> {
    let mesh = shared.mesh.as_ref()?;
    let report = shared.engine.report().await;
    let stats = mesh.stats();
    let team = team::load(shared.home.root())
        .ok()
        .flatten()
        .map(|t| t.team_id().to_string());
    Some(MeshStatus {
        team: team.unwrap_or_default(),
        peer_id: mesh.local_peer().to_string(),
        listen: mesh
            .listen_addrs()
            .await
            .iter()
            .map(|a| a.to_string())
            .collect(),
        n_peers: saturating_u32(report.peers.len()),
        n_running: saturating_u32(report.running),
        corrupt_blobs: stats.corrupt_blobs,
        admissions_failed: stats.admissions_failed,
        jobs_given: report.stats.jobs_given,
        jobs_stolen: report.stats.jobs_stolen,
        peer_cache_hits: report.stats.peer_cache_hits,
        leases_requeued: report.stats.leases_requeued,
        nondeterministic: report.nondeterministic,
        quarantined: report.stats.quarantined,
        distrusted: report.distrusted.iter().map(ToString::to_string).collect(),
        share: match shared.config.mesh.share {
            Some(SharePolicy::Always) => "always",
            Some(SharePolicy::Idle) => "idle",
            Some(SharePolicy::Never) => "never",
            None => "not chosen",
        }
        .to_owned(),
        steal_wait_us: report.steal_wait.map(micros_pair),
        peer_hit_us: report.peer_hit.map(micros_pair),
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        bulk_blobs: stats.bulk_blobs,
        speed: shared.speed,
    })
}

/// Every peer the mesh knows, with what the core knows of it, by peer id.
async fn peer_reports(shared: &Shared) -> Vec<PeerReport> {
    let Some(mesh) = &shared.mesh else {
        return Vec::new();
    };
    let views = shared.engine.report().await.peers;
    let mut reports: Vec<PeerReport> = mesh
        .peers()
        .await
        .into_iter()
        .map(|info| {
            let view = info
                .node
                .and_then(|node| views.iter().find(|v| v.node == node));
            let beacon = view.and_then(|v| v.beacon.as_ref());
            PeerReport {
                peer_id: info.peer.to_string(),
                addrs: info.addrs.iter().map(|a| a.to_string()).collect(),
                rtt_us: info.rtt.map(micros),
                admission: admission_text(&info.admission),
                free_slots: beacon.map(|b| b.free_slots),
                queue_len: beacon.map(|b| b.queue_len),
                platform: beacon.map(|b| b.platform.clone()),
                n_tools: beacon.map(|b| saturating_u32(b.tools.len())),
                share: beacon.map(|b| b.share),
                max_shared_slots: beacon.map(|b| b.max_shared_slots),
                speed: beacon.map(|b| b.speed),
                n_results: view.map_or(0, |v| v.n_results as u64),
                n_leased: view.map_or(0, |v| v.n_leased as u64),
                avoided: view.is_some_and(|v| v.avoided_until.is_some()),
                corrupt_blobs: info.n_corrupt,
            }
        })
        .collect();
    reports.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    reports
}

/// A peer's admission as `weft peers` shows it.
fn admission_text(admission: &Admission) -> String {
    match admission {
        Admission::Admitted => "admitted".to_owned(),
        Admission::Pending => "pending".to_owned(),
        Admission::Blocked { remaining } => format!("blocked ({}s)", remaining.as_secs()),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn micros_pair((a, b): (Duration, Duration)) -> (u64, u64) {
    (micros(a), micros(b))
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissions_and_durations_as_reported() {
        assert_eq!(admission_text(&Admission::Admitted), "admitted");
        assert_eq!(admission_text(&Admission::Pending), "pending");
        let blocked = Admission::Blocked {
            remaining: Duration::from_millis(59_900),
        };
        assert_eq!(admission_text(&blocked), "blocked (59s)");
        assert_eq!(
            micros_pair((Duration::from_nanos(1_999), Duration::from_secs(2))),
            (1, 2_000_000)
        );
        assert_eq!(micros(Duration::MAX), u64::MAX);
        assert_eq!(saturating_u32(usize::MAX), u32::MAX);
        assert_eq!(saturating_u32(7), 7);
    }
}
