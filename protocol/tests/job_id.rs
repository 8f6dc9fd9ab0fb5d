//! `JobId`: pinned golden values, and a property test that every field a job's work depends on
//! changes the id.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_protocol::{Cmd, Digest, Input, Job, JobId, Toolchain};

fn sample_job() -> Job {
    Job {
        name: "//src:hello.o".into(),
        inputs: vec![
            Input {
                path: "src/hello.c".into(),
                digest: Digest::of(b"int main(){}"),
                executable: false,
            },
            Input {
                path: "src/hello.h".into(),
                digest: Digest::of(b"#pragma once"),
                executable: false,
            },
        ],
        deps: vec![],
        cmds: vec![Cmd::Exec {
            argv: vec![
                "cc".into(),
                "-c".into(),
                "{{SOURCE_DIR}}/src/hello.c".into(),
                "-o".into(),
                "{{OUTPUT_DIR}}/hello.o".into(),
            ],
            env: BTreeMap::new(),
            cwd: None,
        }],
        env: BTreeMap::from([("LANG".into(), "C".into())]),
        outs: vec!["hello.o".into()],
        toolchain: Toolchain {
            platform: "linux-x86_64".into(),
            tools: BTreeMap::from([("cc".into(), Digest::of(b"gcc 12.2.0"))]),
            system: None,
        },
        network: false,
    }
}

#[test]
fn golden_ids_are_stable() {
    // These values pin the canonical encoding. If one changes, every cache in every team is
    // invalidated: bump the domain string (`weft.job.v2`) on purpose, never by accident.
    let job = sample_job();
    assert_eq!(job.id().to_string(), GOLDEN_SAMPLE);

    let empty = Job {
        name: "empty".into(),
        inputs: vec![],
        deps: vec![],
        cmds: vec![],
        env: BTreeMap::new(),
        outs: vec![],
        toolchain: Toolchain::default(),
        network: false,
    };
    assert_eq!(empty.id().to_string(), GOLDEN_EMPTY);

    let cat = Job {
        name: "gen".into(),
        deps: vec![job.id()],
        cmds: vec![Cmd::Cat {
            output: "{{OUTPUT_DIR}}/version.h".into(),
            template: format!("#define DEP \"{{{{DEP:{}}}}}\"\n", job.id()),
        }],
        outs: vec!["version.h".into()],
        ..empty
    };
    assert_eq!(cat.validate(), Ok(()));
    assert_eq!(cat.id().to_string(), GOLDEN_CAT);
}

const GOLDEN_SAMPLE: &str = "e067366d3b04584fa649c4a9f701a496a395e09a881b1581aacc7d07719923c6";
const GOLDEN_EMPTY: &str = "c4aa695de0b439e8dab65de58a83dc5ae816cf0f8694c3c80acfe3647ec8f8ca";
const GOLDEN_CAT: &str = "624c9a26107697875570ddf1eae7da774a3b71736a6911a7cfb89daf4915190d";

#[test]
fn name_and_order_do_not_matter() {
    let job = sample_job();
    let mut renamed = job.clone();
    renamed.name = "//other:name".into();
    assert_eq!(renamed.id(), job.id());
    let mut reordered = job.clone();
    reordered.inputs.reverse();
    assert_eq!(reordered.id(), job.id());
}

/// One way to change a job. Each must change its id.
#[derive(Debug, Clone)]
enum Change {
    InputPath(usize, String),
    InputDigest(usize, [u8; 32]),
    InputExecutable(usize),
    AddInput(String),
    RemoveInput(usize),
    AddDep([u8; 32]),
    Arg(usize, String),
    AddArg(String),
    CmdEnv(String, String),
    Cwd(Option<String>),
    AddCat(String, String),
    Env(String, String),
    RemoveEnv,
    Out(String),
    Platform(String),
    Tool(String, [u8; 32]),
    System(Option<[u8; 32]>),
    Network,
}

fn apply(job: &mut Job, change: &Change) -> bool {
    match change {
        Change::InputPath(i, path) => {
            let i = i % job.inputs.len();
            if job.inputs.iter().any(|input| &input.path == path) {
                return false;
            }
            job.inputs[i].path = path.clone();
        }
        Change::InputDigest(i, bytes) => {
            let i = i % job.inputs.len();
            let digest = Digest::from_bytes(*bytes);
            if job.inputs[i].digest == digest {
                return false;
            }
            job.inputs[i].digest = digest;
        }
        Change::InputExecutable(i) => {
            let i = i % job.inputs.len();
            job.inputs[i].executable = !job.inputs[i].executable;
        }
        Change::AddInput(path) => {
            if job.inputs.iter().any(|input| &input.path == path) {
                return false;
            }
            job.inputs.push(Input {
                path: path.clone(),
                digest: Digest::of(b"x"),
                executable: false,
            });
        }
        Change::RemoveInput(i) => {
            let i = i % job.inputs.len();
            job.inputs.remove(i);
        }
        Change::AddDep(bytes) => job.deps.push(JobId(Digest::from_bytes(*bytes))),
        Change::Arg(i, arg) => {
            let Cmd::Exec { argv, .. } = &mut job.cmds[0] else {
                return false;
            };
            let i = i % argv.len();
            if &argv[i] == arg {
                return false;
            }
            argv[i] = arg.clone();
        }
        Change::AddArg(arg) => {
            let Cmd::Exec { argv, .. } = &mut job.cmds[0] else {
                return false;
            };
            argv.push(arg.clone());
        }
        Change::CmdEnv(key, value) => {
            let Cmd::Exec { env, .. } = &mut job.cmds[0] else {
                return false;
            };
            if env.insert(key.clone(), value.clone()).as_ref() == Some(value) {
                return false;
            }
        }
        Change::Cwd(cwd) => {
            let Cmd::Exec { cwd: old, .. } = &mut job.cmds[0] else {
                return false;
            };
            if old == cwd {
                return false;
            }
            *old = cwd.clone();
        }
        Change::AddCat(output, template) => job.cmds.push(Cmd::Cat {
            output: output.clone(),
            template: template.clone(),
        }),
        Change::Env(key, value) => {
            if job.env.insert(key.clone(), value.clone()).as_ref() == Some(value) {
                return false;
            }
        }
        Change::RemoveEnv => {
            if job.env.pop_first().is_none() {
                return false;
            }
        }
        Change::Out(out) => {
            if job.outs.contains(out) {
                return false;
            }
            job.outs.push(out.clone());
        }
        Change::Platform(platform) => {
            if &job.toolchain.platform == platform {
                return false;
            }
            job.toolchain.platform = platform.clone();
        }
        Change::Tool(name, bytes) => {
            let digest = Digest::from_bytes(*bytes);
            if job.toolchain.tools.insert(name.clone(), digest) == Some(digest) {
                return false;
            }
        }
        Change::System(bytes) => {
            let system = bytes.map(Digest::from_bytes);
            if job.toolchain.system == system {
                return false;
            }
            job.toolchain.system = system;
        }
        Change::Network => job.network = !job.network,
    }
    true
}

fn change() -> impl Strategy<Value = Change> {
    let text = "[a-z0-9_./{}:-]{0,12}";
    prop_oneof![
        (any::<usize>(), "[a-z]{1,8}(/[a-z]{1,8}){0,2}").prop_map(|(i, p)| Change::InputPath(i, p)),
        (any::<usize>(), any::<[u8; 32]>()).prop_map(|(i, d)| Change::InputDigest(i, d)),
        any::<usize>().prop_map(Change::InputExecutable),
        "[a-z]{1,8}/[a-z]{1,8}".prop_map(Change::AddInput),
        any::<usize>().prop_map(Change::RemoveInput),
        any::<[u8; 32]>().prop_map(Change::AddDep),
        (any::<usize>(), text).prop_map(|(i, a)| Change::Arg(i, a)),
        text.prop_map(Change::AddArg),
        ("[A-Z]{1,6}", text).prop_map(|(k, v)| Change::CmdEnv(k, v)),
        proptest::option::of(text).prop_map(Change::Cwd),
        (text, text).prop_map(|(o, t)| Change::AddCat(o, t)),
        ("[A-Z]{1,6}", text).prop_map(|(k, v)| Change::Env(k, v)),
        Just(Change::RemoveEnv),
        "[a-z]{1,8}".prop_map(Change::Out),
        "[a-z0-9-]{1,12}".prop_map(Change::Platform),
        ("[a-z]{1,6}", any::<[u8; 32]>()).prop_map(|(n, d)| Change::Tool(n, d)),
        proptest::option::of(any::<[u8; 32]>()).prop_map(Change::System),
        Just(Change::Network),
    ]
}

proptest! {
    #[test]
    fn any_single_change_changes_the_id(change in change()) {
        let job = sample_job();
        let mut changed = job.clone();
        if apply(&mut changed, &change) {
            prop_assert_ne!(changed.id(), job.id(), "{:?}", change);
        }
    }

    #[test]
    fn id_is_a_pure_function(changes in proptest::collection::vec(change(), 0..6)) {
        let mut job = sample_job();
        for change in &changes {
            if !job.inputs.is_empty() || !matches!(change, Change::InputPath(..) | Change::InputDigest(..) | Change::InputExecutable(_) | Change::RemoveInput(_)) {
                apply(&mut job, change);
            }
        }
        prop_assert_eq!(job.clone().id(), job.id());
    }
}
