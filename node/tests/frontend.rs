//! The front end at its boundary: temporary workspaces in, target graphs and error messages
//! out.

#![cfg(feature = "shell")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use weft_node::frontend::{
    FrontendError, FrontendErrorKind, InfoValue, LoadCancel, Loader, Target, TargetGraph, Workspace,
};
use weft_protocol::{Cmd, Label};

/// A temporary workspace. `weft.toml` is empty unless `files` has one.
struct TestWs {
    dir: tempfile::TempDir,
    ws: Workspace,
}

impl TestWs {
    fn new(files: &[(&str, &str)]) -> TestWs {
        let dir = tempfile::tempdir().expect("tempdir");
        if !files.iter().any(|(p, _)| *p == "weft.toml") {
            write(dir.path(), "weft.toml", "");
        }
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        let ws = Workspace::find(dir.path()).expect("workspace");
        TestWs { dir, ws }
    }

    fn write(&self, path: &str, text: &str) {
        write(self.dir.path(), path, text);
    }

    fn load(
        &self,
        loader: &mut Loader,
        patterns: &[&str],
    ) -> Result<Arc<TargetGraph>, FrontendError> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        loader.load(&self.ws, &patterns)
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn load(files: &[(&str, &str)], patterns: &[&str]) -> Arc<TargetGraph> {
    let ws = TestWs::new(files);
    ws.load(&mut Loader::new(), patterns)
        .unwrap_or_else(|e| panic!("load failed: {e}"))
}

/// The error of finding the workspace or of loading `patterns` in it.
fn fail(files: &[(&str, &str)], patterns: &[&str]) -> FrontendError {
    let dir = tempfile::tempdir().expect("tempdir");
    if !files.iter().any(|(p, _)| *p == "weft.toml") {
        write(dir.path(), "weft.toml", "");
    }
    for (path, text) in files {
        write(dir.path(), path, text);
    }
    let ws = match Workspace::find(dir.path()) {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    match Loader::new().load(&ws, &patterns) {
        Ok(graph) => panic!(
            "expected an error, got targets {:?}",
            graph.targets.keys().collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

fn label(text: &str) -> Label {
    Label::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn target<'a>(graph: &'a TargetGraph, text: &str) -> &'a Target {
    graph
        .targets
        .get(&label(text))
        .unwrap_or_else(|| panic!("no `{text}` in {:?}", graph.targets.keys()))
}

fn labels(graph: &TargetGraph) -> Vec<String> {
    graph.targets.keys().map(ToString::to_string).collect()
}

fn info_list(target: &Target, key: &str) -> Vec<String> {
    match target.info.get(key) {
        Some(InfoValue::List(items)) => items.clone(),
        other => panic!("info[{key}] of {}: {other:?}", target.label),
    }
}

fn argv(target: &Target, i: usize) -> &[String] {
    match &target.cmds[i] {
        Cmd::Exec { argv, .. } => argv,
        other => panic!("not an exec: {other:?}"),
    }
}

#[test]
fn glob_semantics() {
    let files = [
        ("weft.toml", "[packages]\next = \"pkg/ext\"\n"),
        ("pkg/a.c", ""),
        ("pkg/b.c", ""),
        ("pkg/b.h", ""),
        ("pkg/.hidden.c", ""),
        ("pkg/ab.cc", ""),
        ("pkg/sub/c.c", ""),
        ("pkg/sub/deeper/d.c", ""),
        ("pkg/.git/e.c", ""),
        ("pkg/other/BUILD", ""),
        ("pkg/other/f.c", ""),
        ("pkg/ext/g.c", ""),
        ("i.c", ""),
        ("weft-out/j.c", ""),
        ("ext2/k.c", ""),
    ];
    // (the glob call, expected files relative to `pkg`)
    let cases: &[(&str, &[&str])] = &[
        ("glob(['*.c'])", &["a.c", "b.c"]),
        ("glob(['?.c'])", &["a.c", "b.c"]),
        ("glob(['a*'])", &["a.c", "ab.cc"]),
        ("glob(['.*.c'])", &[".hidden.c"]),
        (
            "glob(['**/*.c'])",
            &["a.c", "b.c", "sub/c.c", "sub/deeper/d.c"],
        ),
        ("glob(['sub/**/*.c'])", &["sub/c.c", "sub/deeper/d.c"]),
        ("glob(['sub/*'])", &["sub/c.c"]),
        ("glob(['**/d.c'])", &["sub/deeper/d.c"]),
        ("glob(['sub/**'])", &["sub/c.c", "sub/deeper/d.c"]),
        ("glob(['other/*.c', 'ext/*.c'])", &[]),
        ("glob(['.git/*.c'])", &[".git/e.c"]),
        ("glob(['*.c', '*.h', 'a.c'])", &["a.c", "b.c", "b.h"]),
        ("glob(['**/*.c'], exclude=['sub/**'])", &["a.c", "b.c"]),
        (
            "glob(['*'], exclude=['*.h', 'ab.*'])",
            &["BUILD", "a.c", "b.c"],
        ),
        ("glob(['*.nothing'])", &[]),
        ("glob(['sub'])", &[]),
    ];
    for (call, expected) in cases {
        let build = format!("job(name = 'g', info = {{'files': {call}}})\n");
        let graph = load(
            &[files.as_slice(), &[("pkg/BUILD", build.as_str())]].concat(),
            &["//pkg:g"],
        );
        let found = info_list(target(&graph, "//pkg:g"), "files");
        assert_eq!(found, *expected, "{call}");
    }
    // At the root, `weft-out/` and external packages are skipped, whatever their BUILD files.
    let graph = load(
        &[
            files.as_slice(),
            &[
                ("pkg/BUILD", ""),
                ("weft.toml", "[packages]\next = \"ext2\"\n"),
                (
                    "BUILD",
                    "job(name = 'g', info = {'files': glob(['**/*.c'])})\n",
                ),
            ],
        ]
        .concat(),
        &["//:g"],
    );
    assert_eq!(info_list(target(&graph, "//:g"), "files"), ["i.c"]);
    // Glob results are usable as sources.
    let graph = load(
        &[
            files.as_slice(),
            &[("pkg/BUILD", "job(name = 'g', srcs = glob(['**/*.c']))\n")],
        ]
        .concat(),
        &["//pkg:g"],
    );
    assert_eq!(
        target(&graph, "//pkg:g").srcs,
        ["pkg/a.c", "pkg/b.c", "pkg/sub/c.c", "pkg/sub/deeper/d.c"]
    );
}

#[test]
fn load_star_files() {
    let graph = load(
        &[
            ("weft.toml", "[packages]\ntools = \"third_party/tools\"\n"),
            (
                "defs/common.star",
                "load(':flags.star', 'FLAGS')\n\
                 def make(name, text):\n    \
                     job(name = name, outs = [name + '.txt'], \
                         cmds = [cat('{{OUTPUT_DIR}}/' + name + '.txt', text + ' ' + ' '.join(FLAGS))])\n\
                 _private = 1\n",
            ),
            ("defs/flags.star", "FLAGS = ['-O2', '-g']\n"),
            (
                "third_party/tools/lib/tool.star",
                "TOOL = 'tool@' + 'ext'\n",
            ),
            (
                "app/BUILD",
                "load('//defs:common.star', 'make', mk = 'make')\n\
                 load('@tools//lib:tool.star', 'TOOL')\n\
                 make('one', 'hello')\n\
                 mk('two', TOOL)\n",
            ),
        ],
        &["//app:all"],
    );
    assert_eq!(labels(&graph), ["//app:one", "//app:two"]);
    let one = target(&graph, "//app:one");
    assert_eq!(
        one.cmds,
        [Cmd::Cat {
            output: "{{OUTPUT_DIR}}/one.txt".into(),
            template: "hello -O2 -g".into(),
        }]
    );
    // A macro's target points at the BUILD-file line of the macro call.
    assert_eq!(one.defined_at.to_string(), "app/BUILD:3");
    assert_eq!(
        target(&graph, "//app:two").defined_at.to_string(),
        "app/BUILD:4"
    );
    match &target(&graph, "//app:two").cmds[0] {
        Cmd::Cat { template, .. } => assert_eq!(template, "tool@ext -O2 -g"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn target_info_across_packages() {
    let graph = load(
        &[
            (
                "base/BUILD",
                "job(name = 'b', info = {'flags': ['-DBASE'], 'name': 'base'})\n",
            ),
            (
                "mid/BUILD",
                "base = target_info('//base:b')\n\
                 job(name = 'm', deps = ['//base:b'], info = {'flags': base['flags'] + ['-DMID']})\n\
                 job(name = 'same', info = {'from': target_info(':m')['flags']})\n",
            ),
            (
                "top/BUILD",
                "job(name = 't', info = {'flags': target_info('//mid:m')['flags'], \
                 'dir': package_dir(), 'label': package_label()})\n",
            ),
        ],
        &["//top:t", "//mid:same"],
    );
    let top = target(&graph, "//top:t");
    assert_eq!(info_list(top, "flags"), ["-DBASE", "-DMID"]);
    assert_eq!(top.info.get("dir"), Some(&InfoValue::Str("top".into())));
    assert_eq!(top.info.get("label"), Some(&InfoValue::Str("//top".into())));
    assert_eq!(
        info_list(target(&graph, "//mid:same"), "from"),
        ["-DBASE", "-DMID"]
    );
    // target_info is not a dep: //top:t does not depend on //mid:m.
    assert!(!graph.targets.contains_key(&label("//mid:m")));
}

/// A C workspace: `//base` ← `//lib` ← `//app`, with a generated header.
fn c_workspace() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "base/BUILD",
            "cc_library(name = 'base', srcs = ['base.c'], hdrs = ['base.h'])\n",
        ),
        ("base/base.h", "int base(void);\n"),
        (
            "base/base.c",
            "#include \"base.h\"\nint base(void) { return 40; }\n",
        ),
        (
            "lib/BUILD",
            "job(\n    name = 'version',\n    outs = ['version.h'],\n    \
             cmds = [cat('{{OUTPUT_DIR}}/version.h', '#define VERSION 2\\n')],\n)\n\
             cc_library(\n    name = 'util',\n    srcs = ['a.c', 'b.c', 'sub/c.c', 'private.h'],\n    \
             hdrs = ['util.h'],\n    deps = ['//base', ':version'],\n    copts = ['-O1'],\n)\n",
        ),
        (
            "lib/util.h",
            "#include \"base/base.h\"\nint a(void);\nint b(void);\nint c(void);\n",
        ),
        ("lib/private.h", "#define ONE 1\n"),
        (
            "lib/a.c",
            "#include \"util.h\"\n#include \"private.h\"\nint a(void) { return base() + ONE; }\n",
        ),
        (
            "lib/b.c",
            "#include \"lib/util.h\"\n#include \"version.h\"\nint b(void) { return VERSION - 2; }\n",
        ),
        (
            "lib/sub/c.c",
            "#include \"util.h\"\n#include \"base.h\"\nint c(void) { return 0; }\n",
        ),
        (
            "app/BUILD",
            "cc_binary(\n    name = 'app',\n    srcs = ['main.c'],\n    deps = ['//lib:util'],\n    \
             linkopts = ['-lm'],\n)\n",
        ),
        (
            "app/main.c",
            "#include \"util.h\"\n#include \"lib/util.h\"\n#include \"base.h\"\n\
             int main(void) { return a() + b() + c() == 41 ? 0 : 1; }\n",
        ),
    ]
}

#[test]
fn prelude_cc_rules() {
    let graph = load(&c_workspace(), &["//app"]);
    assert_eq!(
        labels(&graph),
        [
            "//app",
            "//app:app.main.c.o",
            "//base",
            "//base:base.base.c.o",
            "//lib:util",
            "//lib:util.a.c.o",
            "//lib:util.b.c.o",
            "//lib:util.sub+c.c.o",
            "//lib:version",
        ]
    );
    // Three compile jobs and one archive job for a library of three sources.
    let util = target(&graph, "//lib:util");
    assert_eq!(
        util.deps,
        [
            label("//lib:util.a.c.o"),
            label("//lib:util.b.c.o"),
            label("//lib:util.sub+c.c.o")
        ]
    );
    assert_eq!(
        argv(util, 0),
        [
            "ar",
            "rcs",
            "{{OUTPUT_DIR}}/libutil.a",
            "{{DEP://lib:util.a.c.o}}/a.o",
            "{{DEP://lib:util.b.c.o}}/b.o",
            "{{DEP://lib:util.sub+c.c.o}}/c.o",
        ]
    );
    assert_eq!(util.outs, ["libutil.a"]);
    assert_eq!(util.defined_at.to_string(), "lib/BUILD:6");

    let c = target(&graph, "//lib:util.sub+c.c.o");
    assert_eq!(
        c.srcs,
        ["base/base.h", "lib/private.h", "lib/sub/c.c", "lib/util.h"]
    );
    assert_eq!(c.deps, [label("//lib:version")]);
    assert_eq!(
        argv(c, 0),
        [
            "cc",
            "-c",
            "sub/c.c",
            "-o",
            "{{OUTPUT_DIR}}/c.o",
            "-I{{SOURCE_DIR}}/lib",
            "-I{{SOURCE_DIR}}",
            "-I{{SOURCE_DIR}}/base",
            "-I{{DEP://lib:version}}",
            "-O1",
        ]
    );
    match &c.cmds[0] {
        Cmd::Exec { cwd, .. } => assert_eq!(cwd.as_deref(), Some("{{SOURCE_DIR}}/lib")),
        other => panic!("{other:?}"),
    }

    // The binary's compile job sees the headers of its deps, transitively, and both include
    // forms; the generated header's job comes along.
    let main = target(&graph, "//app:app.main.c.o");
    assert_eq!(main.srcs, ["app/main.c", "base/base.h", "lib/util.h"]);
    assert_eq!(
        &argv(main, 0)[5..],
        [
            "-I{{SOURCE_DIR}}/app",
            "-I{{SOURCE_DIR}}",
            "-I{{SOURCE_DIR}}/lib",
            "-I{{SOURCE_DIR}}/base",
            "-I{{DEP://lib:version}}",
        ]
    );
    // The link job: objects, then archives with dependents before dependencies.
    let app = target(&graph, "//app");
    assert_eq!(
        app.deps,
        [
            label("//app:app.main.c.o"),
            label("//base"),
            label("//lib:util")
        ]
    );
    assert_eq!(
        argv(app, 0),
        [
            "cc",
            "-o",
            "{{OUTPUT_DIR}}/app",
            "{{DEP://app:app.main.c.o}}/main.o",
            "{{DEP://lib:util}}/libutil.a",
            "{{DEP://base}}/libbase.a",
            "-lm",
        ]
    );
    assert_eq!(app.outs, ["app"]);
    assert_eq!(
        graph
            .topological_order()
            .last()
            .map(|l| l.to_string())
            .as_deref(),
        Some("//app")
    );
}

/// Runs a graph's commands the way the executor will (minus the sandbox): sources read in
/// place from the workspace, one output directory per target.
fn run_graph(root: &Path, graph: &TargetGraph) -> Result<(), String> {
    let out_root = root.join("weft-out-test");
    for label in graph.topological_order() {
        let target = &graph.targets[label];
        let out = out_root.join(label.to_string().replace(['/', ':'], "_"));
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        let render = |text: &str| -> String {
            let template = weft_protocol::Template::parse(text).expect("valid template");
            template
                .render(
                    &out.display().to_string(),
                    &root.display().to_string(),
                    |dep| {
                        Some(
                            out_root
                                .join(dep.replace(['/', ':'], "_"))
                                .display()
                                .to_string(),
                        )
                    },
                )
                .expect("known deps")
        };
        for cmd in &target.cmds {
            match cmd {
                Cmd::Exec { argv, env, cwd } => {
                    let argv: Vec<String> = argv.iter().map(|a| render(a)).collect();
                    let status = std::process::Command::new(&argv[0])
                        .args(&argv[1..])
                        .envs(env.iter().map(|(k, v)| (k, render(v))))
                        .current_dir(render(cwd.as_deref().unwrap_or("{{SOURCE_DIR}}")))
                        .status()
                        .map_err(|e| format!("{label}: {e}"))?;
                    if !status.success() {
                        return Err(format!("{label}: `{}` failed", argv.join(" ")));
                    }
                }
                Cmd::Cat { output, template } => {
                    std::fs::write(render(output), render(template)).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let app = out_root.join("__app").join("app");
    let status = std::process::Command::new(&app)
        .status()
        .map_err(|e| format!("{}: {e}", app.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err("the built program returned an error".into())
    }
}

#[test]
fn prelude_output_compiles_and_links() {
    let has = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok()
    };
    if !has("cc") || !has("ar") {
        eprintln!("skipped: needs `cc` and `ar` on PATH");
        return;
    }
    let ws = TestWs::new(&c_workspace());
    let graph = ws.load(&mut Loader::new(), &["//app"]).expect("load");
    run_graph(ws.dir.path(), &graph).expect("build");
}

#[test]
fn target_patterns() {
    let files = [
        ("weft.toml", "[packages]\ncurl = \"third_party/curl\"\n"),
        ("BUILD", "job(name = 'root')\n"),
        ("a/BUILD", "job(name = 'a')\njob(name = 'x')\n"),
        ("a/b/BUILD", "job(name = 'b')\n"),
        ("a/b/c/BUILD", "job(name = 'c', deps = ['//z'])\n"),
        ("z/BUILD", "job(name = 'z')\n"),
        ("weft-out/BUILD", "job(name = 'never')\n"),
        (".hidden/BUILD", "job(name = 'never')\n"),
        ("third_party/curl/BUILD", "job(name = 'curl')\n"),
        ("third_party/curl/src/BUILD", "job(name = 'src')\n"),
        ("bad name/BUILD", "job(name = 'never')\n"),
    ];
    let ws = TestWs::new(&files);
    let mut loader = Loader::new();
    // (patterns, requested, every target of the graph)
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &[],
            &["//:root", "//a", "//a:x", "//a/b", "//a/b/c", "//z"],
            &["//:root", "//a", "//a:x", "//a/b", "//a/b/c", "//z"],
        ),
        (
            &["//..."],
            &["//:root", "//a", "//a:x", "//a/b", "//a/b/c", "//z"],
            &["//:root", "//a", "//a:x", "//a/b", "//a/b/c", "//z"],
        ),
        (
            &["//a/b/..."],
            &["//a/b", "//a/b/c"],
            &["//a/b", "//a/b/c", "//z"],
        ),
        (
            &["a/b/..."],
            &["//a/b", "//a/b/c"],
            &["//a/b", "//a/b/c", "//z"],
        ),
        (&["//a:all"], &["//a", "//a:x"], &["//a", "//a:x"]),
        (&["a:all"], &["//a", "//a:x"], &["//a", "//a:x"]),
        (&["//a:x"], &["//a:x"], &["//a:x"]),
        (&["//a"], &["//a"], &["//a"]),
        (&["a:x", "//a:x"], &["//a:x"], &["//a:x"]),
        (&[":root"], &["//:root"], &["//:root"]),
        (
            &["@curl//..."],
            &["@curl//:curl", "@curl//src"],
            &["@curl//:curl", "@curl//src"],
        ),
        (&["@curl//src:all"], &["@curl//src"], &["@curl//src"]),
    ];
    for (patterns, requested, all) in cases {
        let graph = ws
            .load(&mut loader, patterns)
            .unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        let got: Vec<String> = graph.requested.iter().map(ToString::to_string).collect();
        assert_eq!(got, *requested, "{patterns:?}");
        assert_eq!(labels(&graph), *all, "{patterns:?}");
    }
    let queried = loader
        .query_targets(&ws.ws, &["//a/...".to_owned()], &LoadCancel::new())
        .expect("query");
    assert_eq!(
        queried.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["//a", "//a:x", "//a/b", "//a/b/c"]
    );
    let deps = loader
        .query_deps(&ws.ws, "//a/b/c", &LoadCancel::new())
        .expect("deps");
    assert_eq!(deps, [label("//z")]);
}

#[test]
fn network_is_a_job_attribute_that_defaults_to_false() {
    let graph = load(
        &[(
            "BUILD",
            "job(name = 'fetch', network = True, cmds = [exec(['curl', 'x'])])\n\
             job(name = 'offline', cmds = [exec(['cc', 'x'])])\n",
        )],
        &[],
    );
    assert!(target(&graph, "//:fetch").network);
    assert!(!target(&graph, "//:offline").network);
    let err = fail(&[("BUILD", "job(name = 'x', network = 'yes')\n")], &[]);
    assert!(
        matches!(*err.kind, FrontendErrorKind::Starlark { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("network"), "{err}");
}

#[test]
fn dep_templates_are_rewritten() {
    let graph = load(
        &[
            (
                "lib/BUILD",
                "job(name = 'lib', outs = ['x'])\njob(name = 'other')\n",
            ),
            (
                "app/BUILD",
                "job(\n\
                 name = 'app',\n\
                 deps = [':gen', '//lib', 'helper', '//lib:other'],\n\
                 env = {'GEN': '{{DEP::gen}}/g'},\n\
                 cmds = [\n\
                   exec(['cp', '{{DEP://lib:lib}}/x', '{{DEP::gen}}/g', '{{DEP:helper}}', '{{OUTPUT_DIR}}'],\n\
                        env = {'L': '{{DEP://lib:other}}'}, cwd = '{{DEP::gen}}'),\n\
                   cat('{{OUTPUT_DIR}}/t', 'from {{DEP::helper}} {{SOURCE_DIR}}'),\n\
                 ],\n\
                 )\n\
                 job(name = 'gen')\n\
                 job(name = 'helper')\n",
            ),
        ],
        &["//app"],
    );
    let app = target(&graph, "//app");
    assert_eq!(
        app.cmds,
        [
            Cmd::Exec {
                argv: vec![
                    "cp".into(),
                    "{{DEP://lib}}/x".into(),
                    "{{DEP://app:gen}}/g".into(),
                    "{{DEP://app:helper}}".into(),
                    "{{OUTPUT_DIR}}".into(),
                ],
                env: BTreeMap::from([("L".into(), "{{DEP://lib:other}}".into())]),
                cwd: Some("{{DEP://app:gen}}".into()),
            },
            Cmd::Cat {
                output: "{{OUTPUT_DIR}}/t".into(),
                template: "from {{DEP://app:helper}} {{SOURCE_DIR}}".into(),
            },
        ]
    );
    assert_eq!(
        app.env,
        BTreeMap::from([("GEN".into(), "{{DEP://app:gen}}/g".into())])
    );
    assert_eq!(
        app.deps,
        [
            label("//app:gen"),
            label("//app:helper"),
            label("//lib"),
            label("//lib:other")
        ]
    );
    // The root package's default cwd is the source root itself.
    let graph = load(
        &[("BUILD", "job(name = 'r', cmds = [exec(['true'])])\n")],
        &[],
    );
    match &target(&graph, "//:r").cmds[0] {
        Cmd::Exec { cwd, .. } => assert_eq!(cwd.as_deref(), Some("{{SOURCE_DIR}}")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sources_and_file_labels() {
    let graph = load(
        &[
            ("weft.toml", "[packages]\nz = \"third_party/zlib\"\n"),
            ("third_party/zlib/include/zlib.h", ""),
            ("third_party/zlib/BUILD", ""),
            ("inc/x.h", ""),
            ("app/a.c", ""),
            ("app/sub/b.c", ""),
            (
                "app/BUILD",
                "job(name = 'app', srcs = ['sub/b.c', 'a.c', ':a.c', '//inc:x.h', \
                 '@z//:include/zlib.h', 'a.c'])\n",
            ),
        ],
        &["//app"],
    );
    assert_eq!(
        target(&graph, "//app").srcs,
        [
            "app/a.c",
            "app/sub/b.c",
            "inc/x.h",
            "third_party/zlib/include/zlib.h"
        ]
    );
}

/// Every error kind: its message (with `file:line`, the label and a suggestion where there
/// is one) and its kind.
#[test]
fn error_messages() {
    type Check = fn(&FrontendErrorKind) -> bool;
    /// (name, files, patterns, parts of the message, kind)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
        &'a [&'a str],
        Check,
    );
    let cases: &[Case<'_>] = &[
        (
            "unknown target with suggestion",
            &[("lib/BUILD", "job(name = 'util')\n")],
            &["//lib:utl"],
            &["unknown target `//lib:utl`", "did you mean `//lib:util`?"],
            |k| matches!(k, FrontendErrorKind::UnknownTarget { .. }),
        ),
        (
            "unknown package",
            &[("weft.toml", "[packages]\ncurl = \"c\"\n"), ("c/BUILD", "")],
            &["@zlib//:z"],
            &["unknown package `@zlib`", "`@curl`", "under `[packages]`"],
            |k| matches!(k, FrontendErrorKind::UnknownPackage { .. }),
        ),
        (
            "unknown package in a dep",
            &[("a/BUILD", "\njob(name = 'a', deps = ['@nope//x'])\n")],
            &["//a"],
            &["a/BUILD:2: unknown package `@nope`"],
            |k| matches!(k, FrontendErrorKind::UnknownPackage { .. }),
        ),
        (
            "no BUILD file",
            &[("a/x.c", "")],
            &["//a:x"],
            &["no BUILD file in `a` (for `//a`); create `a/BUILD`"],
            |k| matches!(k, FrontendErrorKind::NoBuildFile { .. }),
        ),
        (
            "missing source file",
            &[(
                "a/BUILD",
                "job(name = 'ok')\n\njob(name = 'a', srcs = ['gone.c'])\n",
            )],
            &["//a:all"],
            &["a/BUILD:3: target `//a`: source file `a/gone.c` does not exist"],
            |k| matches!(k, FrontendErrorKind::MissingSource { .. }),
        ),
        (
            "source that is a directory",
            &[
                ("a/BUILD", "job(name = 'a', srcs = ['d'])\n"),
                ("a/d/x", ""),
            ],
            &["//a"],
            &["a/BUILD:1: target `//a`: source `a/d` is not a regular file"],
            |k| matches!(k, FrontendErrorKind::MissingSource { .. }),
        ),
        (
            "dependency cycle",
            &[
                ("a/BUILD", "job(name = 'a', deps = ['//b'])\n"),
                ("b/BUILD", "job(name = 'b', deps = ['//c'])\n"),
                ("c/BUILD", "job(name = 'c', deps = ['//a'])\n"),
            ],
            &["//a"],
            &[
                "dependency cycle: `//a -> //b -> //c -> //a`",
                "a/BUILD:1: ",
            ],
            |k| matches!(k, FrontendErrorKind::DependencyCycle { .. }),
        ),
        (
            "self dependency",
            &[("a/BUILD", "job(name = 'a', deps = [':a'])\n")],
            &["//a"],
            &["a/BUILD:1: dependency cycle: `//a -> //a`"],
            |k| matches!(k, FrontendErrorKind::DependencyCycle { .. }),
        ),
        (
            "duplicate target",
            &[("a/BUILD", "job(name = 'x')\n\n\njob(name = 'x')\n")],
            &["//a:all"],
            &["a/BUILD:4: target `//a:x` is defined twice: here and at `a/BUILD:1`"],
            |k| matches!(k, FrontendErrorKind::DuplicateTarget { .. }),
        ),
        (
            "duplicate target through a macro",
            &[(
                "a/BUILD",
                "cc_library(name = 'x', srcs = ['x.c'])\njob(name = 'x.x.c.o')\n",
            )],
            &["//a:all"],
            &["a/BUILD:2: target `//a:x.x.c.o` is defined twice: here and at `a/BUILD:1`"],
            |k| matches!(k, FrontendErrorKind::DuplicateTarget { .. }),
        ),
        (
            "out that escapes",
            &[("a/BUILD", "job(\n  name = 'a',\n  outs = ['../x'],\n)\n")],
            &["//a"],
            &["a/BUILD:1: target `//a`: an out that escapes the output directory: `../x`"],
            |k| matches!(k, FrontendErrorKind::OutEscapes { .. }),
        ),
        (
            "absolute out",
            &[("a/BUILD", "job(name = 'a', outs = ['/etc/x'])\n")],
            &["//a"],
            &[
                "an out that escapes the output directory: `/etc/x`",
                "absolute",
            ],
            |k| matches!(k, FrontendErrorKind::OutEscapes { .. }),
        ),
        (
            "syntax error",
            &[("a/BUILD", "job(name = 'a'\njob(name = 'b')\n")],
            &["//a"],
            &["a/BUILD:2: `a/BUILD` failed to evaluate", "--> a/BUILD:2:1"],
            |k| matches!(k, FrontendErrorKind::Starlark { .. }),
        ),
        (
            "type error",
            &[("a/BUILD", "\njob(name = 'a', srcs = 'x.c')\n")],
            &["//a"],
            &["a/BUILD:2:", "`srcs`", "--> a/BUILD:2:1"],
            |k| matches!(k, FrontendErrorKind::Starlark { .. }),
        ),
        (
            "fail()",
            &[("a/BUILD", "fail('no good')\n")],
            &["//a:all"],
            &["a/BUILD:1:", "no good"],
            |k| matches!(k, FrontendErrorKind::Starlark { .. }),
        ),
        (
            "dep on a missing target, with suggestion",
            &[
                ("a/BUILD", "job(name = 'a', deps = ['//b:lbi'])\n"),
                ("b/BUILD", "job(name = 'lib')\n"),
            ],
            &["//a"],
            &[
                "a/BUILD:1: target `//a` depends on `//b:lbi`, which does not exist; did you \
                 mean `//b:lib`?",
            ],
            |k| matches!(k, FrontendErrorKind::MissingDep { .. }),
        ),
        (
            "dep on a missing target in the same package",
            &[(
                "a/BUILD",
                "job(name = 'a', deps = [':helpr'])\njob(name = 'helper')\n",
            )],
            &["//a"],
            &["depends on `//a:helpr`, which does not exist; did you mean `:helper`?"],
            |k| matches!(k, FrontendErrorKind::MissingDep { .. }),
        ),
        (
            "dep on a missing package",
            &[("a/BUILD", "job(name = 'a', deps = ['//nowhere'])\n")],
            &["//a"],
            &["a/BUILD:1: target `//a` depends on `//nowhere`, which does not exist"],
            |k| matches!(k, FrontendErrorKind::MissingDep { .. }),
        ),
        (
            "{{DEP:x}} not in deps",
            &[(
                "a/BUILD",
                "job(name = 'a', cmds = [exec(['cp', '{{DEP::b}}/x', '{{OUTPUT_DIR}}'])])\n\
                 job(name = 'b')\n",
            )],
            &["//a"],
            &[
                "a/BUILD:1: target `//a`: `{{DEP::b}}` in `cmds[0].argv[1]` names `//a:b`, \
                 which is not in `deps`; add it to `deps`",
            ],
            |k| matches!(k, FrontendErrorKind::UndeclaredDepRef { .. }),
        ),
        (
            "bad template",
            &[(
                "a/BUILD",
                "job(name = 'a', cmds = [cat('{{OUT}}/x', '')])\n",
            )],
            &["//a"],
            &["a/BUILD:1: target `//a`: `cmds[0].output`: bad template `{{OUT}}/x`"],
            |k| matches!(k, FrontendErrorKind::BadTemplate { .. }),
        ),
        (
            "missing .star file",
            &[("a/BUILD", "\nload('//defs:gone.star', 'x')\n")],
            &["//a:all"],
            &["a/BUILD:2: cannot load `//defs:gone.star`: `defs/gone.star` does not exist"],
            |k| matches!(k, FrontendErrorKind::MissingLoad { .. }),
        ),
        (
            "missing symbol",
            &[
                ("a/BUILD", "load('//:defs.star', 'hepler')\n"),
                ("defs.star", "def helper():\n    pass\n"),
            ],
            &["//a:all"],
            &[
                "a/BUILD:1: `//:defs.star` defines no public symbol `hepler`; did you mean \
                 `helper`?",
            ],
            |k| matches!(k, FrontendErrorKind::MissingSymbol { .. }),
        ),
        (
            "private symbol",
            &[
                ("a/BUILD", "load('//:defs.star', '_x')\n"),
                ("defs.star", "_x = 1\n"),
            ],
            &["//a:all"],
            &["`//:defs.star` defines no public symbol `_x`"],
            |k| matches!(k, FrontendErrorKind::MissingSymbol { .. }),
        ),
        (
            "load cycle",
            &[
                ("a/BUILD", "load('//:x.star', 'x')\n"),
                ("x.star", "load(':y.star', 'y')\nx = 1\n"),
                ("y.star", "load('//:x.star', 'x')\ny = 1\n"),
            ],
            &["//a:all"],
            &["load cycle: `//:x.star` -> `//:y.star` -> `//:x.star`"],
            |k| matches!(k, FrontendErrorKind::LoadCycle { .. }),
        ),
        (
            "target_info of a target defined later",
            &[(
                "a/BUILD",
                "job(name = 'helper')\nx = target_info(':lib')\njob(name = 'lib')\n",
            )],
            &["//a:all"],
            &[
                "a/BUILD:2: `target_info(\"//a:lib\")`: no target `lib` is defined above this \
                 line",
                "define it above this call",
            ],
            |k| matches!(k, FrontendErrorKind::NotYetDefined { .. }),
        ),
        (
            "target_info of an unknown target elsewhere",
            &[
                ("a/BUILD", "x = target_info('//b:lbi')\n"),
                ("b/BUILD", "job(name = 'lib')\n"),
            ],
            &["//a:all"],
            &[
                "a/BUILD:1: unknown target `//b:lbi`",
                "did you mean `//b:lib`?",
            ],
            |k| matches!(k, FrontendErrorKind::UnknownTarget { .. }),
        ),
        (
            "target_info cycle",
            &[
                ("a/BUILD", "x = target_info('//b:b')\njob(name = 'a')\n"),
                ("b/BUILD", "\ny = target_info('//a:a')\njob(name = 'b')\n"),
            ],
            &["//a:all"],
            &["b/BUILD:2: `target_info` cycle between BUILD files: `//a -> //b -> //a`"],
            |k| matches!(k, FrontendErrorKind::InfoCycle { .. }),
        ),
        (
            "job at the top level of a .star file",
            &[
                ("a/BUILD", "load('//:d.star', 'x')\n"),
                ("d.star", "x = 1\njob(name = 'nope')\n"),
            ],
            &["//a:all"],
            &["`job()` can only be called while a BUILD file is evaluated"],
            |k| matches!(k, FrontendErrorKind::NotInBuildFile { .. }),
        ),
        (
            "bad target name",
            &[("a/BUILD", "job(name = 'a/b')\n")],
            &["//a:all"],
            &["a/BUILD:1: `job()`: `name`: `a/b` `/` cannot appear in a target name"],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "source outside the package",
            &[("a/BUILD", "job(name = 'a', srcs = ['../x.c'])\n")],
            &["//a"],
            &[
                "a/BUILD:1: target `//a`: `job()`: `srcs[0]`",
                "`//dir:file.c`",
            ],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "bad glob",
            &[("a/BUILD", "job(name = 'a', srcs = glob(['../*.c']))\n")],
            &["//a"],
            &["a/BUILD:1: `glob()`: glob pattern `../*.c`"],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "not a command",
            &[("a/BUILD", "job(name = 'a', cmds = [['cc']])\n")],
            &["//a"],
            &["`cmds[0]`: expected a command made by `exec()` or `cat()`, not `list`"],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "empty exec",
            &[("a/BUILD", "job(name = 'a', cmds = [exec([])])\n")],
            &["//a"],
            &["a/BUILD:1: `exec()`: `argv` needs at least the program to run"],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "bad info value",
            &[("a/BUILD", "job(name = 'a', info = {'n': 3})\n")],
            &["//a"],
            &["`info[\"n\"]` must be a string or a list of strings, not `int`"],
            |k| matches!(k, FrontendErrorKind::BadArgument { .. }),
        ),
        (
            "bad pattern",
            &[("a/BUILD", "")],
            &["//a:b c"],
            &["invalid target pattern `//a:b c`"],
            |k| matches!(k, FrontendErrorKind::BadPattern { .. }),
        ),
        (
            "recursive pattern on a missing directory",
            &[("a/BUILD", "")],
            &["//nope/..."],
            &["invalid target pattern `//nope/...`: `nope` is not a directory"],
            |k| matches!(k, FrontendErrorKind::BadPattern { .. }),
        ),
        (
            "path inside an external package",
            &[
                ("weft.toml", "[packages]\ncurl = \"tp/curl\"\n"),
                ("tp/curl/src/BUILD", ""),
            ],
            &["//tp/curl/src:x"],
            &["`//tp/curl/src` lies inside the directory of package `@curl`; name it `@curl//src`"],
            |k| matches!(k, FrontendErrorKind::InsideExternalPackage { .. }),
        ),
        (
            "bad weft.toml",
            &[("weft.toml", "[packages]\nx = 3\n")],
            &[],
            &["invalid `", "package `x` must map to a directory"],
            |k| matches!(k, FrontendErrorKind::BadConfig { .. }),
        ),
    ];
    for (name, files, patterns, expected, check) in cases {
        let error = fail(files, patterns);
        let message = error.to_string();
        for part in *expected {
            assert!(
                message.contains(part),
                "{name}: `{part}` is not in the message:\n{message}"
            );
        }
        assert!(check(&error.kind), "{name}: wrong kind {:?}", error.kind);
        assert!(
            !message.ends_with('.'),
            "{name}: trailing period: {message}"
        );
    }
}

#[test]
fn no_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Workspace::find(dir.path()).expect_err("no weft.toml");
    let message = err.to_string();
    assert!(message.starts_with("no `weft.toml` in `"), "{message}");
    assert!(message.contains("or any directory above it"), "{message}");
    assert!(
        message.contains("create one at the root of your workspace"),
        "{message}"
    );
}

#[test]
fn workspace_find_and_dirs() {
    let ws = TestWs::new(&[
        ("weft.toml", "[packages]\ncurl = \"third_party/curl\"\n"),
        ("deep/er/x", ""),
    ]);
    let found = Workspace::find(&ws.dir.path().join("deep/er")).expect("found");
    assert_eq!(found, ws.ws);
    let dir = |p: Option<&str>, path: &str| weft_protocol::PackagePath::new(p, path).expect("ok");
    assert_eq!(ws.ws.dir_of(&dir(None, "a/b")).expect("dir"), "a/b");
    assert_eq!(
        ws.ws.dir_of(&dir(Some("curl"), "")).expect("dir"),
        "third_party/curl"
    );
    assert_eq!(
        ws.ws.dir_of(&dir(Some("curl"), "lib")).expect("dir"),
        "third_party/curl/lib"
    );
    let err = ws.ws.dir_of(&dir(Some("crul"), "")).expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown package `@crul`; `weft.toml` defines `@curl`; add `crul = \"path/to/dir\"` \
         under `[packages]` or use one of those"
    );
}

#[test]
fn warm_cache_skips_unchanged_packages() {
    let ws = TestWs::new(&[
        ("defs.star", "load(':more.star', 'X')\nFLAG = X\n"),
        ("more.star", "X = '-O1'\n"),
        (
            "a/BUILD",
            "load('//:defs.star', 'FLAG')\njob(name = 'a', info = {'f': FLAG})\n",
        ),
        ("a/x.c", ""),
        (
            "b/BUILD",
            "job(name = 'b', srcs = glob(['*.c']), info = {'f': target_info('//a')['f']})\n",
        ),
        ("b/y.c", ""),
        ("c/BUILD", "job(name = 'c')\n"),
    ]);
    let mut loader = Loader::new();
    let first = ws.load(&mut loader, &[]).expect("first");
    let cold = loader.stats();
    assert_eq!(cold.n_build_evals, 3);
    assert_eq!(cold.n_star_evals, 2);
    assert_eq!(cold.n_package_hits, 0);

    // Nothing changed: nothing is evaluated or parsed again.
    let second = ws.load(&mut loader, &[]).expect("second");
    assert_eq!(first, second);
    let warm = loader.stats();
    assert_eq!(warm.n_build_evals, cold.n_build_evals);
    assert_eq!(warm.n_star_evals, cold.n_star_evals);
    assert_eq!(warm.n_parses, cold.n_parses);
    assert_eq!(warm.n_package_hits, 3);

    // A file a glob sees appears: only `//b` is evaluated again.
    ws.write("b/z.c", "");
    let graph = ws.load(&mut loader, &[]).expect("after glob change");
    assert_eq!(target(&graph, "//b").srcs, ["b/y.c", "b/z.c"]);
    let stats = loader.stats();
    assert_eq!(stats.n_build_evals, cold.n_build_evals + 1);
    assert_eq!(stats.n_star_evals, cold.n_star_evals);

    // A `.star` file two loads down changes: `//a` is evaluated again, and `//b`, which read
    // `//a`'s info, too; `//c` is not.
    ws.write("more.star", "X = '-O2'\n");
    let before = loader.stats();
    let graph = ws.load(&mut loader, &[]).expect("after star change");
    assert_eq!(
        target(&graph, "//b").info.get("f"),
        Some(&InfoValue::Str("-O2".into()))
    );
    let stats = loader.stats();
    assert_eq!(stats.n_build_evals, before.n_build_evals + 2);
    assert_eq!(stats.n_star_evals, before.n_star_evals + 2);

    // A change of a BUILD file that changes nothing others read: only that one.
    ws.write(
        "a/BUILD",
        "load('//:defs.star', 'FLAG')\njob(name = 'a', info = {'f': FLAG})\n\n",
    );
    let before = loader.stats();
    ws.load(&mut loader, &[]).expect("after whitespace change");
    assert_eq!(loader.stats().n_build_evals, before.n_build_evals + 1);

    // An error is reported, and fixing it recovers.
    ws.write("c/BUILD", "job(name = 'c'\n");
    assert!(ws.load(&mut loader, &[]).is_err());
    ws.write("c/BUILD", "job(name = 'c')\n");
    let fresh = ws.load(&mut Loader::new(), &[]).expect("fresh");
    assert_eq!(ws.load(&mut loader, &[]).expect("fixed"), fresh);
}

#[test]
fn kept_directory_listings_see_new_and_removed_entries() {
    let ws = TestWs::new(&[
        ("a/BUILD", "job(name = 'a', srcs = glob(['*.c']))\n"),
        ("a/x.c", ""),
        ("b/BUILD", "job(name = 'b')\n"),
    ]);
    // Listings of directories changed in the last two seconds are not kept; wait until
    // these are old enough to be.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut loader = Loader::new();
    let first = ws.load(&mut loader, &[]).expect("first");
    assert_eq!(labels(&first), ["//a", "//b"]);
    assert_eq!(ws.load(&mut loader, &[]).expect("warm"), first);

    // A new package, a new file a glob sees, and a package that goes.
    ws.write("c/d/BUILD", "job(name = 'd')\n");
    ws.write("a/y.c", "");
    std::fs::remove_dir_all(ws.dir.path().join("b")).expect("remove b");
    let graph = ws.load(&mut loader, &[]).expect("after changes");
    assert_eq!(labels(&graph), ["//a", "//c/d"]);
    assert_eq!(target(&graph, "//a").srcs, ["a/x.c", "a/y.c"]);
    assert_eq!(graph, ws.load(&mut Loader::new(), &[]).expect("fresh"));
}

#[test]
fn loader_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Loader>();
    is_send::<FrontendError>();
    is_send::<TargetGraph>();
}

/// 10,000 targets, in one BUILD file and in 100: loads stay linear. Prints the times (run with
/// `--release --nocapture` to see them).
#[test]
fn ten_thousand_targets() {
    let one_file = "for i in range(10000):\n    \
                    job(name = 't%d' % i, srcs = ['in.txt'], deps = [':t%d' % (i - 1)] if i else [], \
                    outs = ['o'], cmds = [cat('{{OUTPUT_DIR}}/o', 'x')])\n";
    let mut files = vec![("big/BUILD".to_owned(), one_file.to_owned())];
    files.push(("big/in.txt".to_owned(), String::new()));
    for p in 0..100 {
        let dep = if p == 0 {
            String::new()
        } else {
            format!("'//p{}:t99'", p - 1)
        };
        files.push((
            format!("p{p}/BUILD"),
            format!(
                "for i in range(100):\n    \
                 job(name = 't%d' % i, srcs = ['in.txt'], deps = [':t%d' % (i - 1)] if i else [{dep}], \
                 cmds = [exec(['cp', 'in.txt', '{{{{OUTPUT_DIR}}}}'])])\n"
            ),
        ));
        files.push((format!("p{p}/in.txt"), String::new()));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let ws = TestWs::new(&files);
    for (pattern, n_targets, n_files) in [("//big:t9999", 10_000, 1), ("//p99:t99", 10_000, 100)] {
        let mut loader = Loader::new();
        let start = std::time::Instant::now();
        let graph = ws.load(&mut loader, &[pattern]).expect("load");
        let cold = start.elapsed();
        assert_eq!(graph.targets.len(), n_targets);
        assert_eq!(graph.topological_order().len(), n_targets);
        let start = std::time::Instant::now();
        ws.load(&mut loader, &[pattern]).expect("warm load");
        let warm = start.elapsed();
        eprintln!("10k targets in {n_files} BUILD files: cold {cold:?}, warm {warm:?}");
        assert_eq!(loader.stats().n_build_evals, n_files);
    }
}

/// Each `target_info` of an unevaluated package evaluates it then and there, nesting
/// evaluations. 150 levels overflowed a test thread's stack before loads got their own big
/// one; past `MAX_NESTING` the load fails with an error instead.
#[test]
fn deep_target_info_chains_do_not_overflow() {
    let n = 150;
    let mut files: Vec<(String, String)> = (0..n)
        .map(|i| {
            let body = if i + 1 < n {
                format!("cc_library(name = 't', deps = ['//p{}:t'])\n", i + 1)
            } else {
                "cc_library(name = 't', hdrs = ['t.h'])\n".to_owned()
            };
            (format!("p{i}/BUILD"), body)
        })
        .collect();
    files.push((format!("p{}/t.h", n - 1), String::new()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let graph = load(&files, &["//p0:t"]);
    let libs = info_list(target(&graph, "//p0:t"), "cc_libs");
    assert_eq!(libs.len(), n);
    assert_eq!(libs.last().map(String::as_str), Some("//p149:t"));
    assert_eq!(weft_node::frontend::MAX_NESTING, 1000);
}
