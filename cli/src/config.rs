//! The daemon's configuration file, `<home>/config.toml`, parsed at the edge and handed down
//! as typed values.
//!
//! ```toml
//! share = "idle"              # when peers may run jobs here: "always", "idle" or "never"
//! max_shared_slots = 2        # at most this many of them at once (default: every slot)
//! idle_load = 1.0             # "idle" means no build here and a 1-minute load under this
//! peers = ["/ip4/192.168.1.20/udp/4455/quic-v1"]   # dialed at start, for networks without multicast
//! listen = ["/ip4/0.0.0.0/udp/4455/quic-v1"]       # default: any address, a random port
//! mdns = true                 # find peers on the LAN (default true)
//! speed = 1.5                 # this machine's speed against the reference (default: measured)
//! eval_time_limit_secs = 5    # how long one BUILD or .star file may take to evaluate
//! eval_memory_limit_mib = 512 # how large its Starlark heap may grow
//! verify_fraction = 0.05      # run this share of peers' cache hits here too, and compare
//! follow_distrust = "any"     # whose `weft team distrust` applies here: "any" teammate's
//!                             # (default) or "never" (only this node's own)
//! accept_tools = ["gcc", "cc", "/opt/bin/ld"]  # what peers' jobs may run here (default:
//!                             # compilers, assemblers, archivers, linkers; no shells)
//!
//! [job_limits]                # what one job may use; 0 turns a limit off (but the wall time)
//! wall_secs = 7200            # when its build sets no shorter `--job-timeout`
//! memory_mib = 32768          # address space of each of its processes
//! processes = 4096            # processes at once
//! output_mib = 8192           # the largest file it writes, and its outputs together
//! ```
//!
//! Jobs always run in the hermetic sandbox where the kernel allows it; there is no setting to
//! turn it off.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::time::Duration;

use weft_node::core::FollowDistrust;
use weft_node::daemon::MeshSettings;
use weft_node::exec::JobLimits;
use weft_node::frontend::{EvalLimits, MEMORY_SETTING, TIME_SETTING};
use weft_protocol::wire::SharePolicy;

/// The mesh part of the daemon's configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MeshFile {
    /// When peers may run jobs here; `None` until the owner has chosen (then nothing is
    /// lent or taken). Default: `None`.
    pub(crate) share: Option<SharePolicy>,
    /// At most this many slots run peers' jobs. Default: all of them.
    pub(crate) max_shared_slots: Option<usize>,
    /// The load average under which the machine counts as idle. Default: 1.0.
    pub(crate) idle_load: f64,
    /// Peers to dial at start. Default: none.
    pub(crate) peers: Vec<String>,
    /// Addresses to listen on. Default: `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub(crate) listen: Vec<String>,
    /// Whether to find peers with mDNS. Default: true.
    pub(crate) mdns: bool,
    /// This machine's speed, relative to the reference. Default: measured at start.
    pub(crate) speed: Option<f64>,
    /// What evaluating one BUILD or `.star` file may spend. Default: 5 s
    /// (`eval_time_limit_secs`) and 512 MiB (`eval_memory_limit_mib`).
    pub(crate) eval: EvalLimits,
    /// The tools peers' jobs may run here. Default: the core's list.
    pub(crate) accept_tools: Option<Vec<String>>,
    /// The share of peers' cache hits also run here and compared. Default: 0.
    pub(crate) verify_fraction: f64,
    /// Whose distrusts apply here. Default: any teammate's.
    pub(crate) follow_distrust: FollowDistrust,
    /// What one job may use (`[job_limits]`). Default: [`JobLimits::default`].
    pub(crate) job_limits: JobLimits,
}

impl Default for MeshFile {
    /// The daemon's own defaults: a missing file changes nothing.
    fn default() -> MeshFile {
        let MeshSettings {
            share,
            max_shared_slots,
            idle_load,
            peers,
            listen,
            mdns,
            speed,
            accept_tools,
            verify_fraction,
            follow_distrust,
        } = MeshSettings::default();
        MeshFile {
            share,
            max_shared_slots,
            idle_load,
            peers,
            listen,
            mdns,
            speed,
            eval: EvalLimits::default(),
            accept_tools,
            verify_fraction,
            follow_distrust,
            job_limits: JobLimits::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    share: Option<String>,
    max_shared_slots: Option<usize>,
    idle_load: Option<f64>,
    peers: Option<Vec<String>>,
    listen: Option<Vec<String>>,
    mdns: Option<bool>,
    speed: Option<f64>,
    eval_time_limit_secs: Option<f64>,
    eval_memory_limit_mib: Option<u64>,
    accept_tools: Option<Vec<String>>,
    verify_fraction: Option<f64>,
    follow_distrust: Option<String>,
    job_limits: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    wall_secs: Option<u64>,
    memory_mib: Option<u64>,
    processes: Option<u64>,
    output_mib: Option<u64>,
}

/// Reads `path`; a missing file means the defaults.
pub(crate) fn load(path: &Path) -> Result<MeshFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MeshFile::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    parse(&text).with_context(|| format!("in the daemon configuration `{}`", path.display()))
}

fn parse(text: &str) -> Result<MeshFile> {
    let raw: Raw = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let defaults = MeshFile::default();
    let share = match raw.share.as_deref() {
        None => defaults.share,
        Some(text) => Some(parse_share(text)?),
    };
    if raw.max_shared_slots == Some(0) && share != Some(SharePolicy::Never) {
        bail!("`max_shared_slots = 0` shares nothing; write `share = \"never\"` instead");
    }
    let idle_load = raw.idle_load.unwrap_or(defaults.idle_load);
    if !(idle_load.is_finite() && idle_load > 0.0) {
        bail!("`idle_load` must be a positive number, not {idle_load}");
    }
    if let Some(speed) = raw.speed
        && !(speed.is_finite() && (0.05..=1000.0).contains(&speed))
    {
        bail!(
            "`speed = {speed}` is not a machine's speed: write how fast it is against the \
             reference machine, between 0.05 and 1000 (1.5 is half again as fast), or leave it \
             out to have it measured"
        );
    }
    let mut eval = defaults.eval;
    if let Some(secs) = raw.eval_time_limit_secs {
        if !(secs.is_finite() && (0.001..=86_400.0).contains(&secs)) {
            bail!(
                "`{TIME_SETTING} = {secs}` is not a time budget: write how many seconds one \
                 BUILD or `.star` file may take to evaluate, more than 0 and at most 86400"
            );
        }
        eval.time = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(mib) = raw.eval_memory_limit_mib {
        let bytes = usize::try_from(mib)
            .ok()
            .and_then(|mib| mib.checked_mul(1 << 20))
            .filter(|_| mib > 0);
        let Some(bytes) = bytes else {
            bail!(
                "`{MEMORY_SETTING} = {mib}` is not a memory budget: write how many MiB one \
                 BUILD or `.star` file's evaluation may hold, at least 1"
            );
        };
        eval.memory = bytes;
    }
    Ok(MeshFile {
        eval,
        share,
        speed: raw.speed,
        max_shared_slots: raw.max_shared_slots,
        idle_load,
        peers: raw.peers.unwrap_or_default(),
        listen: raw.listen.unwrap_or(defaults.listen),
        mdns: raw.mdns.unwrap_or(defaults.mdns),
        accept_tools: match raw.accept_tools {
            Some(tools) => Some(check_tools(tools)?),
            None => defaults.accept_tools,
        },
        verify_fraction: match raw.verify_fraction {
            Some(f) if (0.0..=1.0).contains(&f) => f,
            Some(f) => bail!(
                "`verify_fraction = {f}` is not a share of the peers' results: write a number \
                 from 0 (check none) to 1 (run every one here too), such as 0.05"
            ),
            None => defaults.verify_fraction,
        },
        follow_distrust: match raw.follow_distrust.as_deref() {
            None => defaults.follow_distrust,
            Some("any") => FollowDistrust::Any,
            Some("never") => FollowDistrust::Never,
            Some(other) => bail!(
                "`follow_distrust = \"{other}\"` is not a policy: write \"any\" (a teammate's \
                 `weft team distrust` applies here too) or \"never\" (only this node's own)"
            ),
        },
        job_limits: parse_limits(raw.job_limits, defaults.job_limits)?,
    })
}

/// `[job_limits]`: each value replaces the default; 0 turns a limit off (not the wall time).
fn parse_limits(raw: Option<RawLimits>, defaults: JobLimits) -> Result<JobLimits> {
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let mib = |value: Option<u64>, default: Option<u64>, name: &str| -> Result<Option<u64>> {
        match value {
            None => Ok(default),
            Some(0) => Ok(None),
            Some(n) => n
                .checked_mul(1 << 20)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("`job_limits.{name} = {n}` is too large")),
        }
    };
    let wall_time = match raw.wall_secs {
        None => defaults.wall_time,
        Some(0) => {
            bail!("`job_limits.wall_secs = 0` leaves a job no time; write a number of seconds")
        }
        Some(secs) => Duration::from_secs(secs),
    };
    Ok(JobLimits {
        wall_time,
        memory_bytes: mib(raw.memory_mib, defaults.memory_bytes, "memory_mib")?,
        max_processes: match raw.processes {
            None => defaults.max_processes,
            Some(0) => None,
            Some(n) => Some(n),
        },
        output_bytes: mib(raw.output_mib, defaults.output_bytes, "output_mib")?,
    })
}

/// `accept_tools`: names (`gcc`) and absolute paths (`/usr/bin/gcc`), nothing else.
fn check_tools(tools: Vec<String>) -> Result<Vec<String>> {
    for tool in &tools {
        let name_ok = !tool.is_empty() && !tool.contains('/');
        let path_ok = tool.starts_with('/') && !tool.ends_with('/');
        if !(name_ok || path_ok) {
            bail!(
                "`accept_tools` entry `{tool}` is neither a tool's name (`gcc`) nor an absolute \
                 path (`/usr/bin/gcc`)"
            );
        }
    }
    Ok(tools)
}

/// Sets `share = "policy"` in the configuration file at `path`, keeping the rest of it as it
/// is (made when missing).
pub(crate) fn set_share(path: &Path, policy: SharePolicy) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let line = format!("share = \"{}\"", share_name(policy));
    let mut replaced = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            if key == "share" && !replaced {
                replaced = true;
                line.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !replaced {
        lines.push(line);
    }
    let mut new = lines.join("\n");
    new.push('\n');
    // What is written must read back.
    parse(&new).with_context(|| format!("in the daemon configuration `{}`", path.display()))?;
    std::fs::write(path, new).with_context(|| format!("cannot write `{}`", path.display()))
}

/// How `config.toml` names a policy.
pub(crate) fn share_name(policy: SharePolicy) -> &'static str {
    match policy {
        SharePolicy::Always => "always",
        SharePolicy::Idle => "idle",
        SharePolicy::Never => "never",
    }
}

/// `always`, `idle` or `never`.
pub(crate) fn parse_share(text: &str) -> Result<SharePolicy> {
    match text {
        "always" => Ok(SharePolicy::Always),
        "idle" => Ok(SharePolicy::Idle),
        "never" => Ok(SharePolicy::Never),
        other => {
            bail!("`share = \"{other}\"` is not a policy; use \"always\", \"idle\" or \"never\"")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("").expect("empty"), MeshFile::default());
        let file = parse(
            "share = \"always\"\nmax_shared_slots = 2\npeers = [\"/ip4/10.0.0.2/udp/4455/quic-v1\"]\nmdns = false\n",
        )
        .expect("valid");
        assert_eq!(file.share, Some(SharePolicy::Always));
        assert_eq!(file.max_shared_slots, Some(2));
        assert_eq!(file.peers.len(), 1);
        assert!(!file.mdns);
        assert_eq!(parse("speed = 1.5").expect("valid").speed, Some(1.5));
        let eval = parse("eval_time_limit_secs = 0.5\neval_memory_limit_mib = 64\n")
            .expect("valid")
            .eval;
        assert_eq!(eval.time, std::time::Duration::from_millis(500));
        assert_eq!(eval.memory, 64 << 20);
        assert_eq!(
            parse("accept_tools = [\"gcc\", \"/opt/bin/sh\"]")
                .expect("valid")
                .accept_tools,
            Some(vec!["gcc".to_owned(), "/opt/bin/sh".to_owned()])
        );
        assert_eq!(MeshFile::default().follow_distrust, FollowDistrust::Any);
        assert_eq!(
            parse("follow_distrust = \"never\"")
                .expect("valid")
                .follow_distrust,
            FollowDistrust::Never
        );
    }

    #[test]
    fn setting_the_share_policy_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        set_share(&path, SharePolicy::Idle).expect("new file");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "share = \"idle\"\n"
        );
        std::fs::write(
            &path,
            "# my settings\nspeed = 1.5\nshare = \"idle\"\nmdns = false\n",
        )
        .expect("write");
        set_share(&path, SharePolicy::Never).expect("replace");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "# my settings\nspeed = 1.5\nshare = \"never\"\nmdns = false\n"
        );
        let limits = parse("[job_limits]\nwall_secs = 60\nmemory_mib = 0\nprocesses = 100\n")
            .expect("valid")
            .job_limits;
        assert_eq!(limits.wall_time, Duration::from_secs(60));
        assert_eq!(limits.memory_bytes, None);
        assert_eq!(limits.max_processes, Some(100));
        assert_eq!(limits.output_bytes, JobLimits::default().output_bytes);
        let limits = parse("[job_limits]\noutput_mib = 2\n")
            .expect("valid")
            .job_limits;
        assert_eq!(limits.output_bytes, Some(2 << 20));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, wanted) in [
            ("share = \"sometimes\"", "is not a policy"),
            ("shared = \"idle\"", "unknown field `shared`"),
            ("idle_load = -1.0", "`idle_load` must be a positive number"),
            ("max_shared_slots = 0", "shares nothing"),
            ("peers = \"one\"", "invalid type"),
            ("speed = 0", "is not a machine's speed"),
            ("speed = -2.0", "is not a machine's speed"),
            ("eval_time_limit_secs = 0", "is not a time budget"),
            ("eval_time_limit_secs = -1.0", "is not a time budget"),
            ("eval_memory_limit_mib = 0", "is not a memory budget"),
            ("eval_memory_limit_mib = -5", "invalid value"),
            ("accept_tools = [\"bin/sh\"]", "neither a tool's name"),
            ("accept_tools = [\"\"]", "neither a tool's name"),
            ("verify_fraction = 1.5", "is not a share"),
            ("verify_fraction = -0.1", "is not a share"),
            (
                "follow_distrust = \"some\"",
                "is not a policy: write \"any\"",
            ),
            ("follow_distrust = true", "invalid type"),
            ("strict_sandbox = true", "unknown field `strict_sandbox`"),
            ("[job_limits]\nwall_secs = 0", "leaves a job no time"),
            ("[job_limits]\nmemory = 5", "unknown field `memory`"),
        ] {
            let err = format!("{:#}", parse(text).expect_err(text));
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
