//! The crash test: a child process (this test binary, re-run with [`CHILD_ENV`] set) writes
//! blobs and action-cache entries from two threads until it is killed with `SIGKILL` at a
//! random moment, sometimes while it is still opening the store. After every kill the parent
//! reopens the store and checks that
//! - every blob whose put returned in the child is there, whole and intact;
//! - no tmp file is left, and `verify()` finds no corruption (every blob present is rehashed);
//! - action-cache lookups answer (a hit or a miss, never an error);
//! - the store still works: put, read, put and get an action result.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{action_result, bytes, count_files};
use weft_protocol::{Digest, JobId};
use weft_store::{Store, Verify};

/// Set in the child's environment to the store directory: it makes `crash_child_role` write.
const CHILD_ENV: &str = "WEFT_STORE_CRASH_CHILD";
/// How many times the child is killed.
const N_KILLS: usize = 60;
/// The child collects garbage down to this size when it starts, to keep the store small.
const CHILD_GC_CAP: u64 = 4 << 20;

/// The child's role. A no-op in a normal test run; in the child, writes until killed.
#[test]
fn crash_child_role() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&root)).expect("child: open");
    store.gc(CHILD_GC_CAP).expect("child: gc");
    // On a line of its own: the test harness has just printed `test crash_child_role ... `.
    println!("\nready");
    let seed = u64::from(std::process::id()) << 32;
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            let store = &store;
            scope.spawn(move || {
                for i in 0u64.. {
                    let n = seed | (thread << 31) | i;
                    let len = match i % 40 {
                        // Now and then a blob big enough to stream.
                        7 => (1 << 20) + (n % 300_000) as usize,
                        _ => (n.wrapping_mul(2_654_435_761) % 20_000) as usize,
                    };
                    let content = bytes(n, len);
                    let digest = if i % 3 == 0 {
                        store
                            .put_reader(&content[..], Some(Digest::of(&content)))
                            .expect("child: put_reader")
                            .0
                    } else {
                        store.put(&content).expect("child: put")
                    };
                    // Printed only once the put has returned; stdout is line-buffered.
                    println!("blob {digest}");
                    if i % 4 == 0 {
                        let job = JobId(Digest::of(&n.to_le_bytes()));
                        store
                            .put_action(job, &action_result(&[digest], digest, 0))
                            .expect("child: put_action");
                        println!("action {job}");
                    }
                }
            });
        }
    });
}

/// A small xorshift generator, so that a failing run can be repeated from its printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn killed_writers_leave_whole_blobs_and_a_working_store() {
    let seed = std::env::var("WEFT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test seed: {seed} (set WEFT_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let (mut n_blobs_checked, mut n_actions_checked, mut n_killed_before_ready) = (0, 0, 0);

    for round in 0..N_KILLS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_role",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        // One round in five is killed early, maybe while it opens the store; the others run
        // for a random while after they are ready.
        let early = rng.below(5) == 0;
        let mut lines = Vec::new();
        if early {
            std::thread::sleep(Duration::from_millis(rng.below(15)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let timeout = deadline.saturating_duration_since(Instant::now());
                match lines_rx.recv_timeout(timeout) {
                    Ok(line) if line.trim() == "ready" => break,
                    Ok(line) => lines.push(line),
                    Err(_) => panic!("round {round}: the child never got ready"),
                }
            }
            std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        }
        child.kill().expect("kill child");
        let status = child.wait().expect("wait for child");
        reader.join().expect("stdout reader");
        lines.extend(lines_rx.try_iter());
        if status.signal() != Some(9) {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
            }
            panic!("round {round}: the child ended on its own ({status}):\n{stderr}");
        }
        if early && !lines.iter().any(|l| l.trim() == "ready") {
            n_killed_before_ready += 1;
        }

        let store = Store::open(&root).expect("reopen after a kill");
        assert_eq!(
            count_files(&root.join("tmp")),
            0,
            "round {round}: tmp files left"
        );
        for line in &lines {
            if let Some(hex) = line.strip_prefix("blob ") {
                let digest: Digest = hex.parse().expect("digest");
                store.read(&digest, Verify::Yes).unwrap_or_else(|e| {
                    panic!("round {round}: blob {digest} whose put returned: {e}")
                });
                n_blobs_checked += 1;
            } else if let Some(hex) = line.strip_prefix("action ") {
                let job = JobId(hex.parse().expect("job id"));
                store
                    .get_action(job)
                    .unwrap_or_else(|e| panic!("round {round}: action {job}: {e}"));
                n_actions_checked += 1;
            }
        }
        let report = store.verify().expect("verify");
        assert!(report.no_corruption(), "round {round}: {report:?}");
        let stats = store.stats();
        assert_eq!(
            stats.n_blobs as usize,
            count_files(&root.join("cas")),
            "round {round}: after verify the index matches the files"
        );

        let probe = bytes(round as u64 + 1_000_000, 5000);
        let digest = store.put(&probe).expect("put after a kill");
        assert_eq!(store.read(&digest, Verify::Yes).expect("read"), probe);
        let job = JobId(digest);
        let result = action_result(&[digest], digest, 0);
        store
            .put_action(job, &result)
            .expect("put_action after a kill");
        assert_eq!(store.get_action(job).expect("get_action"), Some(result));
        drop(store);
    }
    eprintln!(
        "crash test: {N_KILLS} kills ({n_killed_before_ready} before the child was ready), \
         {n_blobs_checked} acknowledged blobs and {n_actions_checked} action entries checked, \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(n_blobs_checked > 0, "the child wrote something");
    let _ = std::io::stderr().flush();
}
