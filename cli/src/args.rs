//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weft: a peer-to-peer build mesh.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Run as if started in this directory.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub(crate) directory: Option<PathBuf>,
    /// The daemon's home (socket, store, identity). Default: `$WEFT_HOME`, else
    /// `$XDG_STATE_HOME/weft`, else `~/.local/state/weft`.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// A started daemon shuts down after this many idle seconds.
    #[arg(long, global = true, default_value_t = 10800, value_name = "SECS")]
    pub(crate) max_idle_secs: u64,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build targets (default `//...`).
    Build(BuildArgs),
    /// Ask about targets.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Run a distbuild JSON job graph.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Show the daemon's state, and the mesh's.
    Status,
    /// List the mesh's peers: id, address, RTT, free slots, queue, tools, sharing, admission.
    Peers,
    /// Create, join or show this node's team.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Start a 3-node mesh on loopback, build the example across it, and show who ran what.
    Demo(DemoArgs),
    /// Stop the daemon.
    Shutdown,
    /// Show the version, the home and the store's size.
    Info,
    /// Inspect and maintain the local store.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Remove `weft-out/` (the store keeps every result, and the daemon a link to each
    /// published copy, so the next build publishes them again at once; `weft cache gc` frees
    /// the space those links hold).
    Clean,
    /// Run the daemon in the foreground.
    Daemon(DaemonArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Target patterns: `//...`, `//dir/...`, `//dir:all`, `//dir:name`.
    pub(crate) targets: Vec<String>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Fail at once if another build holds the workspace, rather than wait.
    #[arg(long)]
    pub(crate) no_block_for_lock: bool,
}

/// Options shared by everything that runs jobs.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub(crate) jobs: Option<u32>,
    /// Go on after a failure with everything that does not depend on it.
    #[arg(short = 'k', long)]
    pub(crate) keep_going: bool,
    /// Kill a job (and all its processes) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) job_timeout: Option<u64>,
    /// Also write every build event to this file, as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub(crate) events: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueryCommand {
    /// List the targets matching a pattern (default `//...`).
    Targets {
        /// A target pattern.
        pattern: Option<String>,
    },
    /// List the transitive dependencies of a target.
    Deps {
        /// A label, such as `//src:app`.
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GraphCommand {
    /// Run every job of a graph file `{"Jobs": [...]}`.
    Run {
        /// The graph file.
        file: PathBuf,
        /// The directory the jobs' `Inputs` are relative to.
        #[arg(long, value_name = "DIR")]
        source_dir: PathBuf,
        /// Where outputs land: `OUT/<ID>/`, `OUT/<ID>.stdout`, `OUT/<ID>.stderr`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Show what the store holds.
    Stats,
    /// Remove least recently used blobs until the store fits in SIZE (e.g. `10G`, `500M`),
    /// and the daemon's links to published files that are no longer in any `weft-out/`.
    Gc {
        /// The size cap.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: u64,
    },
    /// Rehash every blob, remove corrupt ones and rebuild the index.
    Verify,
    /// Drop the action-cache entry of a target (of each target a pattern names), here only:
    /// its next build runs it, or takes it from a teammate. Its blobs stay until gc.
    Forget {
        /// A label or pattern: `//dir:name`, `:name`, `//dir/...`.
        target: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// A peer to dial, as a multiaddr (`/ip4/10.0.0.2/udp/4455/quic-v1`); repeatable. Added to
    /// `peers` of `<home>/config.toml`.
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub(crate) peers: Vec<String>,
    /// An address to listen on, as a multiaddr; repeatable. Replaces `listen` of the config.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// When peers may run jobs here: `always`, `idle` or `never`. Overrides the config.
    #[arg(long, value_name = "POLICY")]
    pub(crate) share: Option<String>,
    /// Do not look for peers with mDNS.
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Test-only: serve corrupt blobs to peers.
    #[arg(long, hide = true)]
    pub(crate) test_corrupt_blobs: bool,
    /// Test-only: run jobs without namespaces, as where the kernel forbids them.
    #[arg(long, hide = true)]
    pub(crate) test_weak_sandbox: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TeamCommand {
    /// Create a team: print its join token and join it.
    Create {
        /// When teammates' jobs may run on this machine: `always`, `idle` or `never` (until
        /// you choose, it neither runs theirs nor lends its own).
        #[arg(long, value_name = "POLICY")]
        share: Option<String>,
    },
    /// Join the team of a token made by `weft team create`.
    Join {
        /// The join token.
        token: String,
        /// When teammates' jobs may run on this machine: `always`, `idle` or `never` (until
        /// you choose, it neither runs theirs nor lends its own).
        #[arg(long, value_name = "POLICY")]
        share: Option<String>,
    },
    /// Choose when teammates' jobs may run on this machine: `always`, `idle` (only while it
    /// builds nothing and is otherwise idle) or `never`.
    Share {
        /// The policy.
        policy: String,
    },
    /// Show this node's team id and node id.
    Show,
    /// Disown a node: take no result, blob or job of its from now on, and drop every
    /// action-cache entry it signed. Kept across restarts, and told to the team.
    Distrust {
        /// The node: its node key (`weft team show` on it), its PeerId (`weft peers`), or at
        /// least 8 hex digits of a known node's key.
        node: String,
        /// Why, told to the team with the verdict.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Take back a node disowned by `weft team distrust` (or for serving corrupt data).
    Trust {
        /// The node, named as for `weft team distrust`.
        node: String,
    },
    /// Make a new team secret and join token: nodes that join with the new token admit each
    /// other, and nodes that only have the old one are refused from then on.
    Rotate,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The workspace to build (default: the bundled `examples/hello`).
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// Keep the demo's temporary homes instead of removing them.
    #[arg(long)]
    pub(crate) keep: bool,
}

/// Parses `1234`, `10K`, `500M`, `2G`, `1T` (powers of 1024; a trailing `B` or `iB` is
/// allowed).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "unknown size unit in `{trimmed}`; use K, M, G or T"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{trimmed}` is not a size; write e.g. `10G`"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{trimmed}` is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
