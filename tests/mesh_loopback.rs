//! The mesh between real daemons on loopback: each test starts 2 to 4 `weft daemon`s with
//! their own homes, joined by static peers, and builds through them.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use weft_tests::{
    NodeSpec, TestEnv, TestMesh, events_of, have_cc, hermetic_or_skip, names_of, read_events,
    started_nodes, status_count, text, tree_contents, wait_until, workspace,
};

/// Twelve independent jobs that take a while, and one that needs them all.
fn fan_in(seconds: &str) -> Vec<(&'static str, String)> {
    let build = format!(
        r#"
[job(
    name = "w" + str(i),
    outs = ["o" + str(i)],
    cmds = [exec(["sh", "-c", "sleep {seconds}; echo " + str(i) + " > {{{{OUTPUT_DIR}}}}/o" + str(i)])],
) for i in range(12)]

job(
    name = "gather",
    deps = [":w" + str(i) for i in range(12)],
    outs = ["all.txt"],
    cmds = [exec(["sh", "-c", "cat " + " ".join(["{{{{DEP::w%d}}}}/o%d" % (i, i) for i in range(12)]) + " > {{{{OUTPUT_DIR}}}}/all.txt"])],
)
"#
    );
    vec![("BUILD", build)]
}

fn files<'a>(spec: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    spec.iter()
        .map(|(path, text)| (*path, text.as_str()))
        .collect()
}

const ALL: &str = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n";

#[test]
fn jobs_run_on_several_nodes_and_outputs_match_a_single_node_build() {
    let mesh = TestMesh::start(&[
        NodeSpec::sharing(1),
        NodeSpec::sharing(2),
        NodeSpec::sharing(2),
    ]);
    let spec = fan_in("0.4");
    let ws = workspace(&files(&spec));
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let nodes: BTreeSet<String> = started_nodes(&events).into_iter().collect();
    assert!(nodes.len() >= 2, "jobs ran on {nodes:?} only");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("weft-out/all.txt")).expect("all.txt"),
        ALL
    );

    // The same workspace built alone gives the same bytes.
    let alone = TestEnv::new();
    for (path, text) in &spec {
        alone.write(path, text);
    }
    let (output, _) = alone.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        tree_contents(&ws.path().join("weft-out")),
        tree_contents(&alone.ws.path().join("weft-out"))
    );
}

#[test]
fn the_critical_path_goes_to_a_much_faster_peer() {
    // A chain of three jobs of 1.1 s, each reading `seed.txt`, on a node that could run them
    // all itself, next to a peer that says it is three times as fast. The first build
    // learns how long they take; in the second (the seed changed, so they all run again),
    // the origin keeps each of them back for the fast peer.
    let mut origin = NodeSpec::sharing(2);
    origin.share = "idle";
    origin.speed = Some(1.0);
    let mut fast = NodeSpec::sharing(2);
    fast.speed = Some(3.0);
    let mesh = TestMesh::start(&[origin, fast]);
    let chain = r#"
job(name = "c0", srcs = ["seed.txt"], outs = ["o0"],
    cmds = [exec(["sh", "-c", "sleep 1.1; cat seed.txt > {{OUTPUT_DIR}}/o0"])])
job(name = "c1", deps = [":c0"], outs = ["o1"],
    cmds = [exec(["sh", "-c", "sleep 1.1; cat {{DEP::c0}}/o0 > {{OUTPUT_DIR}}/o1"])])
job(name = "c2", deps = [":c1"], outs = ["o2"],
    cmds = [exec(["sh", "-c", "sleep 1.1; cat {{DEP::c1}}/o1 > {{OUTPUT_DIR}}/o2"])])
"#;
    let ws = workspace(&[("BUILD", chain), ("seed.txt", "one\n")]);
    let (output, _) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    // The fast node's speed comes with its beacons (an idle node repeats its own every 10 s).
    wait_until(Duration::from_secs(15), "the fast node's beacon", || {
        mesh.nodes[0].peers_text().contains("speed 3.00×")
    });

    std::fs::write(ws.path().join("seed.txt"), "two\n").expect("seed");
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let started = started_nodes(&events);
    assert_eq!(started.len(), 3, "{events:?}");
    assert!(
        started.iter().all(|node| *node == mesh.nodes[1].node_id),
        "the chain ran on {started:?}; the fast node is {}",
        mesh.nodes[1].node_id
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("weft-out/o2")).expect("o2"),
        "two\n"
    );
}

#[test]
fn a_second_node_builds_from_the_first_nodes_cache() {
    let mut never = NodeSpec::sharing(2);
    never.share = "never";
    let mesh = TestMesh::start(&[never.clone(), never]);
    let spec = fan_in("0.05");
    let first = workspace(&files(&spec));
    let (output, events) = mesh.nodes[0].build(first.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(events_of(&events, "Started").len(), 13);
    // Let the announcements of the first node's results arrive.
    std::thread::sleep(Duration::from_secs(1));

    let second = workspace(&files(&spec));
    let (output, events) = mesh.nodes[1].build(second.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        events_of(&events, "Started").is_empty(),
        "nothing runs: {events:?}"
    );
    let hits = events_of(&events, "CacheHit");
    assert_eq!(hits.len(), 13);
    assert!(
        hits.iter().all(|hit| hit["source"].get("Peer").is_some()),
        "{hits:?}"
    );
    assert_eq!(
        std::fs::read_to_string(second.path().join("weft-out/all.txt")).expect("all.txt"),
        ALL
    );
    assert_eq!(
        tree_contents(&first.path().join("weft-out")),
        tree_contents(&second.path().join("weft-out"))
    );
}

#[test]
fn a_large_output_from_a_peer_comes_over_the_bulk_lane() {
    let mut never = NodeSpec::sharing(2);
    never.share = "never";
    let mesh = TestMesh::start(&[never.clone(), never]);
    // 6 MiB of varied bytes, over the 4 MiB at which the bulk lane (TLS on TCP) takes over.
    let build = r#"
job(
    name = "big",
    outs = ["big.bin"],
    cmds = [exec(["sh", "-c", "seq 1 800000 > {{OUTPUT_DIR}}/big.bin"])],
)
"#;
    let first = workspace(&[("BUILD", build)]);
    let (output, _) = mesh.nodes[0].build(first.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    std::thread::sleep(Duration::from_secs(1));

    let second = workspace(&[("BUILD", build)]);
    let (output, events) = mesh.nodes[1].build(second.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(events_of(&events, "Started").is_empty(), "{events:?}");
    let big = std::fs::read(second.path().join("weft-out/big.bin")).expect("big.bin");
    assert!(big.len() > 5 << 20, "{} bytes", big.len());
    assert_eq!(
        big,
        std::fs::read(first.path().join("weft-out/big.bin")).expect("big.bin")
    );
    let status = mesh.nodes[1].status();
    assert_eq!(
        status_count(&status, "large blobs over the bulk lane"),
        1,
        "{status}"
    );
}

#[test]
fn a_node_killed_mid_build_loses_no_job() {
    let mut mesh = TestMesh::start(&[
        NodeSpec::sharing(1),
        NodeSpec::sharing(2),
        NodeSpec::sharing(2),
    ]);
    let spec = fan_in("1");
    let ws = workspace(&files(&spec));
    let events_path = ws.path().join("events.jsonl");
    let build = mesh.nodes[0]
        .cmd(ws.path())
        .arg("build")
        .arg("--events")
        .arg(&events_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft build");
    let victim = mesh.nodes[2].node_id.clone();
    wait_until(
        Duration::from_secs(60),
        "the third node to start a job",
        || started_nodes(&read_events(&events_path)).contains(&victim),
    );
    mesh.nodes[2].kill();
    let output = build.wait_with_output().expect("the build ends");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("weft-out/all.txt")).expect("all.txt"),
        ALL
    );
    let events = read_events(&events_path);
    let done = events_of(&events, "Done");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["n_failed"], 0);
    let status = mesh.nodes[0].status();
    assert!(status_count(&status, "leases requeued") >= 1, "{status}");
}

#[test]
fn a_node_with_the_wrong_token_is_refused_everything() {
    let mut stranger = NodeSpec::sharing(2);
    stranger.wrong_team = true;
    let mesh = TestMesh::start(&[NodeSpec::sharing(1), NodeSpec::sharing(2), stranger]);
    // The stranger is admitted by nobody, and admits nobody.
    wait_until(
        Duration::from_secs(30),
        "the admission failures to be counted",
        || !mesh.nodes[0].status().contains(" 0 failed admissions"),
    );
    assert_eq!(mesh.nodes[2].admitted_peers(), 0);
    let peers = mesh.nodes[0]
        .cmd(mesh.nodes[0].home.path())
        .arg("peers")
        .output()
        .expect("peers");
    let peers = String::from_utf8_lossy(&peers.stdout);
    assert!(peers.contains("blocked"), "{peers}");

    // Its build runs alone; the team's build gets no help from it.
    let spec = fan_in("0.2");
    let ws = workspace(&files(&spec));
    let (output, events) = mesh.nodes[2].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let nodes: BTreeSet<String> = started_nodes(&events).into_iter().collect();
    assert_eq!(nodes, BTreeSet::from([mesh.nodes[2].node_id.clone()]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no peers are connected: building locally"),
        "{stderr}"
    );

    let team_ws = workspace(&files(&spec));
    let (output, events) = mesh.nodes[0].build(team_ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!started_nodes(&events).contains(&mesh.nodes[2].node_id));
    // The stranger's results never reach the team: nothing came from a peer's cache.
    assert!(names_of(&events, "CacheHit").is_empty());
}

#[test]
fn corrupt_blobs_from_a_peer_are_rejected_and_the_build_still_succeeds() {
    let mut corrupt = NodeSpec::sharing(2);
    corrupt.corrupt = true;
    let mesh = TestMesh::start(&[NodeSpec::sharing(1), corrupt]);
    let spec = fan_in("0.3");
    let ws = workspace(&files(&spec));
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("weft-out/all.txt")).expect("all.txt"),
        ALL
    );
    // The corrupt node took work; what it sent back was rejected.
    assert!(
        started_nodes(&events).contains(&mesh.nodes[1].node_id),
        "{events:?}"
    );
    let status = mesh.nodes[0].status();
    let rejected = status_count(&status, "corrupt blobs rejected");
    assert!(rejected >= 1, "{status}");
}

/// A job whose output differs on every run.
const RANDOM_BUILD: &str = r#"
job(
    name = "random",
    outs = ["r.txt"],
    cmds = [exec(["sh", "-c", "od -An -N16 -tx1 /dev/urandom > {{OUTPUT_DIR}}/r.txt"])],
)
"#;

#[test]
fn a_peers_result_that_a_check_here_contradicts_is_flagged_and_built_here() {
    let mut first = NodeSpec::sharing(2);
    first.share = "never";
    let mut checking = first.clone();
    checking.config = "verify_fraction = 1.0\n";
    let mesh = TestMesh::start(&[first, checking]);
    let ws = workspace(&[("BUILD", RANDOM_BUILD)]);
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(events_of(&events, "Started").len(), 1);
    std::thread::sleep(Duration::from_secs(1));

    // Node 1 takes node 0's result, and runs the job itself beside the build to check it.
    let other = workspace(&[("BUILD", RANDOM_BUILD)]);
    let (output, events) = mesh.nodes[1].build(other.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let hits = events_of(&events, "CacheHit");
    assert_eq!(hits.len(), 1, "{events:?}");
    assert!(hits[0]["source"].get("Peer").is_some(), "{hits:?}");
    wait_until(
        Duration::from_secs(20),
        "the check to find the difference",
        || status_count(&mesh.nodes[1].status(), "nondeterministic jobs") == 1,
    );

    // The next build says so, naming both nodes, and builds the job here: no cache counts.
    let (output, events) = mesh.nodes[1].build(other.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let notices: Vec<String> = events_of(&events, "Notice")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .filter(|n| n.contains("nondeterministic"))
        .collect();
    assert_eq!(notices.len(), 1, "{events:?}");
    assert!(
        notices[0].contains(&mesh.nodes[0].node_id[..16])
            && notices[0].contains(&mesh.nodes[1].node_id[..16]),
        "{notices:?}"
    );
    assert!(events_of(&events, "CacheHit").is_empty(), "{events:?}");
    assert_eq!(started_nodes(&events), vec![mesh.nodes[1].node_id.clone()]);
}

/// Issue 17, test 1 (stolen runs): a job a peer took cannot read the key, the team token, the
/// store or the socket of either node, nor files outside its sandbox; it runs as pid 2 of its
/// own pid namespace, as local jobs do.
#[test]
fn a_stolen_job_cannot_read_either_nodes_home_nor_files_outside_its_sandbox() {
    let mesh = TestMesh::start(&[NodeSpec::sharing(1), NodeSpec::sharing(2)]);
    if !hermetic_or_skip(&mesh.nodes[1].status(), "a_stolen_job_cannot_read") {
        return;
    }
    let mut paths = Vec::new();
    for node in &mesh.nodes {
        let home = node.home.path().display();
        for file in [
            "identity.key",
            "team.toml",
            "store",
            "daemon.sock",
            "daemon.log",
        ] {
            paths.push(format!("{home}/{file}"));
        }
    }
    paths.extend(["/root", "/home", "/var", "/etc/shadow", "/run"].map(str::to_owned));
    let probe = format!(
        "for p in {}; do if [ -e \"$p\" ]; then echo \"reaches $p\"; fi; done",
        paths.join(" ")
    );
    let build = format!(
        r#"
[job(
    name = "p" + str(i),
    outs = ["reach" + str(i), "pid" + str(i)],
    cmds = [exec(["sh", "-c", "sleep 0.4; " + {probe:?} + " > {{{{OUTPUT_DIR}}}}/reach" + str(i) + "; echo $$ > {{{{OUTPUT_DIR}}}}/pid" + str(i)])],
) for i in range(8)]
"#
    );
    let ws = workspace(&[("BUILD", &build)]);
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let thief = &mesh.nodes[1].node_id;
    let stolen: Vec<String> = events_of(&events, "Started")
        .iter()
        .filter(|e| e["node"].as_str() == Some(thief.as_str()))
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!stolen.is_empty(), "the peer took no job: {events:?}");
    for i in 0..8 {
        let out = |name: &str| {
            std::fs::read_to_string(ws.path().join(format!("weft-out/{name}{i}")))
                .unwrap_or_else(|e| panic!("{name}{i}: {e}"))
        };
        assert_eq!(out("reach"), "", "job p{i} reached these");
        assert_eq!(
            out("pid"),
            "2\n",
            "job p{i} is pid 2 of its own pid namespace"
        );
    }
}

/// A node without the hermetic sandbox (forced with the test hook) takes no job from its
/// peers, whatever its `share`, and its status says why.
#[test]
fn a_node_without_namespaces_takes_no_peers_jobs() {
    let mut weak = NodeSpec::sharing(2);
    weak.weak_sandbox = true;
    let mesh = TestMesh::start(&[NodeSpec::sharing(1), weak]);
    let status = mesh.nodes[1].status();
    assert!(
        status.lines().any(|l| l.starts_with("sandbox     weak:")),
        "{status}"
    );
    let spec = fan_in("0.3");
    let ws = workspace(&files(&spec));
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let nodes: BTreeSet<String> = started_nodes(&events).into_iter().collect();
    assert_eq!(
        nodes,
        BTreeSet::from([mesh.nodes[0].node_id.clone()]),
        "every job ran on the origin"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("weft-out/all.txt")).expect("all.txt"),
        ALL
    );
}

/// Issue 17, test 4: a peer runs only jobs whose tools are in its `accept_tools`. Its
/// owner left `sh` out: the shell jobs all run on their own node, and the compiles, which
/// it accepts, are shared.
#[test]
fn a_peer_runs_only_the_tools_its_owner_accepts() {
    if !have_cc() {
        eprintln!("skipping a_peer_runs_only_the_tools_its_owner_accepts: no `cc` on PATH");
        return;
    }
    let mut origin = NodeSpec::sharing(1);
    origin.share = "never";
    let mut compiles_only = NodeSpec::sharing(2);
    compiles_only.tools = r#"["cc", "gcc"]"#;
    let mesh = TestMesh::start(&[origin, compiles_only]);
    let mut build = String::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..8 {
        build.push_str(&format!(
            "job(name = \"sh{i}\", outs = [\"s{i}\"], cmds = [exec([\"sh\", \"-c\", \
             \"sleep 0.3; echo {i} > {{{{OUTPUT_DIR}}}}/s{i}\"])])\n\
             job(name = \"cc{i}\", srcs = [\"c{i}.c\"], outs = [\"c{i}.o\"], cmds = \
             [exec([\"cc\", \"-O2\", \"-c\", \"c{i}.c\", \"-o\", \"{{{{OUTPUT_DIR}}}}/c{i}.o\"])])\n"
        ));
        files.push((
            format!("c{i}.c"),
            format!("#include <stdio.h>\nint f{i}(void) {{ return printf(\"{i}\"); }}\n"),
        ));
    }
    files.push(("BUILD".to_owned(), build));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let ws = workspace(&refs);
    let (output, events) = mesh.nodes[0].build(ws.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let peer = &mesh.nodes[1].node_id;
    let mut shared = 0;
    for started in events_of(&events, "Started") {
        let name = started["name"].as_str().expect("a name");
        if started["node"].as_str() == Some(peer.as_str()) {
            assert!(
                name.starts_with("//:cc"),
                "the peer ran `{name}`: {events:?}"
            );
            shared += 1;
        }
    }
    assert!(shared >= 1, "the peer ran none of the compiles: {events:?}");
}
