//! [`Label`]: the name of a target, `@<package>//<path>:<target>`.
//!
//! - With no `@package`, the label names a target of the current workspace.
//! - An empty path names the package root: `//:main`.
//! - With no `:target`, the target is the last path segment: `//src` is `//src:src`.
//! - Package names, path segments and target names are made of ASCII letters, digits and
//!   `_ . + -`, and start with a letter, a digit or `_`. `.` and `..` are never allowed.
//! - Parsing is strict: the `//` is required, and relative forms (`:name`, `name`) are
//!   accepted only by [`Label::parse_relative`], which knows where they were written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest label accepted, in bytes.
pub const MAX_LABEL_LEN: usize = 1024;

/// A directory that holds a BUILD file: a package and a path inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackagePath {
    package: Option<String>,
    path: String,
}

/// A fully qualified target name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    dir: PackagePath,
    target: String,
}

impl PackagePath {
    /// The directory `path` (segments joined by `/`, empty for the root) of `package` (`None`
    /// for the current workspace). Both are checked as a label's parts are.
    pub fn new(package: Option<&str>, path: &str) -> Result<PackagePath, LabelError> {
        let text = match package {
            Some(package) => format!("@{package}//{path}"),
            None => format!("//{path}"),
        };
        let mut parser = Parser::new(&text)?;
        let dir = parser.package_path()?;
        if parser.rest() != "" {
            return Err(parser.error(LabelErrorKind::BadPathChar(':'), parser.pos));
        }
        Ok(dir)
    }

    /// The package name, without `@`; `None` for the current workspace.
    pub fn package(&self) -> Option<&str> {
        self.package.as_deref()
    }

    /// The path inside the package, segments joined by `/`; empty for the package root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The label of `target` in this directory. `target` is checked.
    pub fn label(&self, target: &str) -> Result<Label, LabelError> {
        let text = format!("{self}:{target}");
        let mut parser = Parser::new(&text)?;
        parser.pos = text.len() - target.len();
        let target = parser.target()?;
        Ok(Label {
            dir: self.clone(),
            target,
        })
    }
}

impl fmt::Display for PackagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(package) = &self.package {
            write!(f, "@{package}")?;
        }
        write!(f, "//{}", self.path)
    }
}

impl Label {
    /// Parses an absolute label: `//path:target`, `//path`, `@package//path:target`...
    pub fn parse(text: &str) -> Result<Label, LabelError> {
        let mut parser = Parser::new(text)?;
        if text.starts_with(':') || !text.contains('/') && !text.starts_with('@') {
            return Err(parser.error(LabelErrorKind::Relative, 0));
        }
        let dir = parser.package_path()?;
        let target = if parser.eat(':') {
            parser.target()?
        } else {
            match dir.path.rsplit('/').next() {
                Some(last) if !last.is_empty() => last.to_owned(),
                _ => return Err(parser.error(LabelErrorKind::NoTarget, parser.pos)),
            }
        };
        Ok(Label { dir, target })
    }

    /// Parses a label written inside the BUILD file of `current`: an absolute label, `:name`
    /// or a bare `name`, the last two naming a target in `current`.
    pub fn parse_relative(text: &str, current: &PackagePath) -> Result<Label, LabelError> {
        if text.starts_with("//") || text.starts_with('@') {
            return Label::parse(text);
        }
        let mut parser = Parser::new(text)?;
        if let Some(slash) = text.find('/') {
            return Err(parser.error(LabelErrorKind::RelativePath, slash));
        }
        parser.eat(':');
        let target = parser.target()?;
        Ok(Label {
            dir: current.clone(),
            target,
        })
    }

    /// The package name, without `@`; `None` for the current workspace.
    pub fn package(&self) -> Option<&str> {
        self.dir.package()
    }

    /// The path inside the package; empty for the package root.
    pub fn path(&self) -> &str {
        self.dir.path()
    }

    /// The directory the target is declared in.
    pub fn package_path(&self) -> &PackagePath {
        &self.dir
    }

    /// The target name.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// The canonical form: `@package` only when there is one, and `:target` only when it differs
/// from the last path segment. [`Label::parse`] reads it back to the same label.
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dir)?;
        if self.dir.path.rsplit('/').next() != Some(self.target.as_str()) {
            write!(f, ":{}", self.target)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

impl FromStr for Label {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<Label, LabelError> {
        Label::parse(text)
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Label, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Label::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A label that does not parse: what is wrong, where, and in which text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label `{text}`: {kind} (at byte {position})")]
pub struct LabelError {
    /// What is wrong.
    pub kind: LabelErrorKind,
    /// The byte offset where it went wrong.
    pub position: usize,
    /// The text that was parsed, shortened when very long.
    pub text: String,
}

/// What is wrong with a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelErrorKind {
    /// The text is empty.
    Empty,
    /// The text is longer than [`MAX_LABEL_LEN`].
    TooLong,
    /// A relative form (`:name`, `name`) where an absolute label was required.
    Relative,
    /// A relative form with a path (`a/b:c`), which is ambiguous.
    RelativePath,
    /// There is no `//` after the package.
    MissingDoubleSlash,
    /// Something other than `@package` comes before `//`.
    PackageWithoutAt,
    /// `@` with no name before `//`.
    EmptyPackage,
    /// A character that cannot appear in a package name.
    BadPackageChar(char),
    /// An empty path segment: `//a//b`, or a trailing `/`.
    EmptySegment,
    /// A `.` or `..` path segment.
    DotSegment,
    /// A character that cannot appear in a path segment.
    BadPathChar(char),
    /// `:` with no name after it.
    EmptyTarget,
    /// A character that cannot appear in a target name.
    BadTargetChar(char),
    /// A target named `.` or `..`.
    DotTarget,
    /// A label of a package root with no `:target`, such as `//` or `@curl//`.
    NoTarget,
}

impl fmt::Display for LabelErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelErrorKind::Empty => f.write_str("a label cannot be empty"),
            LabelErrorKind::TooLong => write!(f, "a label has at most {MAX_LABEL_LEN} bytes"),
            LabelErrorKind::Relative => f.write_str(
                "a relative label is not allowed here; write it in full, as `//path:target`",
            ),
            LabelErrorKind::RelativePath => {
                f.write_str("a label with a path must start with `//`, as `//path:target`")
            }
            LabelErrorKind::MissingDoubleSlash => {
                f.write_str("expected `//` after the package, as in `@package//path:target`")
            }
            LabelErrorKind::PackageWithoutAt => f.write_str(
                "only `@package` can come before `//`; write `@name//...` or start with `//`",
            ),
            LabelErrorKind::EmptyPackage => f.write_str("`@` must be followed by a package name"),
            LabelErrorKind::BadPackageChar(c) => write!(
                f,
                "{} cannot appear in a package name (allowed: letters, digits, `_ . + -`)",
                Quoted(*c)
            ),
            LabelErrorKind::EmptySegment => {
                f.write_str("empty path segment (`//` inside the path, or a trailing `/`)")
            }
            LabelErrorKind::DotSegment => f.write_str("`.` and `..` are not allowed in a path"),
            LabelErrorKind::BadPathChar(c) => write!(
                f,
                "{} cannot appear in a path segment (allowed: letters, digits, `_ . + -`)",
                Quoted(*c)
            ),
            LabelErrorKind::EmptyTarget => f.write_str("`:` must be followed by a target name"),
            LabelErrorKind::BadTargetChar(c) => write!(
                f,
                "{} cannot appear in a target name (allowed: letters, digits, `_ . + -`)",
                Quoted(*c)
            ),
            LabelErrorKind::DotTarget => f.write_str("a target cannot be named `.` or `..`"),
            LabelErrorKind::NoTarget => {
                f.write_str("a package root has no default target; name one, as in `//:main`")
            }
        }
    }
}

/// A character in an error message: printable ones in backticks, others escaped.
struct Quoted(char);

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_control() || self.0.is_whitespace() {
            write!(f, "{:?}", self.0)
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Parser<'a>, LabelError> {
        let parser = Parser { text, pos: 0 };
        if text.is_empty() {
            return Err(parser.error(LabelErrorKind::Empty, 0));
        }
        if text.len() > MAX_LABEL_LEN {
            return Err(parser.error(LabelErrorKind::TooLong, MAX_LABEL_LEN));
        }
        Ok(parser)
    }

    fn error(&self, kind: LabelErrorKind, position: usize) -> LabelError {
        LabelError {
            kind,
            position,
            text: crate::path::shorten(self.text),
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// `[@package]//path`, leaving `pos` at the `:` or the end.
    fn package_path(&mut self) -> Result<PackagePath, LabelError> {
        let package = if self.eat('@') {
            let start = self.pos;
            let end = match self.rest().find('/') {
                Some(slash) => start + slash,
                None => return Err(self.error(LabelErrorKind::MissingDoubleSlash, self.text.len())),
            };
            let name = &self.text[start..end];
            if name.is_empty() {
                return Err(self.error(LabelErrorKind::EmptyPackage, start));
            }
            self.check_name(name, start, LabelErrorKind::BadPackageChar)?;
            self.pos = end;
            Some(name.to_owned())
        } else {
            None
        };
        if !self.rest().starts_with("//") {
            let kind = match (package.is_some(), self.rest().find("//")) {
                (false, Some(_)) => LabelErrorKind::PackageWithoutAt,
                _ => LabelErrorKind::MissingDoubleSlash,
            };
            return Err(self.error(kind, self.pos));
        }
        self.pos += 2;
        let start = self.pos;
        let end = self
            .rest()
            .find(':')
            .map_or(self.text.len(), |colon| start + colon);
        let path = &self.text[start..end];
        if !path.is_empty() {
            let mut segment_start = start;
            for segment in path.split('/') {
                match segment {
                    "" => return Err(self.error(LabelErrorKind::EmptySegment, segment_start)),
                    "." | ".." => {
                        return Err(self.error(LabelErrorKind::DotSegment, segment_start));
                    }
                    _ => self.check_name(segment, segment_start, LabelErrorKind::BadPathChar)?,
                }
                segment_start += segment.len() + 1;
            }
        }
        self.pos = end;
        Ok(PackagePath {
            package,
            path: path.to_owned(),
        })
    }

    /// A target name, running to the end of the text.
    fn target(&mut self) -> Result<String, LabelError> {
        let start = self.pos;
        let name = self.rest();
        match name {
            "" => return Err(self.error(LabelErrorKind::EmptyTarget, start)),
            "." | ".." => return Err(self.error(LabelErrorKind::DotTarget, start)),
            _ => self.check_name(name, start, LabelErrorKind::BadTargetChar)?,
        }
        self.pos = self.text.len();
        Ok(name.to_owned())
    }

    fn check_name(
        &self,
        name: &str,
        start: usize,
        kind: fn(char) -> LabelErrorKind,
    ) -> Result<(), LabelError> {
        for (offset, c) in name.char_indices() {
            let allowed = c.is_ascii_alphanumeric()
                || c == '_'
                || (offset > 0 && matches!(c, '.' | '+' | '-'));
            if !allowed {
                return Err(self.error(kind(c), start + offset));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LabelErrorKind::*;

    #[test]
    fn seed_examples_and_defaults() {
        // (input, package, path, target, canonical display)
        let cases: &[(&str, Option<&str>, &str, &str, &str)] = &[
            ("//:main", None, "", "main", "//:main"),
            ("//src", None, "src", "src", "//src"),
            ("//src:src", None, "src", "src", "//src"),
            ("@curl//:main", Some("curl"), "", "main", "@curl//:main"),
            (
                "@curl//src:lib",
                Some("curl"),
                "src",
                "lib",
                "@curl//src:lib",
            ),
            (
                "@curl//crypto",
                Some("curl"),
                "crypto",
                "crypto",
                "@curl//crypto",
            ),
            ("//a/b/c:d.o", None, "a/b/c", "d.o", "//a/b/c:d.o"),
            ("//a/b/c", None, "a/b/c", "c", "//a/b/c"),
            (
                "@zlib-ng//x_1:lib+x",
                Some("zlib-ng"),
                "x_1",
                "lib+x",
                "@zlib-ng//x_1:lib+x",
            ),
            ("//_x/1a:2", None, "_x/1a", "2", "//_x/1a:2"),
        ];
        for (text, package, path, target, display) in cases {
            let label = Label::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(label.package(), *package, "{text}");
            assert_eq!(label.path(), *path, "{text}");
            assert_eq!(label.target(), *target, "{text}");
            assert_eq!(label.to_string(), *display, "{text}");
            assert_eq!(
                Label::parse(&label.to_string()),
                Ok(label),
                "{text} round trip"
            );
        }
    }

    #[test]
    fn invalid_labels_name_kind_and_position() {
        let long = format!("//{}", "a".repeat(MAX_LABEL_LEN));
        let cases: &[(&str, LabelErrorKind, usize)] = &[
            ("", Empty, 0),
            (&long, TooLong, MAX_LABEL_LEN),
            (":main", Relative, 0),
            ("main", Relative, 0),
            ("src:lib", Relative, 0),
            ("@curl", MissingDoubleSlash, 5),
            ("@curl/src", MissingDoubleSlash, 5),
            ("@curl:lib", MissingDoubleSlash, 9),
            ("/src", MissingDoubleSlash, 0),
            ("a//b", PackageWithoutAt, 0),
            ("curl//src", PackageWithoutAt, 0),
            ("@//src", EmptyPackage, 1),
            ("@cu rl//src", BadPackageChar(' '), 3),
            ("@cu$rl//src", BadPackageChar('$'), 3),
            ("@-curl//src", BadPackageChar('-'), 1),
            ("@.curl//src", BadPackageChar('.'), 1),
            ("@cürl//src", BadPackageChar('ü'), 2),
            ("///src", EmptySegment, 2),
            ("//a//b", EmptySegment, 4),
            ("//a/", EmptySegment, 4),
            ("//a/:x", EmptySegment, 4),
            ("//./a", DotSegment, 2),
            ("//a/..", DotSegment, 4),
            ("//a/../b:c", DotSegment, 4),
            ("@curl//..", DotSegment, 7),
            ("//a b", BadPathChar(' '), 3),
            ("//a\tb", BadPathChar('\t'), 3),
            ("//a\\b", BadPathChar('\\'), 3),
            ("//.hidden", BadPathChar('.'), 2),
            ("//src:", EmptyTarget, 6),
            ("//:", EmptyTarget, 3),
            ("//src:a:b", BadTargetChar(':'), 7),
            ("//src:a/b", BadTargetChar('/'), 7),
            ("//src:a b", BadTargetChar(' '), 7),
            ("//src:-a", BadTargetChar('-'), 6),
            ("//src:..", DotTarget, 6),
            ("//src:.", DotTarget, 6),
            ("//", NoTarget, 2),
            ("@curl//", NoTarget, 7),
            ("//src\0", BadPathChar('\0'), 5),
            ("//src:lib\n", BadTargetChar('\n'), 9),
        ];
        assert!(cases.len() >= 30);
        for (text, kind, position) in cases {
            let err = Label::parse(text).expect_err(text);
            assert_eq!(
                (err.kind, err.position),
                (*kind, *position),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains("invalid label"), "{err}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        let err = Label::parse("//a/../b:c").expect_err("dot segment");
        assert_eq!(
            err.to_string(),
            "invalid label `//a/../b:c`: `.` and `..` are not allowed in a path (at byte 4)"
        );
        let err = Label::parse("//a b").expect_err("space");
        assert_eq!(
            err.to_string(),
            "invalid label `//a b`: ' ' cannot appear in a path segment (allowed: letters, \
             digits, `_ . + -`) (at byte 3)"
        );
    }

    #[test]
    fn relative_forms_need_a_location() {
        let here = PackagePath::new(Some("curl"), "src/tls").expect("valid dir");
        let cases = [
            (":lib", "@curl//src/tls:lib"),
            ("lib", "@curl//src/tls:lib"),
            ("tls", "@curl//src/tls"),
            ("//other:x", "//other:x"),
            ("@z//:y", "@z//:y"),
        ];
        for (text, expected) in cases {
            let label = Label::parse_relative(text, &here).expect(text);
            assert_eq!(label.to_string(), expected, "{text}");
        }
        let bad = [
            ("a/b:c", RelativePath, 1),
            (":", EmptyTarget, 1),
            ("", Empty, 0),
            ("a:b", BadTargetChar(':'), 1),
        ];
        for (text, kind, position) in bad {
            let err = Label::parse_relative(text, &here).expect_err(text);
            assert_eq!((err.kind, err.position), (kind, position), "{text}");
        }
    }

    #[test]
    fn package_paths_are_checked() {
        assert_eq!(PackagePath::new(None, "").expect("root").to_string(), "//");
        assert_eq!(
            PackagePath::new(Some("x"), "a/b")
                .expect("valid")
                .label("c")
                .expect("valid")
                .to_string(),
            "@x//a/b:c"
        );
        assert_eq!(
            PackagePath::new(None, "a/../b").map_err(|e| e.kind),
            Err(DotSegment)
        );
        assert_eq!(
            PackagePath::new(None, "a:b").map_err(|e| e.kind),
            Err(BadPathChar(':'))
        );
        let root = PackagePath::new(None, "").expect("root");
        assert_eq!(
            root.label("x y").map_err(|e| e.kind),
            Err(BadTargetChar(' '))
        );
    }
}
