//! The system part of a job's toolchain, through the public API that lowering uses
//! (`Toolchains::toolchain_memo` and `Toolchains::unchanged`): jobs lowered against fake
//! "system" trees, made and changed here, in place of `/usr/include` and `/usr/lib`.

#![cfg(feature = "shell")]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use weft_node::exec::{SystemConfig, ToolchainMemo, Toolchains};
use weft_protocol::{Cmd, Job, JobId};

const PATH: &str = "/usr/bin:/bin";

fn exec(argv: &[&str]) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: Default::default(),
        cwd: None,
    }
}

fn cat(output: &str, template: &str) -> Cmd {
    Cmd::Cat {
        output: output.into(),
        template: template.into(),
    }
}

/// A fake system under `root`: headers and libraries.
fn system_tree(root: &Path, stdio: &str) {
    fs::create_dir_all(root.join("include/sys")).expect("mkdir");
    fs::create_dir_all(root.join("lib/python3")).expect("mkdir");
    fs::write(root.join("include/stdio.h"), stdio).expect("write");
    fs::write(root.join("include/sys/types.h"), "typedef int pid_t;\n").expect("write");
    fs::write(root.join("lib/libc.so.6"), "elf").expect("write");
    symlink("libc.so.6", root.join("lib/libc.so")).expect("symlink");
    fs::write(root.join("lib/python3/site.py"), "pass").expect("write");
}

fn config(root: &Path, watch: bool) -> SystemConfig {
    SystemConfig {
        include_dirs: vec![root.join("include")],
        library_dirs: vec![root.join("lib")],
        cache_file: None,
        watch,
    }
}

/// A job as lowering makes one: its toolchain from `toolchains`, then its id.
fn lower(toolchains: &Toolchains, cmds: &[Cmd], memo: &mut ToolchainMemo) -> (Job, JobId) {
    let toolchain = toolchains
        .toolchain_memo(cmds, &[], memo)
        .expect("toolchain");
    let job = Job {
        name: "//:hello".into(),
        inputs: Vec::new(),
        deps: Vec::new(),
        cmds: cmds.to_vec(),
        env: Default::default(),
        outs: vec!["out".into()],
        toolchain,
        network: false,
    };
    let id = job.id();
    (job, id)
}

fn id_on(root: &Path, cmds: &[Cmd]) -> JobId {
    let toolchains = Toolchains::with_system(PATH.into(), config(root, true));
    lower(&toolchains, cmds, &mut ToolchainMemo::default()).1
}

fn shell_job() -> Vec<Cmd> {
    vec![exec(&[
        "sh",
        "-c",
        "cat /usr/include/stdio.h > {{OUTPUT_DIR}}/out",
    ])]
}

#[test]
fn machines_with_another_header_have_other_job_ids_and_equal_trees_equal_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("sys");
    system_tree(&root, "int printf(const char *, ...);\n");
    let first = id_on(&root, &shell_job());
    assert_eq!(id_on(&root, &shell_job()), first, "the same tree");

    // Another machine: the same layout, one header different.
    fs::remove_dir_all(&root).expect("rm");
    system_tree(&root, "int printf(const char *restrict, ...);\n");
    let other = id_on(&root, &shell_job());
    assert_ne!(other, first);

    // A third machine with the first one's files, made anew: other inodes and times.
    fs::remove_dir_all(&root).expect("rm");
    system_tree(&root, "int printf(const char *, ...);\n");
    assert_eq!(id_on(&root, &shell_job()), first);

    // What the linker does not read is not covered.
    fs::write(root.join("lib/python3/site.py"), "import os").expect("write");
    fs::write(root.join("lib/libc.la"), "libtool").expect("write");
    assert_eq!(id_on(&root, &shell_job()), first);
    fs::write(root.join("lib/libc.so.6"), "elf2").expect("write");
    assert_ne!(id_on(&root, &shell_job()), first);
}

#[test]
fn only_a_job_that_runs_a_process_has_a_system_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    system_tree(dir.path(), "x");
    let toolchains = Toolchains::with_system(PATH.into(), config(dir.path(), true));
    let mut memo = ToolchainMemo::default();
    let (cat_only, _) = lower(&toolchains, &[cat("{{OUTPUT_DIR}}/out", "hi")], &mut memo);
    assert_eq!(cat_only.toolchain.system, None);
    assert!(cat_only.toolchain.tools.is_empty());
    let (shell, _) = lower(&toolchains, &shell_job(), &mut memo);
    assert!(
        shell.toolchain.system.is_some(),
        "a shell could read a header"
    );
    // No compiler among its tools: the system directories alone.
    let (other_tool, _) = lower(
        &toolchains,
        &[exec(&["cat", "/usr/include/stdio.h"])],
        &mut memo,
    );
    assert_eq!(other_tool.toolchain.system, shell.toolchain.system);
}

#[test]
fn a_header_changed_between_builds_changes_the_next_builds_ids() {
    for watch in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        system_tree(dir.path(), "v1");
        let toolchains = Toolchains::with_system(PATH.into(), config(dir.path(), watch));
        let mut memo = ToolchainMemo::default();
        let (_, first) = lower(&toolchains, &shell_job(), &mut memo);
        assert!(toolchains.unchanged(&memo), "watch {watch}");
        // The next build reuses the lowering.
        assert!(toolchains.unchanged(&memo), "watch {watch}");

        fs::write(
            dir.path().join("include/sys/types.h"),
            "typedef long pid_t;\n",
        )
        .expect("write");
        assert!(!toolchains.unchanged(&memo), "watch {watch}");
        let mut memo = ToolchainMemo::default();
        let (_, second) = lower(&toolchains, &shell_job(), &mut memo);
        assert_ne!(second, first, "watch {watch}");
        assert!(toolchains.unchanged(&memo), "watch {watch}");

        // Put back as it was: the first id again.
        fs::write(
            dir.path().join("include/sys/types.h"),
            "typedef int pid_t;\n",
        )
        .expect("write");
        assert!(!toolchains.unchanged(&memo), "watch {watch}");
        let (_, third) = lower(&toolchains, &shell_job(), &mut ToolchainMemo::default());
        assert_eq!(third, first, "watch {watch}");
        assert_eq!(toolchains.system_stats().watching, watch);
    }
}

/// A fake gcc in `bin/` that names its own directories under `root`, as gcc does.
fn fake_gcc(root: &Path) -> PathBuf {
    let bin = root.join("bin");
    let install = root.join("gcc/x86_64-linux-gnu/12");
    fs::create_dir_all(&bin).expect("mkdir");
    fs::create_dir_all(install.join("include")).expect("mkdir");
    fs::write(install.join("cc1"), "cc1 v1").expect("write");
    fs::write(install.join("include/stddef.h"), "typedef long size_t;").expect("write");
    fs::write(install.join("crtbegin.o"), "obj").expect("write");
    let i = install.display();
    let script = format!(
        "#!/bin/sh\n\
         case \"$1\" in\n\
         -print-search-dirs) printf 'install: {i}/\\nlibraries: ={i}/\\n' ;;\n\
         -print-prog-name=cc1) echo {i}/cc1 ;;\n\
         -print-prog-name=as) echo as ;;\n\
         -print-prog-name=ld) echo ld ;;\n\
         -print-file-name=include) echo {i}/include ;;\n\
         *) echo 'gcc: unrecognized option' >&2; exit 1 ;;\n\
         esac\n"
    );
    let gcc = bin.join("gcc-12");
    fs::write(&gcc, script).expect("write");
    fs::set_permissions(&gcc, fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink("gcc-12", bin.join("gcc")).expect("symlink");
    // Named like no compiler, but it is one: known by what it resolves to.
    symlink("gcc-12", bin.join("mycc")).expect("symlink");
    bin
}

#[test]
fn a_compilers_own_files_are_covered_and_kept_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    system_tree(&root.join("sys"), "v1");
    let bin = fake_gcc(&root);
    let path_env = format!("{}:{PATH}", bin.display());
    let toolchains = Toolchains::with_system(path_env, config(&root.join("sys"), true));
    let gcc_job = vec![exec(&["gcc", "-c", "hello.c"])];
    let mycc_job = vec![exec(&["mycc", "-c", "hello.c"])];
    let jobs = [gcc_job.clone(), mycc_job.clone(), shell_job()];
    let lower_all = |memo: &mut ToolchainMemo| -> Vec<Job> {
        jobs.iter()
            .map(|cmds| lower(&toolchains, cmds, memo).0)
            .collect()
    };
    let mut memo = ToolchainMemo::default();
    let before = lower_all(&mut memo);
    let shell_system = before[2].toolchain.system;
    assert_ne!(
        before[0].toolchain.system, shell_system,
        "gcc adds its files"
    );
    assert_ne!(
        before[1].toolchain.system, shell_system,
        "so does what resolves to gcc"
    );

    // gcc's own header changes: the compile jobs' ids change, the shell job's do not.
    let install = root.join("gcc/x86_64-linux-gnu/12");
    fs::write(
        install.join("include/stddef.h"),
        "typedef unsigned long size_t;",
    )
    .expect("write");
    assert!(!toolchains.unchanged(&memo));
    let mut memo = ToolchainMemo::default();
    let after = lower_all(&mut memo);
    assert_ne!(after[0].id(), before[0].id());
    assert_ne!(after[1].id(), before[1].id());
    assert_eq!(after[2].id(), before[2].id());

    // So does its `cc1`, in place.
    fs::write(install.join("cc1"), "cc1 v2").expect("write");
    assert!(!toolchains.unchanged(&memo));
    let again = lower_all(&mut ToolchainMemo::default());
    assert_ne!(again[0].id(), after[0].id());
    assert_eq!(again[2].id(), before[2].id());
    assert!(toolchains.system_stats().n_probed >= 1);
}
