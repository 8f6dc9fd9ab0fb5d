//! [`Workspace`]: the directory with `weft.toml`, and where each package's files live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weft_protocol::PackagePath;
use weft_protocol::path::check_relative_path;

use super::error::{FrontendError, FrontendErrorKind};

/// The name of the file that marks a workspace root.
pub const WORKSPACE_FILE: &str = "weft.toml";

/// The directory, at the workspace root, where builds put their outputs. It is never searched
/// for BUILD files.
pub const OUTPUT_DIR_NAME: &str = "weft-out";

/// A workspace: its root and the external packages `weft.toml` maps.
///
/// ```toml
/// # weft.toml
/// [packages]
/// curl = "third_party/curl"   # `@curl//lib:x` is `third_party/curl/lib`, target `x`
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The root directory, absolute and canonical.
    pub root: PathBuf,
    /// External packages: the name (without `@`) to the workspace-relative directory.
    pub packages: BTreeMap<String, String>,
}

impl Workspace {
    /// The workspace that holds `start`: the nearest directory, from `start` upwards, that
    /// has a `weft.toml`.
    pub fn find(start: &Path) -> Result<Workspace, FrontendError> {
        let start = canonical(start)?;
        for dir in start.ancestors() {
            if dir.join(WORKSPACE_FILE).is_file() {
                return Workspace::open(dir);
            }
        }
        Err(FrontendError::new(FrontendErrorKind::NoWorkspace { start }))
    }

    /// The workspace whose root is `root`, which must hold a `weft.toml`.
    pub fn open(root: &Path) -> Result<Workspace, FrontendError> {
        let root = canonical(root)?;
        let config = root.join(WORKSPACE_FILE);
        let text = std::fs::read_to_string(&config).map_err(|e| io_error(&config, &e))?;
        let packages = parse_config(&text).map_err(|message| bad_config(&config, message))?;
        Ok(Workspace { root, packages })
    }

    /// The workspace-relative directory of `dir`: its path, under the package's directory for
    /// an `@package`.
    pub fn dir_of(&self, dir: &PackagePath) -> Result<String, FrontendError> {
        match dir.package() {
            None => {
                if let Some((package, rest)) = self.external_package_at(dir.path()) {
                    let suggestion = PackagePath::new(Some(package), rest)
                        .map_err(|e| FrontendError::new(FrontendErrorKind::BadLabel(e)))?;
                    return Err(FrontendError::new(
                        FrontendErrorKind::InsideExternalPackage {
                            dir: dir.clone(),
                            package: package.to_owned(),
                            suggestion,
                        },
                    ));
                }
                Ok(dir.path().to_owned())
            }
            Some(package) => {
                let base = self.package_root(package)?;
                Ok(if dir.path().is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}/{}", dir.path())
                })
            }
        }
    }

    /// The workspace-relative directory of the external package `name`.
    pub fn package_root(&self, name: &str) -> Result<&str, FrontendError> {
        self.packages.get(name).map(String::as_str).ok_or_else(|| {
            FrontendError::new(FrontendErrorKind::UnknownPackage {
                name: name.to_owned(),
                known: self.packages.keys().cloned().collect(),
            })
        })
    }

    /// The absolute path of a workspace-relative path.
    pub fn abs(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// Whether `fs_dir` (workspace-relative) is the directory of an external package.
    pub(crate) fn is_external_root(&self, fs_dir: &str) -> bool {
        self.packages.values().any(|dir| dir == fs_dir)
    }

    /// The external package whose directory holds `path` (a path of the main workspace), and
    /// the rest of the path inside it.
    fn external_package_at<'a>(&'a self, path: &'a str) -> Option<(&'a str, &'a str)> {
        self.packages.iter().find_map(|(name, dir)| {
            let rest = path.strip_prefix(dir.as_str())?;
            if rest.is_empty() {
                Some((name.as_str(), ""))
            } else {
                rest.strip_prefix('/').map(|rest| (name.as_str(), rest))
            }
        })
    }
}

/// Reads `[packages]` from the text of `weft.toml`. Other tables are left to whoever owns them.
fn parse_config(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.to_string().trim_end().replace('\n', "\n  "))?;
    let mut packages = BTreeMap::new();
    let Some(section) = table.get("packages") else {
        return Ok(packages);
    };
    let Some(section) = section.as_table() else {
        return Err("`packages` must be a table: `[packages]` with `name = \"dir\"` lines".into());
    };
    for (name, dir) in section {
        if let Err(e) = PackagePath::new(Some(name), "") {
            return Err(format!("`{name}` is not a valid package name: {}", e.kind));
        }
        let Some(dir) = dir.as_str() else {
            return Err(format!(
                "package `{name}` must map to a directory, as `{name} = \"path/to/dir\"`"
            ));
        };
        let dir = dir.trim_end_matches('/');
        if let Err(e) = check_relative_path(dir) {
            return Err(format!(
                "package `{name}`: `{dir}` must be a directory relative to the workspace root: {}",
                e.kind
            ));
        }
        if dir == OUTPUT_DIR_NAME || dir.starts_with(&format!("{OUTPUT_DIR_NAME}/")) {
            return Err(format!(
                "package `{name}`: `{dir}` is inside `{OUTPUT_DIR_NAME}`, where builds write"
            ));
        }
        packages.insert(name.clone(), dir.to_owned());
    }
    Ok(packages)
}

fn canonical(path: &Path) -> Result<PathBuf, FrontendError> {
    path.canonicalize().map_err(|e| io_error(path, &e))
}

pub(crate) fn io_error(path: &Path, error: &std::io::Error) -> FrontendError {
    FrontendError::new(FrontendErrorKind::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    })
}

fn bad_config(path: &Path, message: String) -> FrontendError {
    FrontendError::new(FrontendErrorKind::BadConfig {
        path: path.display().to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config() {
        let ok =
            parse_config("[packages]\ncurl = \"third_party/curl/\"\nz = \"z\"\n[other]\nx = 1\n")
                .expect("valid");
        assert_eq!(ok.get("curl").map(String::as_str), Some("third_party/curl"));
        assert_eq!(ok.len(), 2);
        assert!(parse_config("").expect("empty").is_empty());
        let bad = [
            ("packages = 3", "must be a table"),
            ("[packages]\n\"a b\" = \"x\"", "not a valid package name"),
            ("[packages]\nx = 3", "must map to a directory"),
            ("[packages]\nx = \"../x\"", "relative to the workspace root"),
            ("[packages]\nx = \"/abs\"", "relative to the workspace root"),
            ("[packages]\nx = \"weft-out/x\"", "inside `weft-out`"),
            ("[packages\n", "line 1"),
        ];
        for (text, expected) in bad {
            let err = parse_config(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
