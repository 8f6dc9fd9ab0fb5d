//! Workloads: job graphs ([`Graph`]) made at random or rebuilt from a real build's events
//! log, and their instances as the protocol [`Job`]s a build plans.
//!
//! # Random layered graphs
//!
//! `jobs` jobs are spread evenly over `layers` layers. A job outside the first layer has a
//! number of deps drawn from `fan_in`; the first comes from the layer right above (so the
//! graph really is `layers` deep), each further one from the layer above with probability
//! `locality`, else from any earlier job. Within the layer above, a dep lies near the job's
//! own relative position (within `spread` of the layer's width), which makes clusters the way
//! a library's objects feed its archive.
//!
//! # Replayed logs
//!
//! `weft build --events FILE` writes `Planned`, `Started`, `Finished` (with `duration_ms`),
//! `CacheHit` and `Done` events, one JSON object per line, but no dependency edges and no
//! timestamps. The graph is rebuilt from the order of events:
//!
//! - each job that `Finished` is a job of the graph, with its recorded duration; jobs that
//!   were only cache hits have no duration and are left out;
//! - a job depends on the jobs whose `Finished` events came after the previous `Started`
//!   event and before its own `Started` (the finishes that could have released it; at most
//!   `max_deps`, the latest first);
//! - a job started right after another start, with no finish between, was released by the
//!   same event, and gets the same deps.
//!
//! That graph is at least as constrained as the real one when the scheduler started jobs as
//! soon as their deps finished, and more constrained where a job waited for a slot rather
//! than a dep. Its depth is the number of distinct release points.
//!
//! # Instances
//!
//! A build of a graph becomes real [`Job`]s with real [`JobId`]s, so the core sees the same
//! ids a daemon would: each job has one input whose digest names the graph, the job and a
//! *variant*. Two builds of the same graph share every id (and so the peer cache), except
//! where `changed` gave a job a new variant: then it and everything after it get new ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weft_protocol::wire::BuildEvent;
use weft_protocol::{Cmd, Digest, Input, Job, JobId, Toolchain};

use crate::rng::Rng;
use crate::scenario::{DagSpec, ReplaySpec};

/// The platform every simulated node and job has.
pub const PLATFORM: &str = "linux-x86_64";

/// The digest of the simulated compiler: nodes with the toolchain have it.
pub const CC: Digest = Digest::from_bytes([0xcc; 32]);

/// A job graph, in topological order: every dep has a lower index than its dependents.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// The jobs.
    pub jobs: Vec<GraphJob>,
}

/// One job of a [`Graph`].
#[derive(Debug, Clone)]
pub struct GraphJob {
    /// Its name, such as `//app/l3:j120`.
    pub name: String,
    /// Its deps, by index.
    pub deps: Vec<u32>,
    /// How long it runs at speed 1, in microseconds.
    pub duration_us: u64,
    /// The size of its outputs.
    pub output_bytes: u64,
    /// The size of its own inputs.
    pub input_bytes: u64,
}

impl Graph {
    /// A random layered graph (see the module documentation).
    pub fn random(spec: &DagSpec, rng: &mut Rng) -> Graph {
        let n = spec.jobs;
        let layers = spec.layers.clamp(1, n.max(1));
        // Layer k holds jobs [starts[k], starts[k + 1]).
        let starts: Vec<usize> = (0..=layers).map(|k| k * n / layers).collect();
        let mut jobs = Vec::with_capacity(n);
        for layer in 0..layers {
            let (begin, end) = (starts[layer], starts[layer + 1]);
            for index in begin..end {
                let mut deps: Vec<u32> = Vec::new();
                if layer > 0 {
                    let [low, high] = spec.fan_in;
                    let fan = low + rng.index(high - low + 1);
                    let (above, above_end) = (starts[layer - 1], starts[layer]);
                    let width = above_end - above;
                    let relative = (index - begin) as f64 / (end - begin).max(1) as f64;
                    let centre = above as f64 + relative * width as f64;
                    let reach = ((spec.spread * width as f64) / 2.0).max(1.0);
                    for k in 0..fan {
                        let dep = if k == 0 || rng.chance(spec.locality) {
                            let offset = (rng.unit() * 2.0 - 1.0) * reach;
                            let pos = (centre + offset).floor() as i64 - above as i64;
                            above + pos.rem_euclid(width as i64) as usize
                        } else {
                            rng.index(above_end)
                        };
                        let dep = dep as u32;
                        if !deps.contains(&dep) {
                            deps.push(dep);
                        }
                    }
                }
                jobs.push(GraphJob {
                    name: format!("//{}/l{layer}:j{index}", spec.name),
                    deps,
                    duration_us: spec.duration.sample(rng).round() as u64,
                    output_bytes: spec.output.sample(rng).round() as u64,
                    input_bytes: spec.input.sample(rng).round() as u64,
                });
            }
        }
        Graph {
            name: spec.name.clone(),
            jobs,
        }
    }

    /// A graph rebuilt from an events log (see the module documentation). Errors name the
    /// line.
    pub fn from_events(text: &str, spec: &ReplaySpec, rng: &mut Rng) -> Result<Graph, String> {
        #[derive(Default)]
        struct Seen {
            name: String,
            duration_ms: Option<u64>,
            index: Option<u32>,
        }
        let mut order: Vec<JobId> = Vec::new();
        let mut seen: HashMap<JobId, Seen> = HashMap::new();
        // Finishes since the last start, latest last.
        let mut released: Vec<JobId> = Vec::new();
        let mut last_deps: Vec<JobId> = Vec::new();
        let mut deps_of: HashMap<JobId, Vec<JobId>> = HashMap::new();
        let mut any = false;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                format!(
                    "line {}: not JSON ({e}); the file must be what `weft build --events \
                     FILE` wrote",
                    number + 1
                )
            })?;
            let Some(kind) = value.as_object().and_then(|o| o.keys().next()).cloned() else {
                return Err(format!(
                    "line {}: not a build event (an object such as `{{\"Started\": ...}}`)",
                    number + 1
                ));
            };
            any = true;
            if kind != "Started" && kind != "Finished" {
                // Other events (and kinds newer than this simulator) say nothing it uses.
                continue;
            }
            let event: BuildEvent = serde_json::from_value(value)
                .map_err(|e| format!("line {}: a malformed `{kind}` event ({e})", number + 1))?;
            match event {
                BuildEvent::Started { job, name, .. } => {
                    if seen.contains_key(&job) {
                        continue;
                    }
                    let deps = if released.is_empty() {
                        last_deps.clone()
                    } else {
                        let take = released.len().min(spec.max_deps);
                        released[released.len() - take..].to_vec()
                    };
                    released.clear();
                    last_deps = deps.clone();
                    deps_of.insert(job, deps);
                    order.push(job);
                    seen.insert(
                        job,
                        Seen {
                            name,
                            ..Seen::default()
                        },
                    );
                }
                BuildEvent::Finished {
                    job, duration_ms, ..
                } => {
                    if let Some(entry) = seen.get_mut(&job)
                        && entry.duration_ms.is_none()
                    {
                        entry.duration_ms = Some(duration_ms);
                        released.push(job);
                    }
                }
                _ => {}
            }
        }
        if !any {
            return Err("the log is empty".into());
        }
        let mut jobs: Vec<GraphJob> = Vec::new();
        for id in &order {
            let Some(entry) = seen.get(id) else { continue };
            let Some(duration_ms) = entry.duration_ms else {
                continue;
            };
            let deps: Vec<u32> = deps_of
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|dep| seen.get(dep).and_then(|d| d.index))
                .collect();
            let index = jobs.len() as u32;
            jobs.push(GraphJob {
                name: entry.name.clone(),
                deps,
                duration_us: (duration_ms as f64 * 1e3 * spec.scale).round() as u64,
                output_bytes: spec.output.sample(rng).round() as u64,
                input_bytes: spec.input.sample(rng).round() as u64,
            });
            if let Some(entry) = seen.get_mut(id) {
                entry.index = Some(index);
            }
        }
        if jobs.is_empty() {
            return Err(
                "no job in the log has a `Finished` event (only cache hits?); record a build \
                 that runs jobs"
                    .into(),
            );
        }
        Ok(Graph {
            name: spec.name.clone(),
            jobs,
        })
    }

    /// Jobs nothing depends on.
    pub fn sinks(&self) -> Vec<u32> {
        let mut has_dependent = vec![false; self.jobs.len()];
        for job in &self.jobs {
            for dep in &job.deps {
                has_dependent[*dep as usize] = true;
            }
        }
        (0..self.jobs.len() as u32)
            .filter(|i| !has_dependent[*i as usize])
            .collect()
    }

    /// The length of the longest chain of durations, in microseconds.
    pub fn critical_path_us(&self) -> u64 {
        let mut longest = vec![0u64; self.jobs.len()];
        let mut best = 0;
        for (i, job) in self.jobs.iter().enumerate() {
            let before = job
                .deps
                .iter()
                .map(|d| longest[*d as usize])
                .max()
                .unwrap_or(0);
            longest[i] = before + job.duration_us;
            best = best.max(longest[i]);
        }
        best
    }
}

/// What the simulator knows of a job beyond the protocol [`Job`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobInfo {
    /// How long it runs at speed 1, in microseconds.
    pub duration_us: u64,
    /// The size of its outputs.
    pub output_bytes: u64,
    /// The size of its own inputs.
    pub input_bytes: u64,
}

/// A build's jobs, as the origin plans them.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The jobs, deps first, with their ids and what the simulator knows of them.
    pub jobs: Vec<(JobId, Arc<Job>, JobInfo)>,
    /// The requested jobs: their outputs are fetched to the origin.
    pub wanted: Vec<JobId>,
    /// The longest chain of durations, in microseconds.
    pub critical_path_us: u64,
    /// The sum of all durations, in microseconds.
    pub total_work_us: u64,
}

/// The jobs of one build of `graph`: the fraction `targets` of its sinks with everything
/// they need, where the fraction `changed` of the jobs have new sources (`variant` names the
/// change, so that two builds with changes differ).
pub fn instantiate(
    graph: &Graph,
    targets: f64,
    changed: f64,
    variant: u64,
    rng: &mut Rng,
) -> Instance {
    let n = graph.jobs.len();
    let mut sinks = graph.sinks();
    rng.shuffle(&mut sinks);
    let n_targets = ((sinks.len() as f64 * targets).ceil() as usize).clamp(1, sinks.len().max(1));
    sinks.truncate(n_targets);
    sinks.sort_unstable();
    // Everything the targets need.
    let mut needed = vec![false; n];
    let mut stack: Vec<u32> = sinks.clone();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i as usize], true) {
            continue;
        }
        stack.extend(graph.jobs[i as usize].deps.iter().copied());
    }
    let mut ids: Vec<Option<JobId>> = vec![None; n];
    let mut jobs = Vec::new();
    let mut longest = vec![0u64; n];
    let mut critical_path_us = 0;
    let mut total_work_us = 0;
    for (i, spec) in graph.jobs.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        let job_variant = if changed > 0.0 && rng.chance(changed) {
            variant
        } else {
            0
        };
        let deps: Vec<JobId> = spec.deps.iter().filter_map(|d| ids[*d as usize]).collect();
        let job = Job {
            name: spec.name.clone(),
            inputs: vec![Input {
                path: format!("src/{}/{i}.c", graph.name),
                digest: Digest::of(format!("{}/{i}/{job_variant}", graph.name).as_bytes()),
                executable: false,
            }],
            deps,
            cmds: vec![Cmd::Exec {
                argv: vec!["cc".into(), "-c".into(), format!("{i}.c")],
                env: BTreeMap::new(),
                cwd: None,
            }],
            env: BTreeMap::new(),
            outs: vec!["out.o".into()],
            toolchain: Toolchain {
                platform: PLATFORM.into(),
                tools: BTreeMap::from([("cc".into(), CC)]),
                system: None,
            },
            network: false,
        };
        let id = job.id();
        ids[i] = Some(id);
        let before = spec
            .deps
            .iter()
            .map(|d| longest[*d as usize])
            .max()
            .unwrap_or(0);
        longest[i] = before + spec.duration_us;
        critical_path_us = critical_path_us.max(longest[i]);
        total_work_us += spec.duration_us;
        jobs.push((
            id,
            Arc::new(job),
            JobInfo {
                duration_us: spec.duration_us,
                output_bytes: spec.output_bytes,
                input_bytes: spec.input_bytes,
            },
        ));
    }
    let wanted = sinks.iter().filter_map(|s| ids[*s as usize]).collect();
    Instance {
        jobs,
        wanted,
        critical_path_us,
        total_work_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Dist;

    fn dag(jobs: usize, layers: usize) -> DagSpec {
        DagSpec {
            name: "g".into(),
            jobs,
            layers,
            fan_in: [1, 3],
            locality: 0.7,
            spread: 0.1,
            duration: Dist::constant(1e6),
            output: Dist::constant(1e3),
            input: Dist::constant(1e3),
        }
    }

    #[test]
    fn random_graphs_are_layered_and_acyclic() {
        let graph = Graph::random(&dag(1000, 10), &mut Rng::new(1));
        assert_eq!(graph.jobs.len(), 1000);
        for (i, job) in graph.jobs.iter().enumerate() {
            assert!(job.deps.iter().all(|d| (*d as usize) < i));
            assert!(job.deps.len() <= 3);
        }
        // Ten layers of 1 s each.
        assert_eq!(graph.critical_path_us(), 10_000_000);
        assert_eq!(graph.jobs.iter().filter(|j| j.deps.is_empty()).count(), 100);
    }

    #[test]
    fn builds_of_one_graph_share_ids_unless_changed() {
        let graph = Graph::random(&dag(200, 5), &mut Rng::new(2));
        let a = instantiate(&graph, 1.0, 0.0, 1, &mut Rng::new(3));
        let b = instantiate(&graph, 1.0, 0.0, 2, &mut Rng::new(4));
        let ids = |i: &Instance| i.jobs.iter().map(|j| j.0).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let c = instantiate(&graph, 1.0, 0.2, 3, &mut Rng::new(5));
        let same = ids(&c).iter().filter(|id| ids(&a).contains(id)).count();
        assert!(same > 0 && same < 200, "{same}");
        // Part of the targets: fewer jobs, all closed under deps.
        let d = instantiate(&graph, 0.3, 0.0, 4, &mut Rng::new(6));
        assert!(d.jobs.len() < 200);
        let present: std::collections::HashSet<JobId> = d.jobs.iter().map(|j| j.0).collect();
        assert!(
            d.jobs
                .iter()
                .all(|(_, job, _)| job.deps.iter().all(|x| present.contains(x)))
        );
    }

    #[test]
    fn a_log_becomes_a_graph_in_release_order() {
        let id = |n: u8| Digest::from_bytes([n; 32]).to_hex();
        let node = id(99);
        let lines = [
            r#"{"Planned":{"n_jobs":4}}"#.to_owned(),
            format!(
                r#"{{"Started":{{"job":"{}","name":"//a","node":"{node}"}}}}"#,
                id(1)
            ),
            format!(
                r#"{{"Started":{{"job":"{}","name":"//b","node":"{node}"}}}}"#,
                id(2)
            ),
            format!(
                r#"{{"Finished":{{"job":"{}","name":"//a","node":"{node}","duration_ms":100}}}}"#,
                id(1)
            ),
            format!(
                r#"{{"Finished":{{"job":"{}","name":"//b","node":"{node}","duration_ms":200}}}}"#,
                id(2)
            ),
            format!(
                r#"{{"Started":{{"job":"{}","name":"//c","node":"{node}"}}}}"#,
                id(3)
            ),
            format!(
                r#"{{"CacheHit":{{"job":"{}","name":"//d","source":"Local"}}}}"#,
                id(4)
            ),
            format!(
                r#"{{"Finished":{{"job":"{}","name":"//c","node":"{node}","duration_ms":50}}}}"#,
                id(3)
            ),
            r#"{"Done":{"success":true,"n_ran":3,"n_cached":1,"n_failed":0,"duration_ms":5}}"#
                .to_owned(),
        ];
        let spec = ReplaySpec {
            name: "r".into(),
            file: "x".into(),
            max_deps: 4,
            output: Dist::constant(1.0),
            input: Dist::constant(1.0),
            scale: 1.0,
        };
        let graph = Graph::from_events(&lines.join("\n"), &spec, &mut Rng::new(1));
        let graph = match graph {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<&str> = graph.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["//a", "//b", "//c"]);
        assert_eq!(graph.jobs[2].deps, [0, 1]);
        assert_eq!(graph.critical_path_us(), 250_000);
        let err = Graph::from_events("{\"Planned\":{}}\nnot json", &spec, &mut Rng::new(1))
            .expect_err("an error");
        assert!(err.contains("line 2") && err.contains("not JSON"), "{err}");
        let err = Graph::from_events("{\"Started\":{\"job\":1}}", &spec, &mut Rng::new(1))
            .expect_err("an error");
        assert!(
            err.contains("line 1") && err.contains("malformed `Started`"),
            "{err}"
        );
    }
}
