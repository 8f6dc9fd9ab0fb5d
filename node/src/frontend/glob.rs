//! `glob(include, exclude=[])`: files below a BUILD file's directory that match patterns.
//!
//! - Patterns are relative to the BUILD file's directory and use `/` between segments.
//! - `*` matches any run of characters within a segment and `?` one character; neither matches
//!   a leading `.` (as in a shell), so hidden files are matched only by patterns that spell the
//!   dot. `**` as a whole segment matches zero or more directories.
//! - Only files match, never directories. Links to files count as files; links to directories
//!   are not followed.
//! - The walk never enters a subdirectory with its own BUILD file (it belongs to that
//!   package), a hidden directory through `**`, `weft-out/` at the root, or the directory of
//!   an external package.
//! - The result is sorted and has no duplicates. A path matched by any `exclude` pattern is
//!   left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::files::{EntryKind, FsCache};

/// One segment of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`.
    AnyDirs,
    /// A name that may hold `*` and `?`.
    Name(Vec<char>),
}

/// A parsed glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GlobPattern {
    segments: Vec<Segment>,
}

impl GlobPattern {
    /// Parses `text`, refusing patterns that could reach outside the directory.
    pub(crate) fn parse(text: &str) -> Result<GlobPattern, String> {
        if text.is_empty() {
            return Err("a glob pattern cannot be empty".into());
        }
        if text.starts_with('/') {
            return Err(format!(
                "glob pattern `{text}` is absolute; patterns are relative to the BUILD file's \
                 directory"
            ));
        }
        let mut segments = Vec::new();
        for segment in text.split('/') {
            match segment {
                "" => {
                    return Err(format!(
                        "glob pattern `{text}` has an empty segment (`//` or a trailing `/`)"
                    ));
                }
                "." | ".." => {
                    return Err(format!(
                        "glob pattern `{text}`: `.` and `..` are not allowed; a glob sees only \
                         its own package"
                    ));
                }
                "**" => {
                    // `**/**` means the same as `**`, and walking it twice would be slow.
                    if segments.last() != Some(&Segment::AnyDirs) {
                        segments.push(Segment::AnyDirs);
                    }
                }
                name if name.contains("**") => {
                    return Err(format!(
                        "glob pattern `{text}`: `**` must be a whole segment, as in `a/**/b.c`"
                    ));
                }
                name => segments.push(Segment::Name(name.chars().collect())),
            }
        }
        if segments.last() == Some(&Segment::AnyDirs) {
            // A trailing `**` matches every file below: `**/*`.
            segments.push(Segment::Name(vec!['*']));
        }
        Ok(GlobPattern { segments })
    }

    /// Whether the relative path `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        matches_parts(&self.segments, &parts)
    }
}

fn matches_parts(segments: &[Segment], parts: &[&str]) -> bool {
    match segments.split_first() {
        None => parts.is_empty(),
        Some((Segment::AnyDirs, rest)) => {
            // Zero directories, or one (not hidden) and `**` again.
            matches_parts(rest, parts)
                || parts.split_first().is_some_and(|(dir, more)| {
                    !more.is_empty() && !dir.starts_with('.') && matches_parts(segments, more)
                })
        }
        Some((Segment::Name(pattern), rest)) => parts
            .split_first()
            .is_some_and(|(name, more)| name_matches(pattern, name) && matches_parts(rest, more)),
    }
}

/// Whether `name` matches a segment pattern with `*` and `?`. A wildcard never matches a
/// leading `.`.
pub(crate) fn name_matches(pattern: &[char], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    if name.first() == Some(&'.') && pattern.first() != Some(&'.') {
        return false;
    }
    // Greedy matching with backtracking to the last `*`: linear for a single `*`, and at
    // worst pattern × name.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Where a glob runs and what it must not enter.
pub(crate) struct GlobRoot<'a> {
    pub(crate) fs: &'a FsCache,
    /// The BUILD file's directory, absolute.
    pub(crate) dir: PathBuf,
    /// Workspace-relative directories never entered (`weft-out`, external packages), checked
    /// against `ws_dir`-joined paths.
    pub(crate) skip: &'a dyn Fn(&str) -> bool,
    /// The BUILD file's directory, workspace-relative.
    pub(crate) ws_dir: String,
}

/// Runs `glob(include, exclude)` below `root`. Returns paths relative to the BUILD file's
/// directory, sorted.
pub(crate) fn glob(
    root: &GlobRoot<'_>,
    include: &[GlobPattern],
    exclude: &[GlobPattern],
) -> Vec<String> {
    let mut found = BTreeSet::new();
    for pattern in include {
        walk(root, &root.dir, "", &pattern.segments, &mut found);
    }
    found
        .into_iter()
        .filter(|path| !exclude.iter().any(|e| e.matches(path)))
        .collect()
}

fn walk(
    root: &GlobRoot<'_>,
    abs: &Path,
    rel: &str,
    segments: &[Segment],
    found: &mut BTreeSet<String>,
) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let listing = root.fs.list(abs);
    match first {
        Segment::AnyDirs => {
            walk(root, abs, rel, rest, found);
            for entry in listing.iter() {
                if entry.kind == EntryKind::Dir && !entry.name.starts_with('.') {
                    let sub_rel = join(rel, &entry.name);
                    let sub_abs = abs.join(&entry.name);
                    if enterable(root, &sub_abs, &sub_rel) {
                        walk(root, &sub_abs, &sub_rel, segments, found);
                    }
                }
            }
        }
        Segment::Name(pattern) => {
            for entry in listing.iter() {
                if !name_matches(pattern, &entry.name) {
                    continue;
                }
                match (entry.kind, rest.is_empty()) {
                    (EntryKind::File, true) => {
                        found.insert(join(rel, &entry.name));
                    }
                    (EntryKind::Dir, false) => {
                        let sub_rel = join(rel, &entry.name);
                        let sub_abs = abs.join(&entry.name);
                        if enterable(root, &sub_abs, &sub_rel) {
                            walk(root, &sub_abs, &sub_rel, rest, found);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn enterable(root: &GlobRoot<'_>, abs: &Path, rel: &str) -> bool {
    !(root.skip)(&join(&root.ws_dir, rel)) && root.fs.build_file_name(abs).is_none()
}

fn join(dir: &str, name: &str) -> String {
    super::error::join_path(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> GlobPattern {
        GlobPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn segment_wildcards() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let cases = [
            ("*.c", "a.c", true),
            ("*.c", "a.h", false),
            ("*.c", ".a.c", false),
            (".*.c", ".a.c", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("*x*", "x", true),
            ("lib*.a", "libutil.a", true),
            ("ab", "abc", false),
        ];
        for (p, name, expected) in cases {
            assert_eq!(name_matches(&chars(p), name), expected, "{p} {name}");
        }
    }

    #[test]
    fn path_matching() {
        let cases = [
            ("**/*.c", "a.c", true),
            ("**/*.c", "x/y/a.c", true),
            ("**/*.c", ".x/a.c", false),
            ("x/**/a.c", "x/a.c", true),
            ("x/**/a.c", "x/y/z/a.c", true),
            ("x/**", "x/y/z/a.c", true),
            ("x/**", "x", false),
            ("*.c", "x/a.c", false),
            ("**/**/*.h", "a/b.h", true),
        ];
        for (p, path, expected) in cases {
            assert_eq!(pattern(p).matches(path), expected, "{p} {path}");
        }
    }

    #[test]
    fn bad_patterns() {
        for (text, expected) in [
            ("", "empty"),
            ("/a", "absolute"),
            ("a//b", "empty segment"),
            ("../a", "`..`"),
            ("a/./b", "`.`"),
            ("a**", "whole segment"),
        ] {
            let err = GlobPattern::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
