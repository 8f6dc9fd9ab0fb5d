//! [`TargetPattern`]: what `weft build` and `weft query` accept on the command line.
//!
//! | pattern          | means                                                     |
//! |------------------|-----------------------------------------------------------|
//! | `//...`          | every target of the workspace (not of external packages)  |
//! | `//dir/...`      | every target in `dir` and below                           |
//! | `//dir:all`      | every target of the BUILD file in `dir`                   |
//! | `//dir:name`     | one target; `//dir` is `//dir:dir`                        |
//! | `@pkg//...`      | the same forms, inside an external package                |
//!
//! A pattern that starts with neither `//` nor `@` is relative to the workspace root:
//! `lib/...`, `lib:util` and `...` mean `//lib/...`, `//lib:util` and `//...`.

use std::fmt;

use weft_protocol::{Label, PackagePath};

use super::error::{FrontendError, FrontendErrorKind};

/// A parsed target pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPattern {
    /// `//dir/...`: every target in `dir` and the directories below it.
    Recursive(PackagePath),
    /// `//dir:all`: every target of one BUILD file.
    AllInPackage(PackagePath),
    /// `//dir:name`: one target.
    Target(Label),
}

impl TargetPattern {
    /// Parses `text`; see the module documentation for the forms.
    pub fn parse(text: &str) -> Result<TargetPattern, FrontendError> {
        let bad = |reason: String| {
            FrontendError::new(FrontendErrorKind::BadPattern {
                pattern: text.to_owned(),
                reason,
            })
        };
        let absolute = if text.starts_with("//") || text.starts_with('@') {
            text.to_owned()
        } else if text.starts_with('/') {
            return Err(bad(
                "a pattern starts with `//` (the workspace root), not `/`".into(),
            ));
        } else {
            format!("//{text}")
        };
        let label_error = |e: weft_protocol::LabelError| bad(e.kind.to_string());
        if let Some(prefix) = absolute.strip_suffix("...") {
            let dir_text = if prefix.ends_with("//") {
                prefix
            } else if let Some(dir) = prefix.strip_suffix('/') {
                dir
            } else {
                return Err(bad("`...` must follow `/`, as in `//dir/...`".into()));
            };
            return package_path(dir_text)
                .map(TargetPattern::Recursive)
                .map_err(label_error);
        }
        if let Some(dir_text) = absolute.strip_suffix(":all") {
            return package_path(dir_text)
                .map(TargetPattern::AllInPackage)
                .map_err(label_error);
        }
        Label::parse(&absolute)
            .map(TargetPattern::Target)
            .map_err(label_error)
    }

    /// Whether the pattern matches `label`.
    pub fn matches(&self, label: &Label) -> bool {
        match self {
            TargetPattern::Recursive(dir) => {
                label.package() == dir.package() && is_under(label.path(), dir.path())
            }
            TargetPattern::AllInPackage(dir) => label.package_path() == dir,
            TargetPattern::Target(target) => label == target,
        }
    }
}

impl fmt::Display for TargetPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPattern::Recursive(dir) if dir.path().is_empty() => write!(f, "{dir}..."),
            TargetPattern::Recursive(dir) => write!(f, "{dir}/..."),
            TargetPattern::AllInPackage(dir) => write!(f, "{dir}:all"),
            TargetPattern::Target(label) => write!(f, "{label}"),
        }
    }
}

/// Whether `path` is `dir` or below it (every path is below the root, `""`).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Parses `//path` or `@package//path` (no target).
pub(crate) fn package_path(text: &str) -> Result<PackagePath, weft_protocol::LabelError> {
    let (package, path) = match text.strip_prefix('@') {
        Some(rest) => match rest.split_once("//") {
            Some((package, path)) => (Some(package), path),
            None => (None, text),
        },
        None => (None, text.strip_prefix("//").unwrap_or(text)),
    };
    if package.is_none() && !text.starts_with("//") {
        // Let the label parser explain what is missing.
        return Label::parse(text).map(|label| label.package_path().clone());
    }
    PackagePath::new(package, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases = [
            ("//...", "//..."),
            ("...", "//..."),
            ("//lib/...", "//lib/..."),
            ("lib/...", "//lib/..."),
            ("@curl//...", "@curl//..."),
            ("@curl//src/...", "@curl//src/..."),
            ("//lib:all", "//lib:all"),
            ("//:all", "//:all"),
            ("lib:all", "//lib:all"),
            ("//lib:util", "//lib:util"),
            ("lib:util", "//lib:util"),
            ("//lib", "//lib"),
            ("lib", "//lib"),
            (":main", "//:main"),
            ("@curl//src:lib", "@curl//src:lib"),
        ];
        for (text, shown) in cases {
            let pattern = TargetPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(pattern.to_string(), shown, "{text}");
        }
        for bad in [
            "/lib",
            "//lib...",
            "//a/../b/...",
            "//lib:a b",
            "@//...",
            "//",
        ] {
            let err = TargetPattern::parse(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid target pattern"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn matching() {
        let label = |t: &str| Label::parse(t).expect("valid");
        let pattern = |t: &str| TargetPattern::parse(t).expect("valid");
        assert!(pattern("//...").matches(&label("//a/b:c")));
        assert!(!pattern("//...").matches(&label("@x//a:c")));
        assert!(pattern("//a/...").matches(&label("//a:c")));
        assert!(pattern("//a/...").matches(&label("//a/b:c")));
        assert!(!pattern("//a/...").matches(&label("//ab:c")));
        assert!(pattern("//a:all").matches(&label("//a:c")));
        assert!(!pattern("//a:all").matches(&label("//a/b:c")));
        assert!(pattern("//a").matches(&label("//a:a")));
    }
}
