//! Lowering: a front end's targets, or the jobs of a distbuild graph, become protocol
//! [`Job`]s, with input digests, resolved dependency ids and a toolchain fingerprint.
//!
//! This is where a target's `{{DEP:<label>}}` (or a graph job's `{{DEP:<ID>}}`) becomes
//! `{{DEP:<job id>}}`, so that a job's id names its dependencies by content, never by where
//! they live.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_protocol::{Cmd, Digest, Input, Job, JobError, JobId, Label, Template, TemplateError};

use crate::exec::{ExecError, SourceDigests, SourceStamp, Stamped, ToolchainMemo, Toolchains};
use crate::frontend::{DistGraph, TargetGraph, Workspace};

/// Jobs in dependency order, and the job of each target.
#[derive(Debug, Default)]
pub(crate) struct Lowered {
    /// Every job, each after its deps.
    pub(crate) jobs: Vec<(JobId, Arc<Job>)>,
    /// The job of each target.
    pub(crate) ids: BTreeMap<Label, JobId>,
}

/// A target that cannot become a job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LowerError {
    /// A source or tool cannot be read or found.
    #[error("target `{label}`: {source}")]
    Exec {
        /// The target.
        label: String,
        /// What went wrong.
        source: Box<ExecError>,
    },
    /// A dep is not in the graph; the front end should have caught it.
    #[error("target `{label}`: dependency `{dep}` is not part of the graph")]
    MissingDep {
        /// The target.
        label: String,
        /// The dep.
        dep: String,
    },
    /// A command's `{{DEP:...}}` cannot be resolved; the front end should have caught it.
    #[error("target `{label}`: {source}")]
    Rewrite {
        /// The target.
        label: String,
        /// What is wrong.
        source: Box<RewriteError>,
    },
    /// The job is malformed; the front end should have caught it.
    #[error("target `{label}`: {source}")]
    Invalid {
        /// The target.
        label: String,
        /// What is wrong.
        source: Box<JobError>,
    },
}

/// A job of a distbuild graph that cannot become a protocol job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GraphLowerError {
    /// An input cannot be read.
    #[error("job `{job}`, field `Inputs`: {source}")]
    Input {
        /// The job's ID in the graph.
        job: String,
        /// What went wrong.
        source: Box<ExecError>,
    },
    /// A dep is not a job listed before this one.
    #[error("job `{job}`: unknown dep `{dep}`")]
    UnknownDep {
        /// The job's ID in the graph.
        job: String,
        /// The dep's ID.
        dep: String,
    },
    /// A command's template is malformed, or its `{{DEP:...}}` names no job.
    #[error("job `{job}`, field `Cmds`: {source}")]
    Cmds {
        /// The job's ID in the graph.
        job: String,
        /// What is wrong.
        source: RewriteError,
    },
    /// A tool cannot be found.
    #[error("job `{job}`: {source}")]
    Toolchain {
        /// The job's ID in the graph.
        job: String,
        /// What went wrong.
        source: Box<ExecError>,
    },
    /// The job is malformed.
    #[error("job `{job}`: {source}")]
    Invalid {
        /// The job's ID in the graph.
        job: String,
        /// What is wrong.
        source: Box<JobError>,
    },
}

/// A command whose `{{DEP:<ref>}}`s cannot all be rewritten to job ids.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewriteError {
    /// A string is not a valid template.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A reference names no job.
    #[error("`{{{{DEP:{0}}}}}` names no dependency")]
    UnknownDep(String),
}

/// The last lowering of a workspace's graph, and what it depended on besides the graph: the
/// digest of every source, of every tool, and the system directories' state. While those are
/// the same, so are the jobs.
pub(crate) struct LowerMemo {
    graph: Arc<TargetGraph>,
    /// Every source file of the graph, in [`source_paths`] order.
    paths: Vec<PathBuf>,
    /// Their digests, and the stamps those are cached under when every one is.
    sources: Vec<(Digest, bool)>,
    stamps: Option<Vec<SourceStamp>>,
    /// The store's removal counter before those digests were taken.
    removals: u64,
    /// The tools and the system digest the jobs' toolchains were made from.
    toolchain: ToolchainMemo,
    lowered: Arc<Lowered>,
}

/// Lowers every target of `graph`, reusing `memo` when the graph is the very one lowered last
/// time and no source, tool or system digest changed: a no-op build then hashes no job.
pub(crate) fn lower_cached(
    memo: &mut Option<LowerMemo>,
    workspace: &Workspace,
    graph: &Arc<TargetGraph>,
    digests: &SourceDigests,
    toolchains: &Toolchains,
) -> Result<Arc<Lowered>, LowerError> {
    let memo_of_graph = memo.as_mut().filter(|last| Arc::ptr_eq(&last.graph, graph));
    // The quick check: every source still has the stamp its digest was cached under.
    if let Some(last) = &memo_of_graph
        && let Some(stamps) = &last.stamps
        && digests.unchanged(&last.paths, stamps, last.removals)
        && toolchains.unchanged(&last.toolchain)
    {
        return Ok(last.lowered.clone());
    }
    let removals = digests.removals();
    let (owners, paths) = source_paths(workspace, graph);
    let stamped = source_digests(&owners, &paths, digests)?;
    let sources: Vec<(Digest, bool)> = stamped.iter().map(|&(d, x, _)| (d, x)).collect();
    let stamps: Option<Vec<SourceStamp>> = stamped.iter().map(|&(_, _, stamp)| stamp).collect();
    if let Some(last) = memo_of_graph
        && last.sources == sources
        && toolchains.unchanged(&last.toolchain)
    {
        last.stamps = stamps;
        last.removals = removals;
        return Ok(last.lowered.clone());
    }
    let mut toolchain = ToolchainMemo::default();
    let lowered = Arc::new(lower_with(
        workspace,
        graph,
        digests,
        toolchains,
        &mut toolchain,
    )?);
    *memo = Some(LowerMemo {
        graph: graph.clone(),
        paths,
        sources,
        stamps,
        removals,
        toolchain,
        lowered: lowered.clone(),
    });
    Ok(lowered)
}

/// Every target's source files, in a fixed order, each with its target.
fn source_paths<'g>(
    workspace: &Workspace,
    graph: &'g TargetGraph,
) -> (Vec<&'g Label>, Vec<PathBuf>) {
    graph
        .targets
        .iter()
        .flat_map(|(label, target)| target.srcs.iter().map(move |src| (label, src)))
        .map(|(label, src)| (label, workspace.root.join(src)))
        .unzip()
}

/// The digest of every source, in order: thousands of `stat`s on a no-op build, and as many
/// files hashed into the store on a first one, so on several threads.
fn source_digests(
    owners: &[&Label],
    paths: &[PathBuf],
    digests: &SourceDigests,
) -> Result<Vec<Stamped>, LowerError> {
    digests
        .digest_all(paths)
        .into_iter()
        .zip(owners)
        .map(|(digest, label)| {
            digest.map_err(|source| LowerError::Exec {
                label: label.to_string(),
                source: Box::new(source),
            })
        })
        .collect()
}

/// Lowers every target of `graph`.
fn lower_with(
    workspace: &Workspace,
    graph: &TargetGraph,
    digests: &SourceDigests,
    toolchains: &Toolchains,
    tools: &mut ToolchainMemo,
) -> Result<Lowered, LowerError> {
    let mut lowered = Lowered::default();
    for label in dependency_order(graph) {
        let target = &graph.targets[&label];
        let exec_err = |source: ExecError| LowerError::Exec {
            label: label.to_string(),
            source: Box::new(source),
        };
        let mut inputs = Vec::with_capacity(target.srcs.len());
        for src in &target.srcs {
            let (digest, executable) = digests
                .digest(&workspace.root.join(src))
                .map_err(exec_err)?;
            inputs.push(Input {
                path: src.clone(),
                digest,
                executable,
            });
        }
        let mut deps = Vec::with_capacity(target.deps.len());
        for dep in &target.deps {
            let id = lowered.ids.get(dep).ok_or_else(|| LowerError::MissingDep {
                label: label.to_string(),
                dep: dep.to_string(),
            })?;
            deps.push(*id);
        }
        let resolve = |reference: &str| -> Option<JobId> {
            let dep = Label::parse(reference).ok()?;
            lowered.ids.get(&dep).copied()
        };
        let cmds = target
            .cmds
            .iter()
            .map(|cmd| rewrite_cmd(cmd, &resolve))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| LowerError::Rewrite {
                label: label.to_string(),
                source: Box::new(source),
            })?;
        let toolchain = toolchains
            .toolchain_memo(&cmds, &target.tools, tools)
            .map_err(exec_err)?;
        let job = Job {
            name: label.to_string(),
            inputs,
            deps,
            cmds,
            env: target.env.clone(),
            outs: target.outs.clone(),
            toolchain,
            network: target.network,
        };
        job.validate().map_err(|source| LowerError::Invalid {
            label: label.to_string(),
            source: Box::new(source),
        })?;
        let id = job.id();
        lowered.ids.insert(label.clone(), id);
        lowered.jobs.push((id, Arc::new(job)));
    }
    Ok(lowered)
}

/// The labels of `graph`, each after its deps.
fn dependency_order(graph: &TargetGraph) -> Vec<Label> {
    let mut order = Vec::with_capacity(graph.targets.len());
    let mut visited = std::collections::BTreeSet::new();
    for root in graph.targets.keys() {
        if visited.contains(root) {
            continue;
        }
        // Iterative post-order DFS: (label, index of the next dep to visit).
        let mut stack = vec![(root.clone(), 0usize)];
        visited.insert(root.clone());
        while let Some((label, next)) = stack.pop() {
            let deps = graph
                .targets
                .get(&label)
                .map(|t| t.deps.as_slice())
                .unwrap_or(&[]);
            if let Some(dep) = deps.get(next) {
                stack.push((label, next + 1));
                if graph.targets.contains_key(dep) && visited.insert(dep.clone()) {
                    stack.push((dep.clone(), 0));
                }
            } else {
                order.push(label);
            }
        }
    }
    order
}

/// A lowered distbuild graph: the jobs, each after its deps, and each job's author-chosen ID.
#[derive(Debug)]
pub(crate) struct LoweredGraph {
    pub(crate) jobs: Vec<(JobId, Arc<Job>)>,
    pub(crate) names: Vec<(String, JobId)>,
}

/// Lowers every job of a distbuild graph, whose inputs are relative to `source_dir`. Each job
/// may name only jobs listed before it, as deps and in `{{DEP:<ID>}}`.
pub(crate) fn lower_graph(
    graph: &DistGraph,
    source_dir: &Path,
    digests: &SourceDigests,
    toolchains: &Toolchains,
) -> Result<LoweredGraph, GraphLowerError> {
    let mut ids: HashMap<String, JobId> = HashMap::new();
    let mut tools = ToolchainMemo::default();
    let mut jobs = Vec::with_capacity(graph.jobs.len());
    let mut names = Vec::with_capacity(graph.jobs.len());
    for dist in &graph.jobs {
        let mut inputs = Vec::with_capacity(dist.inputs.len());
        for input in &dist.inputs {
            let (digest, executable) =
                digests
                    .digest(&source_dir.join(input))
                    .map_err(|e| GraphLowerError::Input {
                        job: dist.id.clone(),
                        source: Box::new(e),
                    })?;
            inputs.push(Input {
                path: input.clone(),
                digest,
                executable,
            });
        }
        let deps = dist
            .deps
            .iter()
            .map(|d| {
                ids.get(d)
                    .copied()
                    .ok_or_else(|| GraphLowerError::UnknownDep {
                        job: dist.id.clone(),
                        dep: d.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolve = |reference: &str| ids.get(reference).copied();
        let cmds = dist
            .cmds
            .iter()
            .map(|cmd| rewrite_cmd(cmd, &resolve))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| GraphLowerError::Cmds {
                job: dist.id.clone(),
                source,
            })?;
        let toolchain = toolchains
            .toolchain_memo(&cmds, &[], &mut tools)
            .map_err(|e| GraphLowerError::Toolchain {
                job: dist.id.clone(),
                source: Box::new(e),
            })?;
        let job = Job {
            name: if dist.name.is_empty() {
                dist.id.clone()
            } else {
                dist.name.clone()
            },
            inputs,
            deps,
            cmds,
            env: Default::default(),
            outs: Vec::new(),
            toolchain,
            // The distbuild format (seed 003) has no such field.
            network: false,
        };
        job.validate().map_err(|e| GraphLowerError::Invalid {
            job: dist.id.clone(),
            source: Box::new(e),
        })?;
        let id = job.id();
        ids.insert(dist.id.clone(), id);
        names.push((dist.id.clone(), id));
        jobs.push((id, Arc::new(job)));
    }
    Ok(LoweredGraph { jobs, names })
}

/// Rewrites every `{{DEP:<ref>}}` in a command with the id `resolve` gives the reference.
fn rewrite_cmd(cmd: &Cmd, resolve: &dyn Fn(&str) -> Option<JobId>) -> Result<Cmd, RewriteError> {
    let rewrite = |text: &str| {
        Template::parse(text)?.rewrite_deps(|reference| {
            resolve(reference).ok_or_else(|| RewriteError::UnknownDep(reference.to_owned()))
        })
    };
    Ok(match cmd {
        Cmd::Exec { argv, env, cwd } => Cmd::Exec {
            argv: argv.iter().map(|a| rewrite(a)).collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|(k, v)| Ok((k.clone(), rewrite(v)?)))
                .collect::<Result<_, RewriteError>>()?,
            cwd: cwd.as_deref().map(rewrite).transpose()?,
        },
        Cmd::Cat { output, template } => Cmd::Cat {
            output: rewrite(output)?,
            template: rewrite(template)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weft_store::Store;

    use super::*;
    use crate::frontend::{DistJob, SourceLocation, Target};

    fn id(name: &str) -> JobId {
        JobId(Digest::of(name.as_bytes()))
    }

    #[test]
    fn rewrite_cmd_rewrites_every_string_of_a_command() {
        let x = id("x");
        let resolve = |reference: &str| (reference == "x").then_some(x);
        let exec = Cmd::Exec {
            argv: vec!["cc".into(), "-I{{DEP:x}}".into(), "{{OUTPUT_DIR}}".into()],
            env: BTreeMap::from([("K".into(), "{{DEP:x}}/k".into())]),
            cwd: Some("{{DEP:x}}".into()),
        };
        let dep = format!("{{{{DEP:{x}}}}}");
        assert_eq!(
            rewrite_cmd(&exec, &resolve).expect("rewrite"),
            Cmd::Exec {
                argv: vec!["cc".into(), format!("-I{dep}"), "{{OUTPUT_DIR}}".into()],
                env: BTreeMap::from([("K".into(), format!("{dep}/k"))]),
                cwd: Some(dep.clone()),
            }
        );
        let cat = Cmd::Cat {
            output: "{{OUTPUT_DIR}}/o".into(),
            template: "from {{DEP:x}}".into(),
        };
        assert_eq!(
            rewrite_cmd(&cat, &resolve).expect("rewrite"),
            Cmd::Cat {
                output: "{{OUTPUT_DIR}}/o".into(),
                template: format!("from {dep}"),
            }
        );
        let unknown = Cmd::Cat {
            output: "{{OUTPUT_DIR}}/o".into(),
            template: "{{DEP:y}}".into(),
        };
        let err = rewrite_cmd(&unknown, &resolve).expect_err("unknown");
        assert_eq!(err.to_string(), "`{{DEP:y}}` names no dependency");
        let bad = Cmd::Cat {
            output: "{{OUT}}".into(),
            template: String::new(),
        };
        let err = rewrite_cmd(&bad, &resolve).expect_err("bad template");
        assert!(matches!(err, RewriteError::Template(_)), "{err}");
    }

    #[test]
    fn dependency_order_puts_every_dep_first() {
        let label = |text: &str| Label::parse(text).expect("label");
        let target = |name: &str, deps: &[&str]| Target {
            label: label(name),
            defined_at: SourceLocation {
                file: "BUILD".into(),
                line: 1,
            },
            srcs: Vec::new(),
            deps: deps.iter().map(|d| label(d)).collect(),
            cmds: Vec::new(),
            env: BTreeMap::new(),
            outs: Vec::new(),
            tools: Vec::new(),
            info: BTreeMap::new(),
            network: false,
        };
        let targets = [
            target("//:app", &["//lib:b", "//lib:a"]),
            target("//lib:a", &["//lib:c"]),
            target("//lib:b", &["//lib:c"]),
            target("//lib:c", &[]),
            target("//:alone", &[]),
        ];
        let graph = TargetGraph {
            requested: vec![label("//:app")],
            targets: targets.into_iter().map(|t| (t.label.clone(), t)).collect(),
        };
        let order: Vec<String> = dependency_order(&graph)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            order,
            ["//:alone", "//lib:c", "//lib:b", "//lib:a", "//:app"]
        );
    }

    #[test]
    fn a_system_header_changed_between_builds_lowers_the_graph_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let digests = SourceDigests::new(store);
        let include = dir.path().join("include");
        std::fs::create_dir_all(&include).expect("mkdir");
        std::fs::write(include.join("stdio.h"), "v1").expect("write");
        let toolchains = Toolchains::with_system(
            "/usr/bin:/bin".into(),
            crate::exec::SystemConfig {
                include_dirs: vec![include.clone()],
                library_dirs: Vec::new(),
                cache_file: None,
                watch: true,
            },
        );
        let workspace = Workspace {
            root: dir.path().to_owned(),
            packages: BTreeMap::new(),
        };
        let label = Label::parse("//:hello").expect("label");
        let target = Target {
            label: label.clone(),
            defined_at: SourceLocation {
                file: "BUILD".into(),
                line: 1,
            },
            srcs: Vec::new(),
            deps: Vec::new(),
            cmds: vec![Cmd::Exec {
                argv: vec!["sh".into(), "-c".into(), "true".into()],
                env: BTreeMap::new(),
                cwd: None,
            }],
            env: BTreeMap::new(),
            outs: Vec::new(),
            tools: Vec::new(),
            info: BTreeMap::new(),
            network: false,
        };
        let graph = Arc::new(TargetGraph {
            requested: vec![label.clone()],
            targets: BTreeMap::from([(label.clone(), target)]),
        });
        let mut memo = None;
        let lower = |memo: &mut Option<LowerMemo>| {
            lower_cached(memo, &workspace, &graph, &digests, &toolchains).expect("lower")
        };
        let first = lower(&mut memo);
        assert!(first.jobs[0].1.toolchain.system.is_some());
        assert!(Arc::ptr_eq(&lower(&mut memo), &first), "nothing changed");
        std::fs::write(include.join("stdio.h"), "v2").expect("write");
        let second = lower(&mut memo);
        assert_ne!(second.ids[&label], first.ids[&label]);
        assert!(Arc::ptr_eq(&lower(&mut memo), &second));
    }

    #[test]
    fn network_reaches_the_job_and_changes_its_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("weft.toml"), "").expect("weft.toml");
        let workspace = Workspace::find(dir.path()).expect("workspace");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let digests = SourceDigests::new(store);
        let toolchains = Toolchains::new(String::new());
        let label = Label::parse("//:fetch").expect("label");
        let lower = |network: bool| {
            let target = Target {
                label: label.clone(),
                defined_at: SourceLocation {
                    file: "BUILD".into(),
                    line: 1,
                },
                srcs: Vec::new(),
                deps: Vec::new(),
                cmds: vec![Cmd::Cat {
                    output: "{{OUTPUT_DIR}}/o".into(),
                    template: "o".into(),
                }],
                env: BTreeMap::new(),
                outs: vec!["o".into()],
                tools: Vec::new(),
                info: BTreeMap::new(),
                network,
            };
            let graph = TargetGraph {
                requested: vec![label.clone()],
                targets: BTreeMap::from([(label.clone(), target)]),
            };
            let lowered = lower_with(
                &workspace,
                &graph,
                &digests,
                &toolchains,
                &mut ToolchainMemo::default(),
            )
            .expect("lower");
            lowered.jobs[0].clone()
        };
        let (offline_id, offline) = lower(false);
        let (online_id, online) = lower(true);
        assert!(!offline.network);
        assert!(online.network, "`network = True` reaches the job");
        assert_ne!(offline_id, online_id, "and its id");
        assert_eq!(online_id, online.id());
    }

    fn dist(id: &str, deps: &[&str], inputs: &[&str], template: &str) -> DistJob {
        DistJob {
            id: id.into(),
            name: String::new(),
            inputs: inputs.iter().map(|i| (*i).to_owned()).collect(),
            deps: deps.iter().map(|d| (*d).to_owned()).collect(),
            cmds: vec![Cmd::Cat {
                output: "{{OUTPUT_DIR}}/out".into(),
                template: template.into(),
            }],
        }
    }

    #[test]
    fn a_distbuild_graph_names_its_deps_by_job_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let digests = SourceDigests::new(store);
        let toolchains = Toolchains::new(String::new());
        let sources = dir.path().join("src");
        std::fs::create_dir_all(&sources).expect("mkdir");
        std::fs::write(sources.join("in.txt"), b"input").expect("write");
        let mut named = dist("use", &["gen"], &["in.txt"], "{{DEP:gen}}/out");
        named.name = "use the header".into();
        let graph = DistGraph {
            jobs: vec![dist("gen", &[], &[], "v1"), named],
        };
        let lowered = lower_graph(&graph, &sources, &digests, &toolchains).expect("lower");
        let ids: Vec<JobId> = lowered.jobs.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            lowered.names,
            [("gen".to_owned(), ids[0]), ("use".to_owned(), ids[1])]
        );
        let (gen_job, use_job) = (&lowered.jobs[0].1, &lowered.jobs[1].1);
        assert_eq!(
            gen_job.name, "gen",
            "a job without a name is called by its ID"
        );
        assert_eq!(use_job.name, "use the header");
        assert_eq!(use_job.deps, [ids[0]]);
        assert_eq!(use_job.inputs[0].digest, Digest::of(b"input"));
        assert_eq!(
            use_job.cmds[0],
            Cmd::Cat {
                output: "{{OUTPUT_DIR}}/out".into(),
                template: format!("{{{{DEP:{}}}}}/out", ids[0]),
            }
        );
        assert_eq!(ids[1], use_job.id());
    }

    #[test]
    fn a_distbuild_job_that_cannot_be_lowered_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let digests = SourceDigests::new(store);
        let toolchains = Toolchains::new(String::new());
        let cases = [
            (dist("x", &["nope"], &[], ""), "job `x`: unknown dep `nope`"),
            (
                dist("x", &[], &[], "{{DEP:gen}}"),
                "job `x`, field `Cmds`: `{{DEP:gen}}` names no dependency",
            ),
            (
                dist("x", &[], &["missing.c"], ""),
                "job `x`, field `Inputs`: ",
            ),
        ];
        for (job, expected) in cases {
            let graph = DistGraph { jobs: vec![job] };
            let err = lower_graph(&graph, dir.path(), &digests, &toolchains).expect_err(expected);
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }
}
