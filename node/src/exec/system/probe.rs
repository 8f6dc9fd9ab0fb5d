//! Compilers among a job's tools, and what each says its own files are.
//!
//! A C or C++ compiler driver reads more than its binary: its internal headers, `cc1`,
//! `collect2`, crt files and libgcc (gcc), its resource directory (clang), the assembler and
//! linker it runs, and the library directories it hands the linker. [`probe`] asks the driver
//! itself, as the job would run it (the same path, the configured `PATH`, nothing else of the
//! daemon's environment, `/` as working directory, `LC_ALL=C`):
//! - `-print-search-dirs`: `install:` (covered whole) and `libraries:` (covered as linker
//!   directories);
//! - `-print-prog-name=` `cc1`, `cc1plus`, `collect2`, `lto-wrapper`: the directory of each
//!   that is an absolute path (covered whole);
//! - `-print-file-name=include` (gcc's own headers) and `-print-resource-dir` (clang's), when
//!   absolute directories (covered whole);
//! - `-print-prog-name=` `as` and `ld`: the programs it runs, by path or by name on `PATH`.
//!
//! A question the driver does not understand (gcc has no `-print-resource-dir`) or that fails
//! adds nothing. Directories are taken after symlinks, once each; one inside another covered
//! whole is left out, as is a linker directory inside a whole one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::tree::{Coverage, Root, normalize_roots};

/// The compiler drivers recognized by name, with an optional target prefix
/// (`x86_64-linux-gnu-gcc`) and version suffix (`gcc-12`, `clang++-14`).
const DRIVERS: [&str; 8] = [
    "cc",
    "c++",
    "gcc",
    "g++",
    "cpp",
    "clang",
    "clang++",
    "clang-cpp",
];

/// Whether a tool named `name` (a file name, or a path whose file name counts) is a C or C++
/// compiler driver.
pub(crate) fn is_compiler(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    // A version suffix: `-12`, `-14.0.6`.
    let base = match base.rsplit_once('-') {
        Some((stem, version))
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            stem
        }
        _ => base,
    };
    DRIVERS
        .iter()
        .any(|driver| base == *driver || base.ends_with(&format!("-{driver}")))
}

/// What a compiler driver reads besides its binary, as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompilerFiles {
    /// Its directories, each covered whole or as a linker directory, in a fixed order.
    pub(crate) roots: Vec<Root>,
    /// The programs it runs (`as`, `ld`): an absolute path, or a name to look up on `PATH`.
    pub(crate) programs: Vec<String>,
}

/// How long one question may take: a driver answers these in milliseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most output read from one answer.
const MAX_ANSWER: u64 = 1 << 20;

/// Asks the driver at `tool` (see the module documentation).
pub(crate) fn probe(tool: &Path, path_env: &str) -> CompilerFiles {
    const QUESTIONS: [&str; 9] = [
        "-print-search-dirs",
        "-print-prog-name=cc1",
        "-print-prog-name=cc1plus",
        "-print-prog-name=collect2",
        "-print-prog-name=lto-wrapper",
        "-print-file-name=include",
        "-print-resource-dir",
        "-print-prog-name=as",
        "-print-prog-name=ld",
    ];
    // All at once: each costs a process start, and they do not depend on each other.
    let answers: Vec<Option<String>> = std::thread::scope(|scope| {
        let asked: Vec<_> = QUESTIONS
            .iter()
            .map(|question| scope.spawn(move || ask(tool, question, path_env)))
            .collect();
        asked
            .into_iter()
            .map(|handle| handle.join().ok().flatten())
            .collect()
    });
    let answer = |question: &str| -> Option<&str> {
        let at = QUESTIONS.iter().position(|q| *q == question)?;
        answers.get(at)?.as_deref().map(str::trim)
    };
    let mut whole: Vec<PathBuf> = Vec::new();
    let mut linker: Vec<PathBuf> = Vec::new();
    for line in answer("-print-search-dirs").unwrap_or_default().lines() {
        if let Some(install) = line.strip_prefix("install: ") {
            whole.push(PathBuf::from(install.trim()));
        } else if let Some(libraries) = line.strip_prefix("libraries: ") {
            let libraries = libraries.trim().trim_start_matches('=');
            linker.extend(
                libraries
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from),
            );
        }
    }
    for program in ["cc1", "cc1plus", "collect2", "lto-wrapper"] {
        if let Some(path) = answer(&format!("-print-prog-name={program}")).map(Path::new)
            && path.is_absolute()
            && let Some(dir) = path.parent()
        {
            whole.push(dir.to_owned());
        }
    }
    for question in ["-print-file-name=include", "-print-resource-dir"] {
        if let Some(path) = answer(question).map(Path::new)
            && path.is_absolute()
        {
            whole.push(path.to_owned());
        }
    }
    let programs: Vec<String> = ["as", "ld"]
        .iter()
        .filter_map(|program| answer(&format!("-print-prog-name={program}")))
        .filter(|name| !name.is_empty() && !name.contains('\n'))
        .map(str::to_owned)
        .collect();
    CompilerFiles {
        roots: normalize_roots(
            whole
                .into_iter()
                .map(|dir| (dir, Coverage::Whole))
                .chain(linker.into_iter().map(|dir| (dir, Coverage::Linker))),
            false,
        ),
        programs,
    }
}

/// The driver's answer to `arg` on stdout, if it exits 0 within [`PROBE_TIMEOUT`].
fn ask(tool: &Path, arg: &str, path_env: &str) -> Option<String> {
    let mut child = Command::new(tool)
        .arg(arg)
        .env_clear()
        .env("PATH", path_env)
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = Vec::new();
        let read = (&mut stdout).take(MAX_ANSWER).read_to_end(&mut answer);
        let _ = send.send(read.map(|_| answer));
    });
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let answer = receive.recv_timeout(PROBE_TIMEOUT);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    if !status?.success() {
        return None;
    }
    let answer = String::from_utf8(answer.ok()?.ok()?).ok()?;
    tracing::debug!(tool = %tool.display(), arg, answer = answer.trim(), "asked the compiler");
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn compilers_are_known_by_name() {
        for name in [
            "cc",
            "c++",
            "gcc",
            "g++-12",
            "/usr/bin/gcc",
            "x86_64-linux-gnu-gcc-12",
            "clang",
            "clang++-14",
            "clang-14.0.6",
            "cpp",
        ] {
            assert!(is_compiler(name), "{name}");
        }
        for name in [
            "cc1",
            "gcc-ar",
            "gcc-ar-12",
            "clang-format",
            "sh",
            "ccache",
            "ld",
            "",
            "-12",
            "c",
        ] {
            assert!(!is_compiler(name), "{name}");
        }
    }

    #[test]
    fn a_driver_is_asked_for_its_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        for sub in ["install/include", "install/plugin", "lib", "libexec", "res"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let r = root.display();
        // A driver answering like gcc, and in part like clang; it also checks that it runs in
        // `/` with nothing of the environment but `PATH` and `LC_ALL`.
        let script = format!(
            "#!/bin/sh\n\
             [ \"$(pwd)\" = / ] && [ -z \"$HOME\" ] && [ \"$LC_ALL\" = C ] || exit 3\n\
             case \"$1\" in\n\
             -print-search-dirs) printf 'install: {r}/install/\\nprograms: =/nowhere\\n\
             libraries: ={r}/lib/:{r}/install/:/nonexistent/:{r}/lib/../lib\\n' ;;\n\
             -print-prog-name=cc1) echo {r}/libexec/cc1 ;;\n\
             -print-prog-name=collect2) echo {r}/install/collect2 ;;\n\
             -print-prog-name=as) echo as ;;\n\
             -print-prog-name=ld) echo {r}/bin/ld ;;\n\
             -print-file-name=include) echo {r}/install/include ;;\n\
             -print-resource-dir) echo {r}/res ;;\n\
             *) exit 1 ;;\n\
             esac\n"
        );
        let tool = root.join("gcc");
        std::fs::write(&tool, script).expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let files = probe(&tool, "/usr/bin:/bin");
        let whole = |sub: &str| Root {
            path: root.join(sub),
            coverage: Coverage::Whole,
        };
        assert_eq!(
            files,
            CompilerFiles {
                roots: vec![
                    whole("install"),
                    whole("libexec"),
                    whole("res"),
                    Root {
                        path: root.join("lib"),
                        coverage: Coverage::Linker
                    },
                ],
                programs: vec!["as".into(), format!("{r}/bin/ld")],
            }
        );
        assert_eq!(
            probe(&root.join("missing"), "/usr/bin:/bin"),
            CompilerFiles::default()
        );
    }
}
