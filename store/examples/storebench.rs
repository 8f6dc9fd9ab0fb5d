//! Benchmarks of the store, run by `bench/store.sh`.
//!
//! ```text
//! storebench put-file <store-dir> <file>             put_file once, print digest and GB/s
//! storebench small <store-dir> [count] [size] [threads]
//!                                                     puts/s, gets/s (plain and verified);
//!                                                     with threads > 1, also puts/s from that
//!                                                     many threads at once
//! storebench actions <store-dir> [count]              action-cache puts/s and gets/s
//! storebench fs-baseline <dir> [count] [size]         the file system alone: create, write
//!                                                     and rename `count` files, as a put does
//! ```
//!
//! Each figure is printed as one `name=value` line, for scripts.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_protocol::{ActionResult, Digest, JobId, NodeId, OutputFile};
use weft_store::{Store, Verify};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Fails with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let number = |i: usize, default: u64| -> Result<u64> {
        arg(i).map_or(Ok(default), |text| {
            text.parse()
                .map_err(|_| format!("`{text}` is not a number").into())
        })
    };
    match (arg(0), arg(1)) {
        (Some("put-file"), Some(store)) => {
            let file = arg(2).ok_or("usage: storebench put-file <store-dir> <file>")?;
            put_file(Path::new(store), Path::new(file))
        }
        (Some("small"), Some(store)) => small(
            Path::new(store),
            number(2, 100_000)?,
            number(3, 1024)?,
            number(4, 1)?,
        ),
        (Some("actions"), Some(store)) => actions(Path::new(store), number(2, 100_000)?),
        (Some("fs-baseline"), Some(dir)) => {
            fs_baseline(Path::new(dir), number(2, 100_000)?, number(3, 1024)?)
        }
        _ => Err("usage: storebench put-file <store-dir> <file> | small <store-dir> [count] [size] | actions <store-dir> [count] | fs-baseline <dir> [count] [size]".into()),
    }
}

fn put_file(store_dir: &Path, file: &Path) -> Result<()> {
    let store = Store::open(store_dir)?;
    let started = Instant::now();
    let (digest, size) = store.put_file(file)?;
    let elapsed = started.elapsed();
    println!("digest={digest}");
    println!("put_file_bytes={size}");
    println!("put_file_seconds={:.3}", elapsed.as_secs_f64());
    println!(
        "put_file_gb_per_s={:.2}",
        size as f64 / elapsed.as_secs_f64() / 1e9
    );
    Ok(())
}

/// A blob of `size` bytes that differs from every other `i`.
fn blob(buffer: &mut [u8], i: u64) {
    let n = buffer.len().min(8);
    buffer[..n].copy_from_slice(&i.to_le_bytes()[..n]);
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn small(store_dir: &Path, count: u64, size: u64, threads: u64) -> Result<()> {
    let store = Store::open(store_dir)?;
    let mut buffer = vec![0xa5u8; usize::try_from(size)?];
    let mut digests = Vec::with_capacity(usize::try_from(count)?);

    let started = Instant::now();
    for i in 0..count {
        blob(&mut buffer, i);
        digests.push(store.put(&buffer)?);
    }
    let puts = rate(count, started.elapsed());

    let started = Instant::now();
    for i in 0..count {
        blob(&mut buffer, i);
        store.put(&buffer)?;
    }
    let dedup_puts = rate(count, started.elapsed());

    let started = Instant::now();
    let mut n_bytes = 0;
    for digest in &digests {
        n_bytes += store.read(digest, Verify::No)?.len() as u64;
    }
    let gets = rate(count, started.elapsed());

    let started = Instant::now();
    for digest in &digests {
        n_bytes += store.read(digest, Verify::Yes)?.len() as u64;
    }
    let verified_gets = rate(count, started.elapsed());

    let started = Instant::now();
    let n_present = digests.iter().filter(|digest| store.has(digest)).count();
    let has = rate(count, started.elapsed());

    ensure(n_bytes == 2 * count * size, || {
        format!("read back {n_bytes} bytes")
    })?;
    ensure(n_present as u64 == count, || {
        format!("{n_present} of {count} blobs present")
    })?;
    println!("small_count={count}");
    println!("small_size={size}");
    println!("small_puts_per_s={puts:.0}");
    println!("small_dedup_puts_per_s={dedup_puts:.0}");
    println!("small_gets_per_s={gets:.0}");
    println!("small_verified_gets_per_s={verified_gets:.0}");
    println!("small_has_per_s={has:.0}");

    if threads > 1 {
        // Another `count` new blobs, from `threads` threads at once.
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let store = &store;
                    scope.spawn(move || -> std::result::Result<(), weft_store::StoreError> {
                        let mut buffer = vec![0x5au8; size as usize];
                        for i in (thread..count).step_by(threads as usize) {
                            blob(&mut buffer, count + i);
                            store.put(&buffer)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().map_err(|_| "a put thread panicked")??;
            }
            Ok(())
        })?;
        let parallel_puts = rate(count, started.elapsed());
        println!("small_threads={threads}");
        println!("small_parallel_puts_per_s={parallel_puts:.0}");
    }
    Ok(())
}

fn actions(store_dir: &Path, count: u64) -> Result<()> {
    let store = Store::open(store_dir)?;
    // Each result names two output files, an output tree, stdout and stderr: five blobs.
    let stdout = store.put(b"compiling...\n")?;
    let stderr = store.put(b"")?;
    let tree = store.put(b"tree")?;
    let outputs: Vec<OutputFile> = (0..2u8)
        .map(|i| -> Result<OutputFile> {
            let bytes = [i; 100];
            Ok(OutputFile {
                path: format!("out/{i}.o"),
                digest: store.put(&bytes)?,
                size: 100,
                executable: false,
            })
        })
        .collect::<Result<_>>()?;
    let job = |i: u64| JobId(Digest::of(&i.to_le_bytes()));
    let result = |i: u64| ActionResult {
        exit_code: 0,
        outputs: outputs.clone(),
        output_tree: tree,
        stdout,
        stderr,
        duration_ms: i,
        executed_by: NodeId([7; 32]),
        signature: None,
    };

    let started = Instant::now();
    for i in 0..count {
        store.put_action(job(i), &result(i))?;
    }
    let puts = rate(count, started.elapsed());

    let started = Instant::now();
    for i in 0..count {
        let found = store.get_action(job(i))?;
        ensure(found.is_some_and(|r| r.duration_ms == i), || {
            format!("miss on job {i}")
        })?;
    }
    let gets = rate(count, started.elapsed());

    let started = Instant::now();
    for i in count..2 * count {
        ensure(store.get_action(job(i))?.is_none(), || {
            format!("hit on absent job {i}")
        })?;
    }
    let misses = rate(count, started.elapsed());

    println!("action_count={count}");
    println!("action_puts_per_s={puts:.0}");
    println!("action_gets_per_s={gets:.0}");
    println!("action_misses_per_s={misses:.0}");
    Ok(())
}

/// What the file system alone allows: for each of `count` files, create a tmp file (mode 0444)
/// in one of 256 tmp directories, write `size` bytes with one write, and rename it into one of
/// 256 fan-out directories, making directories on first use, exactly as a put does; but no
/// hashing, no locking and no index. The ceiling for small puts.
fn fs_baseline(dir: &Path, count: u64, size: u64) -> Result<()> {
    use std::io::{ErrorKind, Write};
    use std::os::unix::fs::OpenOptionsExt;

    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::create_dir_all(dir.join("cas"))?;
    let mut buffer = vec![0xa5u8; usize::try_from(size)?];
    // Names like blob names, made before the clock starts.
    let names: Vec<String> = (0..count)
        .map(|i| Digest::of(&i.to_le_bytes()).to_hex())
        .collect();
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(path)
    };
    let started = Instant::now();
    for (i, name) in (0..count).zip(&names) {
        blob(&mut buffer, i);
        let tmp_dir = dir.join(format!("tmp/{:02x}", i.to_le_bytes()[0]));
        let tmp = tmp_dir.join(i.to_string());
        let fanout = dir.join(format!("cas/{}", &name[..2]));
        let dest = fanout.join(name);
        let mut file = match create(&tmp) {
            Err(err) if err.kind() == ErrorKind::NotFound => {
                std::fs::create_dir(&tmp_dir)?;
                create(&tmp)?
            }
            other => other?,
        };
        file.write_all(&buffer)?;
        drop(file);
        if let Err(err) = std::fs::rename(&tmp, &dest) {
            if err.kind() != ErrorKind::NotFound {
                return Err(err.into());
            }
            std::fs::create_dir(&fanout)?;
            std::fs::rename(&tmp, &dest)?;
        }
    }
    let creates = rate(count, started.elapsed());
    println!("fs_baseline_count={count}");
    println!("fs_baseline_creates_per_s={creates:.0}");
    Ok(())
}
