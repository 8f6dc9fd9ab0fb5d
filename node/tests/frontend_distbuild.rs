//! The distbuild JSON graph format (seed 003): parsing, ordering and every error.

#![cfg(feature = "shell")]

use std::collections::BTreeMap;

use weft_node::frontend::{DistbuildErrorKind, parse_distbuild};
use weft_protocol::Cmd;

#[test]
fn parses_a_graph_in_dependency_order() {
    let json = r##"{"Jobs": [
        {"ID": "link", "Name": "link main", "Deps": ["compile", "gen"], "Cmds": [
            {"Exec": ["cc", "-o", "{{OUTPUT_DIR}}/main", "{{DEP:compile}}/main.o"],
             "Environ": ["LANG=C", "A=1", "A=2", "EMPTY="],
             "WorkingDirectory": "{{SOURCE_DIR}}"}]},
        {"ID": "compile", "Inputs": ["src/main.c", "src/a.h", "src/a.h"], "Deps": ["gen"],
         "Cmds": [{"Exec": ["cc", "-c", "src/main.c", "-I{{DEP:gen}}", "-o", "{{OUTPUT_DIR}}/main.o"],
                   "Environ": null, "WorkingDirectory": ""}]},
        {"ID": "gen", "Cmds": [
            {"CatOutput": "{{OUTPUT_DIR}}/v.h", "CatTemplate": "#define V 1\n"}]},
        {"ID": "f374b81d81f641c8c3d5d5468081ef83b2c7dae9", "Name": "", "Inputs": null,
         "Deps": null, "Cmds": null},
        {"ID": "empty-cat", "Cmds": [{"CatOutput": "{{OUTPUT_DIR}}/empty"}]}
    ]}"##;
    let graph = parse_distbuild(json).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = graph.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "gen",
            "compile",
            "link",
            "f374b81d81f641c8c3d5d5468081ef83b2c7dae9",
            "empty-cat"
        ]
    );
    let link = &graph.jobs[2];
    assert_eq!(link.name, "link main");
    assert_eq!(link.deps, ["compile", "gen"]);
    assert_eq!(
        link.cmds,
        [Cmd::Exec {
            argv: vec![
                "cc".into(),
                "-o".into(),
                "{{OUTPUT_DIR}}/main".into(),
                "{{DEP:compile}}/main.o".into()
            ],
            env: BTreeMap::from([
                ("A".into(), "2".into()),
                ("EMPTY".into(), String::new()),
                ("LANG".into(), "C".into()),
            ]),
            cwd: Some("{{SOURCE_DIR}}".into()),
        }]
    );
    let compile = &graph.jobs[1];
    assert_eq!(compile.inputs, ["src/a.h", "src/main.c"]);
    match &compile.cmds[0] {
        Cmd::Exec { cwd, env, .. } => {
            assert_eq!(*cwd, None);
            assert!(env.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        graph.jobs[0].cmds,
        [Cmd::Cat {
            output: "{{OUTPUT_DIR}}/v.h".into(),
            template: "#define V 1\n".into(),
        }]
    );
    assert!(graph.jobs[3].cmds.is_empty() && graph.jobs[3].inputs.is_empty());
    assert_eq!(
        graph.jobs[4].cmds,
        [Cmd::Cat {
            output: "{{OUTPUT_DIR}}/empty".into(),
            template: String::new(),
        }]
    );
    assert!(parse_distbuild("{}").expect("empty").jobs.is_empty());
    assert!(
        parse_distbuild(r#"{"Jobs": null}"#)
            .expect("null")
            .jobs
            .is_empty()
    );
}

#[test]
fn every_error_names_the_job_and_field() {
    type Check = fn(&DistbuildErrorKind) -> bool;
    let cases: &[(&str, &str, &str, Check)] = &[
        (
            "malformed JSON",
            "{\"Jobs\": [\n  {\"ID\": \"a\",}\n]}",
            "malformed graph at line 2, column 14",
            |k| matches!(k, DistbuildErrorKind::Json { line: 2, .. }),
        ),
        (
            "wrong type",
            r#"{"Jobs": [{"ID": 3}]}"#,
            "malformed graph at line 1, column 18: invalid type: integer `3`",
            |k| matches!(k, DistbuildErrorKind::Json { .. }),
        ),
        (
            "misspelt field",
            r#"{"Jobs": [{"ID": "a", "Dep": []}]}"#,
            "unknown field `Dep`",
            |k| matches!(k, DistbuildErrorKind::Json { .. }),
        ),
        (
            "missing ID",
            r#"{"Jobs": [{"Name": "x"}]}"#,
            "job `#0`, field `ID`: every job needs a non-empty `ID`",
            |k| matches!(k, DistbuildErrorKind::BadId(_)),
        ),
        (
            "ID that escapes the output directory",
            r#"{"Jobs": [{"ID": "../x"}]}"#,
            "job `../x`, field `ID`: ID `../x` cannot name an output directory",
            |k| matches!(k, DistbuildErrorKind::BadId(_)),
        ),
        (
            "ID with braces",
            r#"{"Jobs": [{"ID": "a}}b"}]}"#,
            "job `a}}b`, field `ID`: ID `a}}b` cannot hold",
            |k| matches!(k, DistbuildErrorKind::BadId(_)),
        ),
        (
            "duplicate ID",
            r#"{"Jobs": [{"ID": "a"}, {"ID": "b"}, {"ID": "a"}]}"#,
            "job `a`, field `ID`: this ID is already used by job #0",
            |k| matches!(k, DistbuildErrorKind::DuplicateId { first: 0 }),
        ),
        (
            "unknown dep",
            r#"{"Jobs": [{"ID": "compile"}, {"ID": "link", "Deps": ["compile", "compil"]}]}"#,
            "job `link`, field `Deps[1]`: unknown dep `compil`: no job has this ID; did you mean \
             `compile`?",
            |k| matches!(k, DistbuildErrorKind::UnknownDep { .. }),
        ),
        (
            "duplicate dep",
            r#"{"Jobs": [{"ID": "a"}, {"ID": "b", "Deps": ["a", "a"]}]}"#,
            "job `b`, field `Deps[1]`: dep `a` is listed twice",
            |k| matches!(k, DistbuildErrorKind::DuplicateDep(_)),
        ),
        (
            "cycle",
            r#"{"Jobs": [{"ID": "ok"}, {"ID": "a", "Deps": ["c"]}, {"ID": "b", "Deps": ["a", "ok"]},
                {"ID": "c", "Deps": ["b"]}]}"#,
            "field `Deps`: dependency cycle: `a -> c -> b -> a`",
            |k| matches!(k, DistbuildErrorKind::Cycle(_)),
        ),
        (
            "self cycle",
            r#"{"Jobs": [{"ID": "a", "Deps": ["a"]}]}"#,
            "job `a`, field `Deps`: dependency cycle: `a -> a`",
            |k| matches!(k, DistbuildErrorKind::Cycle(_)),
        ),
        (
            "both kinds",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": ["x"], "CatOutput": "y"}]}]}"#,
            "job `a`, field `Cmds[0]`: a Cmd sets both `Exec` and `CatOutput`",
            |k| matches!(k, DistbuildErrorKind::BothKinds),
        ),
        (
            "neither kind",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": [], "CatTemplate": "t"}]}]}"#,
            "job `a`, field `Cmds[0]`: a Cmd sets neither `Exec` nor `CatOutput`",
            |k| matches!(k, DistbuildErrorKind::NeitherKind),
        ),
        (
            "exec field on a cat",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"CatOutput": "o", "WorkingDirectory": "w"}]}]}"#,
            "job `a`, field `Cmds[0].WorkingDirectory`: `Environ` and `WorkingDirectory` apply \
             to exec Cmds only",
            |k| matches!(k, DistbuildErrorKind::ExecFieldOnCat),
        ),
        (
            "cat field on an exec",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": ["x"], "CatTemplate": "t"}]}]}"#,
            "job `a`, field `Cmds[0].CatTemplate`: `CatTemplate` applies to cat Cmds only",
            |k| matches!(k, DistbuildErrorKind::CatFieldOnExec),
        ),
        (
            "bad environ",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": ["x"], "Environ": ["A=1", "B"]}]}]}"#,
            "job `a`, field `Cmds[0].Environ[1]`: `B` is not `KEY=VALUE`",
            |k| matches!(k, DistbuildErrorKind::BadEnviron(_)),
        ),
        (
            "bad input path",
            r#"{"Jobs": [{"ID": "a", "Inputs": ["ok.c", "../etc/passwd"]}]}"#,
            "job `a`, field `Inputs[1]`: input `../etc/passwd`: `.` and `..` segments are not \
             allowed",
            |k| matches!(k, DistbuildErrorKind::BadInput { .. }),
        ),
        (
            "absolute input path",
            r#"{"Jobs": [{"ID": "a", "Inputs": ["/etc/passwd"]}]}"#,
            "job `a`, field `Inputs[0]`: input `/etc/passwd`: it is absolute",
            |k| matches!(k, DistbuildErrorKind::BadInput { .. }),
        ),
        (
            "DEP not in Deps",
            r#"{"Jobs": [{"ID": "a"}, {"ID": "b", "Cmds": [{"Exec": ["cp", "{{DEP:a}}/x", "."]}]}]}"#,
            "job `b`, field `Cmds[0].Exec[1]`: `{{DEP:a}}` names a job that is not in `Deps`; \
             add `a` to `Deps`",
            |k| matches!(k, DistbuildErrorKind::UndeclaredDep(_)),
        ),
        (
            "DEP not in Deps, in a cat template",
            r#"{"Jobs": [{"ID": "b", "Cmds": [{"CatOutput": "o", "CatTemplate": "{{DEP:zz}}"}]}]}"#,
            "job `b`, field `Cmds[0].CatTemplate`: `{{DEP:zz}}` names a job that is not in `Deps`",
            |k| matches!(k, DistbuildErrorKind::UndeclaredDep(_)),
        ),
        (
            "bad template",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": ["x", "{{OUT}}"]}]}]}"#,
            "job `a`, field `Cmds[0].Exec[1]`: bad template `{{OUT}}`: unknown placeholder",
            |k| matches!(k, DistbuildErrorKind::BadTemplate(_)),
        ),
        (
            "empty program",
            r#"{"Jobs": [{"ID": "a", "Cmds": [{"Exec": ["", "x"]}]}]}"#,
            "job `a`, field `Cmds[0].Exec[0]`: the program to run cannot be empty",
            |k| matches!(k, DistbuildErrorKind::BadTemplate(_)),
        ),
    ];
    for (name, json, expected, check) in cases {
        let err = parse_distbuild(json).expect_err(name);
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "{name}: expected `{expected}` in:\n{message}"
        );
        assert!(check(&err.kind), "{name}: wrong kind {:?}", err.kind);
    }
}
