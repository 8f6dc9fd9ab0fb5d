//! Trust between real daemons on loopback (issue 17, tests 5 and 7): a forged result (signed
//! by a key that is no admitted node's, or for another job), an unsigned one and one signed by
//! a disowned node give no cache hit; `weft team distrust` removes the node's entries, is kept
//! across restarts, and is followed by teammates as their `follow_distrust` says; `weft team
//! trust` takes it back; `weft cache forget` drops one entry; `weft team rotate` refuses the
//! old token.
//!
//! The forged results are planted in a stopped node's store, as a node that lies would hold
//! them, so that its daemon serves them to the origin through the real protocol.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft_node::daemon::{Home, node_id};
use weft_node::mesh::Keypair;
use weft_protocol::{Digest, JobId, Signature};
use weft_store::Store;
use weft_tests::{
    NodeSpec, TestMesh, TestNode, events_of, names_of, tail_of, text, wait_until, workspace,
};

/// Four independent quick jobs.
const FOUR: &str = r#"
[job(
    name = "t" + str(i),
    outs = ["o" + str(i)],
    cmds = [exec(["sh", "-c", "echo " + str(i) + " > {{OUTPUT_DIR}}/o" + str(i)])],
) for i in range(4)]
"#;

const TARGETS: [&str; 4] = ["//:t0", "//:t1", "//:t2", "//:t3"];

/// A node that shares no work: every result comes from a run here or a cache.
fn cache_only() -> NodeSpec {
    let mut spec = NodeSpec::sharing(2);
    spec.share = "never";
    spec
}

/// Builds a new copy of the workspace on `node`; the build must succeed.
fn build_fresh(node: &TestNode) -> Vec<Value> {
    let ws = workspace(&[("BUILD", FOUR)]);
    let (output, events) = node.build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    for (i, target) in TARGETS.iter().enumerate() {
        let out = std::fs::read_to_string(ws.path().join(format!("weft-out/o{i}")))
            .unwrap_or_else(|e| panic!("{target}'s output: {e}"));
        assert_eq!(out, format!("{i}\n"));
    }
    events
}

/// The targets that came from a peer's cache, with the peer (in hex).
fn peer_hits(events: &[Value]) -> BTreeMap<String, String> {
    events_of(events, "CacheHit")
        .iter()
        .filter_map(|hit| {
            let peer = hit["source"].get("Peer")?.as_str()?.to_owned();
            Some((hit["name"].as_str()?.to_owned(), peer))
        })
        .collect()
}

/// The targets that ran, with the node that ran them.
fn ran(events: &[Value]) -> BTreeMap<String, String> {
    events_of(events, "Started")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["node"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Every target, run by `node`.
fn all_ran_on(node: &TestNode) -> BTreeMap<String, String> {
    TARGETS
        .iter()
        .map(|t| ((*t).to_owned(), node.node_id.clone()))
        .collect()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `weft status` of `node` lists `peer` (in hex) as disowned.
fn disowns(node: &TestNode, peer: &TestNode) -> bool {
    node.status()
        .lines()
        .any(|l| l.trim().starts_with("disowned") && l.contains(&peer.node_id[..16]))
}

/// Waits until `node` has admitted `n` peers since its daemon started, and has heard what
/// they hold.
fn wait_admitted(node: &TestNode, n: usize) {
    wait_until(
        Duration::from_secs(60),
        "the nodes to admit each other",
        || node.admitted_peers() >= n,
    );
    std::thread::sleep(Duration::from_secs(1));
}

fn sign(key: &Keypair, digest: Digest) -> Option<Signature> {
    let bytes = key.sign(digest.as_bytes()).expect("an ed25519 key signs");
    Some(Signature(bytes.try_into().expect("64 bytes")))
}

/// The job of each target, from a build's `Finished` events.
fn jobs_of(events: &[Value]) -> BTreeMap<String, JobId> {
    events_of(events, "Finished")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_owned();
            let digest: Digest = e["job"].as_str().expect("job").parse().expect("a job id");
            (name, JobId(digest))
        })
        .collect()
}

#[test]
fn forged_unsigned_and_disowned_results_give_no_cache_hit() {
    let mut mesh = TestMesh::start(&[cache_only(), cache_only()]);
    let ws = workspace(&[("BUILD", FOUR)]);
    let (output, events) = mesh.nodes[1].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let jobs = jobs_of(&events);
    assert_eq!(jobs.len(), 4, "{events:?}");

    // Node 1 lies: with its daemon stopped, three of its entries are replaced.
    mesh.nodes[1].stop();
    {
        let home = Home::new(mesh.nodes[1].home.path());
        let key = home.load_or_create_identity().expect("node 1's key");
        let store = Store::open(&home.store()).expect("node 1's store");
        let genuine = |target: &str| {
            store
                .get_action(jobs[target])
                .expect("read")
                .expect("node 1 holds the result")
        };
        // t1: signed, over the right job, by a key that is no team member's.
        let stranger = Keypair::generate_ed25519();
        let mut forged = genuine("//:t1");
        forged.executed_by = node_id(&stranger);
        forged.signature = sign(&stranger, forged.signing_digest(jobs["//:t1"]));
        store.put_action(jobs["//:t1"], &forged).expect("plant");
        // t2: signed by node 1 itself, but for another job (t0's).
        let mut other_job = genuine("//:t2");
        other_job.signature = sign(&key, other_job.signing_digest(jobs["//:t0"]));
        store.put_action(jobs["//:t2"], &other_job).expect("plant");
        // t3: not signed at all.
        let mut unsigned = genuine("//:t3");
        unsigned.signature = None;
        store.put_action(jobs["//:t3"], &unsigned).expect("plant");
        store.flush().expect("flush");
    }
    mesh.nodes[1].restart();
    wait_admitted(&mesh.nodes[1], 1);

    // Only the genuine t0 comes from node 1's cache; node 0 builds the three others itself.
    let (origin, liar) = (&mesh.nodes[0], &mesh.nodes[1]);
    let events = build_fresh(origin);
    assert_eq!(
        peer_hits(&events),
        BTreeMap::from([("//:t0".to_owned(), liar.node_id.clone())]),
        "{events:?}"
    );
    let mut wanted = all_ran_on(origin);
    wanted.remove("//:t0");
    assert_eq!(ran(&events), wanted, "{events:?}");
    // Node 0 was offered the forged ones and refused them, naming why.
    let log = std::fs::read_to_string(origin.home.path().join("daemon.log")).expect("log");
    for why in ["is not a known team member", "its signature does not match"] {
        assert!(
            log.contains(why),
            "no refusal saying `{why}` in:\n{}",
            tail_of(&origin.home.path().join("daemon.log"), 40)
        );
    }

    // Node 0 disowns node 1: its genuine t0 is refused too (node 0 keeps no entry of it: a
    // result from a peer's cache stays in that cache). The others are node 0's own now.
    let said = stdout(&origin.weft(&[
        "team",
        "distrust",
        &liar.node_id,
        "--reason",
        "serves forgeries",
    ]));
    assert!(
        said.contains("no action-cache entry here was signed by it"),
        "{said}"
    );
    let events = build_fresh(origin);
    assert!(peer_hits(&events).is_empty(), "{events:?}");
    assert_eq!(
        ran(&events),
        BTreeMap::from([("//:t0".to_owned(), origin.node_id.clone())]),
        "{events:?}"
    );
    assert_eq!(
        names_of(&events, "CacheHit"),
        vec!["//:t1", "//:t2", "//:t3"]
    );
}

#[test]
fn distrust_drops_what_a_node_made_is_kept_and_is_followed_by_policy() {
    let mut never = cache_only();
    never.config = "follow_distrust = \"never\"\n";
    // 0 disowns 1; 2 follows any teammate's distrust (the default), 3 follows none.
    let mut mesh = TestMesh::start(&[cache_only(), cache_only(), cache_only(), never]);
    let events = build_fresh(&mesh.nodes[1]);
    assert_eq!(ran(&events), all_ran_on(&mesh.nodes[1]));
    std::thread::sleep(Duration::from_secs(1));
    let bad = mesh.nodes[1].node_id.clone();
    let ws = workspace(&[("BUILD", FOUR)]);
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        peer_hits(&events).len() == 4 && peer_hits(&events).values().all(|p| *p == bad),
        "{events:?}"
    );

    let said = stdout(&mesh.nodes[0].weft(&["team", "distrust", &bad[..12], "--reason", "left"]));
    assert!(said.contains(&format!("disowned node {bad}")), "{said}");
    assert!(said.contains("told the team"), "{said}");
    assert!(disowns(&mesh.nodes[0], &mesh.nodes[1]));
    // Once more changes nothing, and says so; a name that is no node is a clear error.
    let again = stdout(&mesh.nodes[0].weft(&["team", "distrust", &bad]));
    assert!(again.contains("was disowned here already"), "{again}");
    let wrong = mesh.nodes[0].weft(&["team", "distrust", "nobody"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("`nobody` names no node"),
        "{}",
        text(&wrong)
    );

    // The statement is gossiped: node 2 follows it, node 3 hears it and does not.
    wait_until(Duration::from_secs(20), "node 2 to follow", || {
        disowns(&mesh.nodes[2], &mesh.nodes[1])
    });
    let log3 = mesh.nodes[3].home.path().join("daemon.log");
    wait_until(Duration::from_secs(20), "node 3 to hear it", || {
        std::fs::read_to_string(&log3).is_ok_and(|l| l.contains("a teammate's verdict"))
    });
    assert!(!disowns(&mesh.nodes[3], &mesh.nodes[1]));

    // Node 1 is the only holder of the results. Node 0's same build again is not replayed
    // from what node 1 made, and takes nothing from it: every job runs here.
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ran(&events), all_ran_on(&mesh.nodes[0]), "{events:?}");
    // Node 2 takes none of node 1's results either; node 3 still does.
    let events = build_fresh(&mesh.nodes[2]);
    assert!(
        peer_hits(&events).values().all(|peer| *peer != bad),
        "{events:?}"
    );
    let events = build_fresh(&mesh.nodes[3]);
    assert!(
        peer_hits(&events).values().any(|peer| *peer == bad),
        "{events:?}"
    );

    // Across a restart node 0 still disowns node 1.
    mesh.nodes[0].restart();
    wait_admitted(&mesh.nodes[0], 3);
    assert!(disowns(&mesh.nodes[0], &mesh.nodes[1]));
    let kept = std::fs::read_to_string(mesh.nodes[0].home.path().join("distrusted.toml"))
        .expect("distrusted.toml");
    assert!(
        kept.contains(&bad) && kept.contains("verdict = \"distrust\""),
        "{kept}"
    );

    // `weft team trust` takes it back, here and on node 2 (a later statement).
    let said = stdout(&mesh.nodes[0].weft(&["team", "trust", &bad]));
    assert!(said.contains(&format!("took node {bad} back")), "{said}");
    assert!(!disowns(&mesh.nodes[0], &mesh.nodes[1]));
    wait_until(Duration::from_secs(20), "node 2 to take it back", || {
        !disowns(&mesh.nodes[2], &mesh.nodes[1])
    });
}

#[test]
fn forget_drops_one_entry_and_the_next_build_does_not_replay_it() {
    let mesh = TestMesh::start(&[cache_only()]);
    let node = &mesh.nodes[0];
    let ws = workspace(&[("BUILD", FOUR)]);
    let (output, _) = node.build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));

    let said = stdout(
        &node
            .cmd(ws.path())
            .args(["cache", "forget", ":t2"])
            .output()
            .expect("forget"),
    );
    assert!(said.starts_with("forgot //:t2 (job "), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    let again = stdout(
        &node
            .cmd(ws.path())
            .args(["cache", "forget", "//:t2"])
            .output()
            .expect("forget"),
    );
    assert!(
        again.contains("//:t2 (job ") && again.contains("no entry here"),
        "{again}"
    );
    let wrong = node
        .cmd(ws.path())
        .args(["cache", "forget", "//:nope"])
        .output()
        .expect("forget");
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("nope"),
        "{}",
        text(&wrong)
    );

    // The same workspace again: the last build is not replayed, t2 runs, the rest are hits.
    let (output, events) = node.build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        ran(&events),
        BTreeMap::from([("//:t2".to_owned(), node.node_id.clone())]),
        "{events:?}"
    );
    assert_eq!(
        names_of(&events, "CacheHit"),
        vec!["//:t0", "//:t1", "//:t3"]
    );
    assert!(Path::new(&ws.path().join("weft-out/o2")).exists());
}

#[test]
fn after_a_rotation_the_old_token_is_refused() {
    let mut mesh = TestMesh::start(&[cache_only(), cache_only(), cache_only()]);
    let said = stdout(&mesh.nodes[0].weft(&["team", "rotate"]));
    let token = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("weft team join "))
        .unwrap_or_else(|| panic!("no new token in:\n{said}"))
        .to_owned();
    assert_ne!(token, mesh.token);
    assert!(said.contains("refused"), "{said}");
    mesh.nodes[0].restart();
    // Node 1 joins with the new token; node 2 keeps the old one.
    stdout(&mesh.nodes[1].weft(&["team", "join", &token]));
    mesh.nodes[1].restart();
    wait_until(
        Duration::from_secs(60),
        "nodes 0 and 1 to admit each other",
        || mesh.nodes[0].admitted_peers() == 1 && mesh.nodes[1].admitted_peers() == 1,
    );
    wait_until(Duration::from_secs(30), "node 2 to be refused", || {
        !mesh.nodes[0].status().contains(" 0 failed admissions")
    });
    assert_eq!(mesh.nodes[2].admitted_peers(), 0);
    assert!(mesh.nodes[0].peers_text().contains("blocked"));

    // Node 2's results reach neither: node 1 builds everything itself.
    build_fresh(&mesh.nodes[2]);
    std::thread::sleep(Duration::from_secs(1));
    let events = build_fresh(&mesh.nodes[1]);
    assert_eq!(ran(&events), all_ran_on(&mesh.nodes[1]), "{events:?}");
}
