//! `weft status` (the daemon, its mesh, its store) and the first lines of `weft info`.

use std::path::Path;

use weft_protocol::wire::{DaemonStatus, MeshStatus};

use super::store::store_lines;
use super::lines::text;

/// The daemon's state: process, home, slots, the mesh, what it builds, and the store.
pub(crate) fn status_text(status: &DaemonStatus) -> String {
    let mut lines = vec![
        format!(
            "daemon pid {} ({}), up {}s",
            status.pid, status.binary_id, status.uptime_secs
        ),
        format!("home        {}", status.home),
        format!("slots       {}", status.slots),
    ];
    lines.extend(mesh_lines(status.mesh.as_ref()));
    if status.building.is_empty() {
        lines.push("building    nothing".to_owned());
    }
    for workspace in &status.building {
        lines.push(format!("building    {workspace}"));
    }
    lines.extend(store_lines(&status.store));
    text(lines)
}

/// What `weft info` knows before it asks the daemon: this binary and its home.
pub(crate) fn info_text(version: &str, binary_id: &str, home: &Path) -> String {
    text(vec![
        format!("weft {version}"),
        format!("binary      {binary_id}"),
        format!("home        {}", home.display()),
    ])
}

fn mesh_lines(mesh: Option<&MeshStatus>) -> Vec<String> {
    let Some(mesh) = mesh else {
        return vec![
            "mesh        off: this node has joined no team (`weft team create`, `weft team join`)"
                .to_owned(),
        ];
    };
    let mut lines = vec![format!("mesh        team {} as {}", mesh.team, mesh.peer_id)];
    for addr in &mesh.listen {
        lines.push(format!("  listen    {addr}"));
    }
    lines.push(format!("  peers     {} admitted", mesh.n_peers));
    lines.push(format!(
        "  speed     {:.2}× the reference machine (peers give the critical path to one a quarter faster)",
        f64::from(mesh.speed) / 1000.0
    ));
    lines.push(format!(
        "  jobs      {} lent, {} taken, {} results from peers' caches, {} leases requeued",
        mesh.jobs_given, mesh.jobs_stolen, mesh.peer_cache_hits, mesh.leases_requeued
    ));
    lines.push(format!(
        "  trouble   {} corrupt blobs rejected, {} failed admissions, {} nondeterministic jobs",
        mesh.corrupt_blobs, mesh.admissions_failed, mesh.nondeterministic
    ));
    let mb = |bytes: u64| bytes as f64 / 1e6;
    lines.push(format!(
        "  data      {:.1} MB in, {:.1} MB out; {} large blobs over the bulk lane (TLS on TCP)",
        mb(mesh.bytes_in),
        mb(mesh.bytes_out),
        mesh.bulk_blobs
    ));
    let ms = |us: u64| us as f64 / 1000.0;
    if let Some((p50, p99)) = mesh.steal_wait_us {
        lines.push(format!(
            "  stealing  jobs waited {:.1} ms (p50), {:.1} ms (p99) before a thief took them",
            ms(p50),
            ms(p99)
        ));
    }
    if let Some((p50, p99)) = mesh.peer_hit_us {
        lines.push(format!(
            "  peer hits {:.2} ms (p50), {:.2} ms (p99) from query to checked answer",
            ms(p50),
            ms(p99)
        ));
    }
    lines
}
