//! `weft-netsim SCENARIO.toml [--seed N] [--core KEY=VALUE]...`: runs a scenario and prints
//! its report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weft_netsim::{CoreOverrides, Scenario, Sim};

const USAGE: &str = "usage: weft-netsim SCENARIO.toml [--seed N] [--core KEY=VALUE]...";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut path: Option<PathBuf> = None;
    let mut seed: Option<u64> = None;
    // `--core` values, as the lines of a TOML `[core]` table.
    let mut core = String::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seed = Some(s),
                None => {
                    eprintln!("error: `--seed` needs a number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--core" => match args.next().and_then(|kv| core_line(&kv)) {
                Some(line) => core.push_str(&line),
                None => {
                    eprintln!("error: `--core` needs KEY=VALUE, such as `steal_batch=8`\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}\n\nScenarios are described in netsim/README.md.");
                return ExitCode::SUCCESS;
            }
            other if path.is_none() && !other.starts_with('-') => path = Some(other.into()),
            other => {
                eprintln!("error: unexpected argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("error: name a scenario file\n{USAGE}");
        return ExitCode::from(2);
    };
    let mut scenario = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !core.is_empty() {
        // Over the scenario's `[core]`; a node group's own `core` values still win.
        match toml::from_str::<CoreOverrides>(&core) {
            Ok(cli) => scenario.core = scenario.core.overlaid(&cli),
            Err(e) => {
                eprintln!("error: `--core`: {}", e.to_string().trim_end());
                return ExitCode::from(2);
            }
        }
    }
    let seed = seed.unwrap_or(scenario.seed);
    let started = Instant::now();
    let mut sim = match Sim::from_scenario(&scenario, seed) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let setup = started.elapsed();
    let report = sim.run_until_idle();
    if !report.all_succeeded() {
        eprint!("{}", sim.diagnose());
    }
    let wall = started.elapsed();
    println!("{report}");
    println!(
        "wall time    {:.2}s (setup {:.2}s)",
        wall.as_secs_f64(),
        setup.as_secs_f64()
    );
    if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `KEY=VALUE` as a TOML line: a number stays bare, anything else (`5s`) is quoted.
fn core_line(kv: &str) -> Option<String> {
    let (key, value) = kv.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty()
        || value.is_empty()
        || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    if value.parse::<u64>().is_ok() {
        Some(format!("{key} = {value}\n"))
    } else {
        Some(format!("{key} = {value:?}\n"))
    }
}
