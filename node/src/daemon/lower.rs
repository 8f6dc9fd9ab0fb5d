//! Lowering: a front end's targets become protocol [`Job`]s, with input digests, resolved
//! dependency ids and a toolchain fingerprint.
//!
//! This is where a target's `{{DEP:<label>}}` becomes `{{DEP:<job id>}}`, so that a job's id
//! names its dependencies by content, never by where they live.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_protocol::{Cmd, Digest, Input, Job, JobId, Label, Segment, Template};

use crate::exec::{ExecError, SourceDigests, SourceStamp, Stamped, Toolchains};
use crate::frontend::{TargetGraph, Workspace};

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
    /// The job is malformed; the front end should have caught it.
    #[error("target `{label}`: {message}")]
    Invalid {
        /// The target.
        label: String,
        /// What is wrong.
        message: String,
    },
}

/// The last lowering of a workspace's graph, and what it depended on besides the graph: the
/// digest of every source and of every tool. While those are the same, so are the jobs.
pub(crate) struct LowerMemo {
    graph: Arc<TargetGraph>,
    /// Every source file of the graph, in [`source_paths`] order.
    paths: Vec<PathBuf>,
    /// Their digests, and the stamps those are cached under when every one is.
    sources: Vec<(Digest, bool)>,
    stamps: Option<Vec<SourceStamp>>,
    /// The store's removal counter before those digests were taken.
    removals: u64,
    tools: HashMap<String, Digest>,
    lowered: Arc<Lowered>,
}

/// Lowers every target of `graph`, reusing `memo` when the graph is the very one lowered last time and no
/// source or tool digest changed: a no-op build then hashes no job.
pub(crate) fn lower_cached(
    memo: &mut Option<LowerMemo>,
    workspace: &Workspace,
    graph: &Arc<TargetGraph>,
    digests: &SourceDigests,
    toolchains: &Toolchains,
) -> Result<Arc<Lowered>, LowerError> {
    let tools_unchanged = |tools: &HashMap<String, Digest>| {
        tools.iter().all(|(tool, digest)| {
            toolchains
                .resolve(tool)
                .is_ok_and(|(_, now)| now == *digest)
        })
    };
    let memo_of_graph = memo.as_mut().filter(|last| Arc::ptr_eq(&last.graph, graph));
    // The quick check: every source still has the stamp its digest was cached under.
    if let Some(last) = &memo_of_graph
        && let Some(stamps) = &last.stamps
        && digests.unchanged(&last.paths, stamps, last.removals)
        && tools_unchanged(&last.tools)
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
        && tools_unchanged(&last.tools)
    {
        last.stamps = stamps;
        last.removals = removals;
        return Ok(last.lowered.clone());
    }
    let mut tools = HashMap::new();
    let lowered = Arc::new(lower_with(
        workspace, graph, digests, toolchains, &mut tools,
    )?);
    *memo = Some(LowerMemo {
        graph: graph.clone(),
        paths,
        sources,
        stamps,
        removals,
        tools,
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
    tools: &mut HashMap<String, Digest>,
) -> Result<Lowered, LowerError> {
    let mut lowered = Lowered::default();
    for label in dependency_order(graph) {
        let target = &graph.targets[&label];
        let invalid = |message: String| LowerError::Invalid {
            label: label.to_string(),
            message,
        };
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
            let id = lowered
                .ids
                .get(dep)
                .ok_or_else(|| invalid(format!("dependency `{dep}` is not part of the graph")))?;
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
            .collect::<Result<Vec<_>, String>>()
            .map_err(invalid)?;
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
        };
        job.validate().map_err(|e| invalid(e.to_string()))?;
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

/// Rewrites every `{{DEP:<ref>}}` in a command with the id `resolve` gives the reference.
pub(crate) fn rewrite_cmd(
    cmd: &Cmd,
    resolve: &dyn Fn(&str) -> Option<JobId>,
) -> Result<Cmd, String> {
    let rewrite = |text: &str| rewrite_template(text, resolve);
    Ok(match cmd {
        Cmd::Exec { argv, env, cwd } => Cmd::Exec {
            argv: argv.iter().map(|a| rewrite(a)).collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|(k, v)| Ok((k.clone(), rewrite(v)?)))
                .collect::<Result<_, String>>()?,
            cwd: cwd.as_deref().map(rewrite).transpose()?,
        },
        Cmd::Cat { output, template } => Cmd::Cat {
            output: rewrite(output)?,
            template: rewrite(template)?,
        },
    })
}

fn rewrite_template(text: &str, resolve: &dyn Fn(&str) -> Option<JobId>) -> Result<String, String> {
    let template = Template::parse(text).map_err(|e| e.to_string())?;
    if template.deps().next().is_none() {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len() + 64);
    for segment in template.segments() {
        match segment {
            Segment::Literal(literal) => out.push_str(literal),
            Segment::OutputDir => out.push_str("{{OUTPUT_DIR}}"),
            Segment::SourceDir => out.push_str("{{SOURCE_DIR}}"),
            Segment::Dep(reference) => {
                let id = resolve(reference)
                    .ok_or_else(|| format!("`{{{{DEP:{reference}}}}}` names no dependency"))?;
                out.push_str("{{DEP:");
                out.push_str(&id.to_string());
                out.push_str("}}");
            }
        }
    }
    Ok(out)
}

/// The path of a target's outputs under `weft-out/`: the target's directory in the workspace.
pub(crate) fn output_dir(workspace: &Workspace, label: &Label) -> Option<std::path::PathBuf> {
    let dir = workspace.dir_of(label.package_path()).ok()?;
    Some(workspace.root.join("weft-out").join(Path::new(&dir)))
}
