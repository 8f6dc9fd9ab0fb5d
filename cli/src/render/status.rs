//! `weft status` (the daemon, its mesh, its store) and the first lines of `weft info`.

use std::path::Path;

use weft_protocol::wire::{DaemonStatus, MeshStatus};

use super::lines::text;
use super::store::store_lines;

/// The daemon's state: process, home, slots, the mesh, what it builds, and the store.
pub(crate) fn status_text(status: &DaemonStatus) -> String {
    let mut lines = vec![
        format!(
            "daemon pid {} ({}), up {}s",
            status.pid, status.binary_id, status.uptime_secs
        ),
        format!("home        {}", status.home),
        format!("slots       {}", status.slots),
        sandbox_line(status.weak_sandbox.as_deref()),
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

/// How jobs are sandboxed.
pub(crate) fn sandbox_line(weak: Option<&str>) -> String {
    match weak {
        None => "sandbox     hermetic: each job in its own namespaces, seeing its sandbox and the \
                 toolchain only"
            .to_owned(),
        Some(reason) => format!(
            "sandbox     weak: {reason}; jobs run without namespaces (they can read what this \
             user can, and use the network), and peers' jobs are refused"
        ),
    }
}

fn mesh_lines(mesh: Option<&MeshStatus>) -> Vec<String> {
    let Some(mesh) = mesh else {
        return vec![
            "mesh        off: this node has joined no team (`weft team create`, `weft team join`)"
                .to_owned(),
        ];
    };
    let mut lines = vec![format!(
        "mesh        team {} as {}",
        mesh.team, mesh.peer_id
    )];
    for addr in &mesh.listen {
        lines.push(format!("  listen    {addr}"));
    }
    lines.push(format!("  peers     {} admitted", mesh.n_peers));
    let sharing = match mesh.share.as_str() {
        "always" => "teammates' jobs run here whenever a slot is free",
        "idle" => "teammates' jobs run here while this machine is idle",
        "never" => "teammates' jobs never run here",
        _ => "nothing lent or taken until you choose (`weft team share always|idle|never`)",
    };
    lines.push(format!("  sharing   {}: {sharing}", mesh.share));
    lines.push(format!(
        "  speed     {:.2}× the reference machine (peers give the critical path to one a quarter faster)",
        f64::from(mesh.speed) / 1000.0
    ));
    lines.push(format!(
        "  jobs      {} lent, {} taken, {} results from peers' caches, {} leases requeued",
        mesh.jobs_given, mesh.jobs_stolen, mesh.peer_cache_hits, mesh.leases_requeued
    ));
    lines.push(format!(
        "  trouble   {} corrupt blobs rejected, {} failed admissions, {} nondeterministic jobs, \
         {} quarantined",
        mesh.corrupt_blobs, mesh.admissions_failed, mesh.nondeterministic, mesh.quarantined
    ));
    for node in &mesh.distrusted {
        lines.push(format!(
            "  disowned  {node} (nothing is taken from it; `weft team trust` takes it back)"
        ));
    }
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

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use weft_protocol::wire::StoreReport;

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

    fn status(mesh: Option<MeshStatus>, building: &[&str]) -> DaemonStatus {
        DaemonStatus {
            pid: 4242,
            binary_id: "weft 0.1.0 (123456.1700000000.5)".into(),
            home: "/home/dev/.local/state/weft".into(),
            uptime_secs: 3725,
            building: building.iter().map(|ws| ws.to_string()).collect(),
            slots: 8,
            weak_sandbox: None,
            store: store(),
            mesh,
        }
    }

    #[test]
    fn the_weak_sandbox_is_said() {
        let mut status = status(None, &[]);
        status.weak_sandbox = Some("cannot create the job's namespaces: EPERM".into());
        let text = status_text(&status);
        let line = text
            .lines()
            .find(|l| l.starts_with("sandbox"))
            .expect("a sandbox line");
        expect!["sandbox     weak: cannot create the job's namespaces: EPERM; jobs run without namespaces (they can read what this user can, and use the network), and peers' jobs are refused"].assert_eq(line);
    }

    #[test]
    fn status_without_a_team() {
        expect![[r#"
            daemon pid 4242 (weft 0.1.0 (123456.1700000000.5)), up 3725s
            home        /home/dev/.local/state/weft
            slots       8
            sandbox     hermetic: each job in its own namespaces, seeing its sandbox and the toolchain only
            mesh        off: this node has joined no team (`weft team create`, `weft team join`)
            building    nothing
            store       /home/dev/.local/state/weft/store
              blobs     1234 (54.2 MiB)
              actions   321
              pinned    7
        "#]]
        .assert_eq(&status_text(&status(None, &[])));
    }

    #[test]
    fn status_in_a_mesh() {
        let mesh = MeshStatus {
            team: "5f3a9c01d2e4b677".into(),
            peer_id: "12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT".into(),
            listen: vec![
                "/ip4/192.0.2.10/udp/7070/quic-v1".into(),
                "/ip6/2001:db8::10/udp/7070/quic-v1".into(),
            ],
            n_peers: 3,
            n_running: 2,
            corrupt_blobs: 1,
            admissions_failed: 2,
            jobs_given: 40,
            jobs_stolen: 12,
            peer_cache_hits: 90,
            leases_requeued: 3,
            nondeterministic: 0,
            quarantined: 1,
            distrusted: vec!["7c0f3a2b19e4d5a6".into()],
            share: "idle".into(),
            steal_wait_us: Some((2_800, 41_250)),
            peer_hit_us: Some((1_234, 9_876)),
            bytes_in: 123_456_789,
            bytes_out: 98_765,
            bulk_blobs: 4,
            speed: 1_500,
        };
        expect![[r#"
            daemon pid 4242 (weft 0.1.0 (123456.1700000000.5)), up 3725s
            home        /home/dev/.local/state/weft
            slots       8
            sandbox     hermetic: each job in its own namespaces, seeing its sandbox and the toolchain only
            mesh        team 5f3a9c01d2e4b677 as 12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT
              listen    /ip4/192.0.2.10/udp/7070/quic-v1
              listen    /ip6/2001:db8::10/udp/7070/quic-v1
              peers     3 admitted
              sharing   idle: teammates' jobs run here while this machine is idle
              speed     1.50× the reference machine (peers give the critical path to one a quarter faster)
              jobs      40 lent, 12 taken, 90 results from peers' caches, 3 leases requeued
              trouble   1 corrupt blobs rejected, 2 failed admissions, 0 nondeterministic jobs, 1 quarantined
              disowned  7c0f3a2b19e4d5a6 (nothing is taken from it; `weft team trust` takes it back)
              data      123.5 MB in, 0.1 MB out; 4 large blobs over the bulk lane (TLS on TCP)
              stealing  jobs waited 2.8 ms (p50), 41.2 ms (p99) before a thief took them
              peer hits 1.23 ms (p50), 9.88 ms (p99) from query to checked answer
            building    /home/dev/src/app
            building    /home/dev/src/lib
            store       /home/dev/.local/state/weft/store
              blobs     1234 (54.2 MiB)
              actions   321
              pinned    7
        "#]]
        .assert_eq(&status_text(&status(
            Some(mesh),
            &["/home/dev/src/app", "/home/dev/src/lib"],
        )));
    }

    #[test]
    fn a_new_mesh_has_no_latencies_yet() {
        let mesh = MeshStatus {
            team: "5f3a9c01d2e4b677".into(),
            peer_id: "12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT".into(),
            speed: 1_000,
            share: "not chosen".into(),
            ..MeshStatus::default()
        };
        expect![[r#"
            daemon pid 4242 (weft 0.1.0 (123456.1700000000.5)), up 3725s
            home        /home/dev/.local/state/weft
            slots       8
            sandbox     hermetic: each job in its own namespaces, seeing its sandbox and the toolchain only
            mesh        team 5f3a9c01d2e4b677 as 12D3KooWHgtzBnJgcMwA9ooTjWjUvKaxQvPAXxESgYjH8Zn4YQgT
              peers     0 admitted
              sharing   not chosen: nothing lent or taken until you choose (`weft team share always|idle|never`)
              speed     1.00× the reference machine (peers give the critical path to one a quarter faster)
              jobs      0 lent, 0 taken, 0 results from peers' caches, 0 leases requeued
              trouble   0 corrupt blobs rejected, 0 failed admissions, 0 nondeterministic jobs, 0 quarantined
              data      0.0 MB in, 0.0 MB out; 0 large blobs over the bulk lane (TLS on TCP)
            building    /home/dev/src/app
            store       /home/dev/.local/state/weft/store
              blobs     1234 (54.2 MiB)
              actions   321
              pinned    7
        "#]]
        .assert_eq(&status_text(&status(Some(mesh), &["/home/dev/src/app"])));
    }

    #[test]
    fn info_before_the_daemon_answers() {
        expect![[r#"
            weft 0.1.0
            binary      weft 0.1.0 (123456.1700000000.5)
            home        /home/dev/.local/state/weft
        "#]]
        .assert_eq(&info_text(
            "0.1.0",
            "weft 0.1.0 (123456.1700000000.5)",
            Path::new("/home/dev/.local/state/weft"),
        ));
    }
}
