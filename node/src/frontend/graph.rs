//! [`Target`] and [`TargetGraph`]: what the front end hands to the daemon.

use std::collections::{BTreeMap, HashMap, HashSet};

use weft_protocol::{Cmd, Label};

use super::error::{FrontendError, FrontendErrorKind, SourceLocation};

/// One target: a `job()` call, resolved and checked. It maps one-to-one to a protocol
/// [`Job`](weft_protocol::Job) once the daemon adds input digests and the toolchain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The target's label.
    pub label: Label,
    /// Where the BUILD file declares it: the line of the `job()` call, or of the call of the
    /// macro (such as `cc_library`) that made it.
    pub defined_at: SourceLocation,
    /// Source files, workspace-relative; sorted, without duplicates, and each exists.
    pub srcs: Vec<String>,
    /// The targets whose outputs this one reads; sorted, without duplicates.
    pub deps: Vec<Label>,
    /// The commands. Every `{{DEP:<ref>}}` names one of `deps` by its canonical label, and
    /// every exec has a working directory (by default the target's directory under
    /// `{{SOURCE_DIR}}`).
    pub cmds: Vec<Cmd>,
    /// Environment for every command.
    pub env: BTreeMap<String, String>,
    /// Files the job leaves under `{{OUTPUT_DIR}}`, relative to it.
    pub outs: Vec<String>,
    /// Tools, besides each exec's `argv[0]`, that belong in the toolchain fingerprint.
    pub tools: Vec<String>,
    /// What other BUILD files read with `target_info()`. Not part of the job.
    pub info: BTreeMap<String, InfoValue>,
    /// The commands may use the host's network (`network = True`); it becomes the job's
    /// [`network`](weft_protocol::Job::network), so it is part of the job's id.
    pub network: bool,
}

/// A value of a target's `info` dict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InfoValue {
    /// A string.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

/// The targets a build needs: the requested ones and everything they depend on.
///
/// Invariants: every dep of every target is in `targets`, and the deps have no cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGraph {
    /// The targets the patterns named, in the order the patterns named them.
    pub requested: Vec<Label>,
    /// Every target, by label.
    pub targets: BTreeMap<Label, Target>,
}

impl TargetGraph {
    /// Every label, each after all of its deps.
    pub fn topological_order(&self) -> Vec<&Label> {
        let mut order = Vec::with_capacity(self.targets.len());
        let mut done: HashSet<&Label> = HashSet::with_capacity(self.targets.len());
        for label in self.targets.keys() {
            self.post_order(label, &mut done, &mut order);
        }
        order
    }

    /// Everything `label` depends on, directly or not, each after its own deps; without
    /// `label` itself. Empty when `label` is not in the graph.
    pub fn transitive_deps(&self, label: &Label) -> Vec<&Label> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        if let Some(target) = self.targets.get(label) {
            for dep in &target.deps {
                self.post_order(dep, &mut done, &mut order);
            }
        }
        order
    }

    /// Iterative depth-first post-order from `start`; the graph is acyclic.
    fn post_order<'a>(
        &'a self,
        start: &'a Label,
        done: &mut HashSet<&'a Label>,
        order: &mut Vec<&'a Label>,
    ) {
        if !done.insert(start) {
            return;
        }
        let mut stack: Vec<(&'a Label, usize)> = vec![(start, 0)];
        while let Some((label, next)) = stack.last_mut() {
            let deps = self.targets.get(*label).map_or(&[][..], |t| &t.deps[..]);
            if let Some(dep) = deps.get(*next) {
                *next += 1;
                if done.insert(dep) {
                    stack.push((dep, 0));
                }
            } else {
                order.push(*label);
                stack.pop();
            }
        }
    }
}

/// Fails with the first cycle found, printed `//a -> //b -> //a`, at the location of the
/// target where it closes.
pub(crate) fn check_acyclic(targets: &BTreeMap<Label, Target>) -> Result<(), FrontendError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        OnStack,
        Done,
    }
    let mut state: HashMap<&Label, State> = HashMap::with_capacity(targets.len());
    for root in targets.keys() {
        if state.contains_key(root) {
            continue;
        }
        let mut stack: Vec<(&Label, usize)> = vec![(root, 0)];
        state.insert(root, State::OnStack);
        while let Some((label, next)) = stack.last_mut() {
            let deps = targets.get(*label).map_or(&[][..], |t| &t.deps[..]);
            let Some(dep) = deps.get(*next) else {
                state.insert(*label, State::Done);
                stack.pop();
                continue;
            };
            *next += 1;
            match state.get(dep) {
                None => {
                    state.insert(dep, State::OnStack);
                    stack.push((dep, 0));
                }
                Some(State::OnStack) => {
                    let start = stack.iter().position(|(l, _)| *l == dep).unwrap_or(0);
                    let mut cycle: Vec<Label> =
                        stack[start..].iter().map(|(l, _)| (*l).clone()).collect();
                    cycle.push(dep.clone());
                    let at = targets.get(dep).map(|t| t.defined_at.clone());
                    return Err(FrontendError::at(
                        FrontendErrorKind::DependencyCycle { cycle },
                        at,
                    ));
                }
                Some(State::Done) => {}
            }
        }
    }
    Ok(())
}
