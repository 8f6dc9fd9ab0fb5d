//! [`JobId`]: blake3 over the canonical encoding of a [`Job`].
//!
//! The encoding (see [`crate::canon`] for the primitive rules) is, in order:
//!
//! 1. the domain string `weft.job.v1`;
//! 2. tag 1, the inputs sorted by path: for each, its path, digest and executable bit;
//! 3. tag 2, the deps' ids in ascending order;
//! 4. tag 3, the commands in their order: `Exec` is byte 0, the argv strings, the env map and
//!    the optional cwd; `Cat` is byte 1, the output and the template;
//! 5. tag 4, the job's env map;
//! 6. tag 5, the declared outs in ascending order;
//! 7. tag 6, the toolchain: the platform, then each tool's name and digest by name.
//!
//! The job's name is not part of it: renaming a target does not rebuild it, and two targets
//! that do exactly the same work share one result. Neither is the order of inputs, deps or
//! outs, which carries no meaning.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::model::{Cmd, Job};
use crate::canon::Canon;
use crate::{Digest, DigestParseError};

/// The identity of a job: equal ids mean equal work, and so equal results.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub Digest);

impl JobId {
    /// The id as a digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }

    /// The first `n` hex characters, for progress lines.
    pub fn short(&self, n: usize) -> String {
        self.0.short(n)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.short(12))
    }
}

impl FromStr for JobId {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<JobId, DigestParseError> {
        text.parse().map(JobId)
    }
}

impl Job {
    /// This job's id, from the canonical encoding in this module's documentation.
    pub fn id(&self) -> JobId {
        let mut canon = Canon::new("weft.job.v1");

        let mut inputs: Vec<_> = self.inputs.iter().collect();
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        canon.tag(1).len(inputs.len());
        for input in inputs {
            canon
                .str(&input.path)
                .digest(&input.digest)
                .bool(input.executable);
        }

        let mut deps = self.deps.clone();
        deps.sort();
        canon.tag(2).len(deps.len());
        for dep in &deps {
            canon.digest(&dep.0);
        }

        canon.tag(3).len(self.cmds.len());
        for cmd in &self.cmds {
            match cmd {
                Cmd::Exec { argv, env, cwd } => {
                    canon.u8(0).len(argv.len());
                    for arg in argv {
                        canon.str(arg);
                    }
                    encode_env(&mut canon, env);
                    canon.bool(cwd.is_some());
                    if let Some(cwd) = cwd {
                        canon.str(cwd);
                    }
                }
                Cmd::Cat { output, template } => {
                    canon.u8(1).str(output).str(template);
                }
            }
        }

        canon.tag(4);
        encode_env(&mut canon, &self.env);

        let mut outs: Vec<_> = self.outs.iter().collect();
        outs.sort();
        canon.tag(5).len(outs.len());
        for out in outs {
            canon.str(out);
        }

        canon
            .tag(6)
            .str(&self.toolchain.platform)
            .len(self.toolchain.tools.len());
        for (name, digest) in &self.toolchain.tools {
            canon.str(name).digest(digest);
        }

        JobId(canon.finish())
    }
}

fn encode_env(canon: &mut Canon, env: &BTreeMap<String, String>) {
    canon.len(env.len());
    for (key, value) in env {
        canon.str(key).str(value);
    }
}
