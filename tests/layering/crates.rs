//! The crate graph, checked: `protocol` reaches no IO crate, and `store` reaches no networking
//! crate. The check reads `cargo metadata`, so it sees transitive dependencies too.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Crates that do IO (files, sockets, an async runtime) and so must stay out of `protocol`.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "futures-io",
    "sled",
    "memmap2",
    "nix",
    "rustix",
    "hyper",
    "reqwest",
    "rustls",
];

/// Crates of the network stack, which must stay out of `store`.
const NET_CRATES: &[&str] = &["tokio", "mio", "socket2", "rustls", "hyper"];

/// Crate-name prefixes with the same meaning as [`NET_CRATES`].
const NET_PREFIXES: &[&str] = &["libp2p", "quinn"];

/// The rules: (crate, forbidden names, forbidden name prefixes).
const RULES: &[(&str, &[&str], &[&str])] = &[
    ("weft-protocol", IO_CRATES, NET_PREFIXES),
    ("weft-store", NET_CRATES, NET_PREFIXES),
];

/// Package name → names of its normal (not dev, not build) dependencies.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn metadata_graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let mut graph = Graph::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
    {
        let name = names[node["id"].as_str().expect("node id")].to_owned();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|dep| names[dep["pkg"].as_str().expect("pkg")].to_owned())
            .collect();
        graph
            .entry(name)
            .or_default()
            .extend::<BTreeSet<String>>(deps);
    }
    graph
}

/// Every crate `root` reaches, with the path that reaches it.
fn reachable(graph: &Graph, root: &str) -> BTreeMap<String, Vec<String>> {
    let mut paths = BTreeMap::from([(root.to_owned(), vec![root.to_owned()])]);
    let mut todo = vec![root.to_owned()];
    while let Some(name) = todo.pop() {
        let path = paths[&name].clone();
        for dep in graph.get(&name).into_iter().flatten() {
            if !paths.contains_key(dep) {
                let mut dep_path = path.clone();
                dep_path.push(dep.clone());
                paths.insert(dep.clone(), dep_path);
                todo.push(dep.clone());
            }
        }
    }
    paths
}

/// The rule violations in `graph`, one line each.
fn violations(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    for (krate, names, prefixes) in RULES {
        assert!(
            graph.contains_key(*krate),
            "`{krate}` is not in the workspace graph"
        );
        for (dep, path) in reachable(graph, krate) {
            let forbidden = names.contains(&dep.as_str())
                || prefixes.iter().any(|prefix| dep.starts_with(prefix));
            if forbidden {
                found.push(format!(
                    "`{krate}` must not depend on `{dep}`: {}",
                    path.join(" -> ")
                ));
            }
        }
    }
    found
}

#[test]
fn crates_respect_their_layers() {
    let found = violations(&metadata_graph());
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_violation() {
    let mut graph = Graph::new();
    graph
        .entry("weft-protocol".into())
        .or_default()
        .insert("helper".into());
    graph
        .entry("helper".into())
        .or_default()
        .insert("tokio".into());
    graph
        .entry("weft-store".into())
        .or_default()
        .insert("libp2p-quic".into());
    let found = violations(&graph);
    assert_eq!(
        found,
        [
            "`weft-protocol` must not depend on `tokio`: weft-protocol -> helper -> tokio",
            "`weft-store` must not depend on `libp2p-quic`: weft-store -> libp2p-quic",
        ]
    );
}
