//! Workspace-relative paths, as they appear in jobs, results and trees.
//!
//! A path that arrives from a BUILD file or from a peer names a file *inside* some directory
//! (the source root, an output directory). Everything that joins such a path onto a real
//! directory checks it here first, so that no input can reach outside.

use std::fmt;

/// The longest relative path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Checks that `path` is a normalized relative path: non-empty segments separated by `/`, no
/// `.` or `..`, no leading `/`, no NUL, at most [`MAX_PATH_LEN`] bytes.
pub fn check_relative_path(path: &str) -> Result<(), PathError> {
    let err = |kind| {
        Err(PathError {
            path: shorten(path),
            kind,
        })
    };
    if path.is_empty() {
        return err(PathErrorKind::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return err(PathErrorKind::TooLong);
    }
    if path.starts_with('/') {
        return err(PathErrorKind::Absolute);
    }
    if path.contains('\0') {
        return err(PathErrorKind::Nul);
    }
    for segment in path.split('/') {
        match segment {
            "" => return err(PathErrorKind::EmptySegment),
            "." | ".." => return err(PathErrorKind::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `name` is a single path segment: what [`check_relative_path`] accepts, without `/`.
pub fn check_file_name(name: &str) -> Result<(), PathError> {
    check_relative_path(name)?;
    if name.contains('/') {
        return Err(PathError {
            path: shorten(name),
            kind: PathErrorKind::NotASingleName,
        });
    }
    Ok(())
}

/// A path that [`check_relative_path`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad relative path `{path}`: {kind}")]
pub struct PathError {
    /// The offending path, shortened when very long.
    pub path: String,
    /// What is wrong with it.
    pub kind: PathErrorKind,
}

/// What is wrong with a relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathErrorKind {
    /// The path is empty.
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// The path starts with `/`.
    Absolute,
    /// The path contains a NUL byte.
    Nul,
    /// The path has an empty segment (`a//b`, or a trailing `/`).
    EmptySegment,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// A single file name was expected, but the path has a `/`.
    NotASingleName,
}

impl fmt::Display for PathErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathErrorKind::Empty => "it is empty",
            PathErrorKind::TooLong => "it is longer than 4096 bytes",
            PathErrorKind::Absolute => "it is absolute; paths here are relative to a directory",
            PathErrorKind::Nul => "it contains a NUL byte",
            PathErrorKind::EmptySegment => "it has an empty segment (`//` or a trailing `/`)",
            PathErrorKind::DotSegment => "`.` and `..` segments are not allowed",
            PathErrorKind::NotASingleName => "a single file name was expected, without `/`",
        })
    }
}

/// `text`, cut to a length that is reasonable to show in an error.
pub(crate) fn shorten(text: &str) -> String {
    const SHOWN: usize = 200;
    if text.len() <= SHOWN {
        return text.to_owned();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for good in ["a", "a/b", "src/lib.c", ".hidden/x", "a..b", "..a"] {
            assert_eq!(check_relative_path(good), Ok(()), "{good}");
        }
        let bad = [
            ("", PathErrorKind::Empty),
            ("/etc/passwd", PathErrorKind::Absolute),
            ("a//b", PathErrorKind::EmptySegment),
            ("a/", PathErrorKind::EmptySegment),
            ("./a", PathErrorKind::DotSegment),
            ("a/../../b", PathErrorKind::DotSegment),
            ("..", PathErrorKind::DotSegment),
            ("a\0b", PathErrorKind::Nul),
        ];
        for (path, kind) in bad {
            assert_eq!(
                check_relative_path(path).map_err(|e| e.kind),
                Err(kind),
                "{path:?}"
            );
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert_eq!(
            check_relative_path(&long).map_err(|e| e.kind),
            Err(PathErrorKind::TooLong)
        );
        assert_eq!(
            check_file_name("a/b").map_err(|e| e.kind),
            Err(PathErrorKind::NotASingleName)
        );
    }
}
