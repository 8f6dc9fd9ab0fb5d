//! [`JobId`]: blake3 over the canonical encoding of a [`Job`].
//!
//! The encoding (see [`crate::canon`] for the primitive rules) is, in order:
//!
//! 1. the domain string `weft.job.v2`;
//! 2. tag 1, the inputs sorted by path: for each, its path, digest and executable bit;
//! 3. tag 2, the deps' ids in ascending order;
//! 4. tag 3, the commands in their order: `Exec` is byte 0, the argv strings, the env map and
//!    the optional cwd; `Cat` is byte 1, the output and the template;
//! 5. tag 4, the job's env map;
//! 6. tag 5, the declared outs in ascending order;
//! 7. tag 6, the toolchain: the platform, each tool's name and digest by name, then whether a
//!    digest of the system directories is given, and that digest;
//! 8. tag 7, whether the job may use the network.
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
        JobId(self.canonical().finish())
    }

    /// The canonical encoding of this job, fed into a hasher.
    fn canonical(&self) -> Canon {
        let mut canon = Canon::new("weft.job.v2");

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
        canon.bool(self.toolchain.system.is_some());
        if let Some(system) = &self.toolchain.system {
            canon.digest(system);
        }

        canon.tag(7).bool(self.network);
        canon
    }
}

fn encode_env(canon: &mut Canon, env: &BTreeMap<String, String>) {
    canon.len(env.len());
    for (key, value) in env {
        canon.str(key).str(value);
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::{Input, Toolchain};

    /// Two inputs given out of order, a dep, both kinds of command, env and a toolchain:
    /// every rule of the encoding shows.
    fn sample_job() -> Job {
        Job {
            name: "//app:main".into(),
            inputs: vec![
                Input {
                    path: "app/main.c".into(),
                    digest: Digest::from_bytes([0xaa; 32]),
                    executable: false,
                },
                Input {
                    path: "app/gen.sh".into(),
                    digest: Digest::from_bytes([0xbb; 32]),
                    executable: true,
                },
            ],
            deps: vec![JobId(Digest::from_bytes([0x11; 32]))],
            cmds: vec![
                Cmd::Exec {
                    argv: vec!["cc".into(), "-c".into()],
                    env: BTreeMap::from([("LANG".into(), "C".into())]),
                    cwd: Some("{{SOURCE_DIR}}/app".into()),
                },
                Cmd::Cat {
                    output: "{{OUTPUT_DIR}}/v.h".into(),
                    template: "#define V 1\n".into(),
                },
            ],
            env: BTreeMap::from([("TZ".into(), "UTC".into())]),
            outs: vec!["v.h".into(), "main.o".into()],
            toolchain: Toolchain {
                platform: "linux-x86_64".into(),
                tools: BTreeMap::from([("cc".into(), Digest::from_bytes([0xcc; 32]))]),
                system: None,
            },
            network: false,
        }
    }

    #[test]
    fn the_canonical_encoding() {
        // A change here changes every job id, and so every cache: bump the domain on purpose.
        let canon = sample_job().canonical();
        // The trace below is exactly what is hashed.
        assert_eq!(Digest::of(&canon.fed_bytes()), canon.finish());
        expect![[r##"
            str    0b00000000000000 776566742e6a6f622e7632 "weft.job.v2"
            tag    01
            len    0200000000000000
            str    0a00000000000000 6170702f67656e2e7368 "app/gen.sh"
            digest bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
            bool   01
            str    0a00000000000000 6170702f6d61696e2e63 "app/main.c"
            digest aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
            bool   00
            tag    02
            len    0100000000000000
            digest 1111111111111111111111111111111111111111111111111111111111111111
            tag    03
            len    0200000000000000
            u8     00
            len    0200000000000000
            str    0200000000000000 6363 "cc"
            str    0200000000000000 2d63 "-c"
            len    0100000000000000
            str    0400000000000000 4c414e47 "LANG"
            str    0100000000000000 43 "C"
            bool   01
            str    1200000000000000 7b7b534f555243455f4449527d7d2f617070 "{{SOURCE_DIR}}/app"
            u8     01
            str    1200000000000000 7b7b4f55545055545f4449527d7d2f762e68 "{{OUTPUT_DIR}}/v.h"
            str    0c00000000000000 23646566696e65205620310a "#define V 1\n"
            tag    04
            len    0100000000000000
            str    0200000000000000 545a "TZ"
            str    0300000000000000 555443 "UTC"
            tag    05
            len    0200000000000000
            str    0600000000000000 6d61696e2e6f "main.o"
            str    0300000000000000 762e68 "v.h"
            tag    06
            str    0c00000000000000 6c696e75782d7838365f3634 "linux-x86_64"
            len    0100000000000000
            str    0200000000000000 6363 "cc"
            digest cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
            bool   00
            tag    07
            bool   00
        "##]]
        .assert_eq(&canon.trace());
        expect!["22a4f061ad457bc906bd24f59e753206a402de4bc5b33f575c1950a453ba8ee5"]
            .assert_eq(&sample_job().id().to_string());
    }
}
