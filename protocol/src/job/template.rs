//! Command templates: strings with `{{OUTPUT_DIR}}`, `{{SOURCE_DIR}}` and `{{DEP:<ref>}}`.
//!
//! A placeholder opens with `{{` and closes with the next `}}`. Everything else is literal text;
//! a lone `}}` is literal too. There is no escape: a command that needs a literal `{{` cannot
//! have one, which no compiler command line does.

use std::fmt;

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    segments: Vec<Segment<'a>>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Text copied as it is.
    Literal(&'a str),
    /// `{{OUTPUT_DIR}}`: the job's own output directory.
    OutputDir,
    /// `{{SOURCE_DIR}}`: the root where the job's inputs appear.
    SourceDir,
    /// `{{DEP:<ref>}}`: the output directory of the dependency that `ref` names.
    ///
    /// In a protocol [`Job`](crate::Job), `ref` is the dependency's [`JobId`](crate::JobId) in
    /// hex. Front ends may use other references (labels, graph IDs) before they resolve them.
    Dep(&'a str),
}

impl<'a> Template<'a> {
    /// Parses `text`. Fails on an unclosed, empty or unknown placeholder.
    pub fn parse(text: &'a str) -> Result<Template<'a>, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Literal(&rest[..open]));
            }
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                return Err(TemplateError::new(
                    TemplateErrorKind::Unclosed,
                    offset + open,
                    text,
                ));
            };
            let inner = &rest[inner_start..inner_start + close];
            let position = offset + open;
            segments.push(match inner {
                "" => return Err(TemplateError::new(TemplateErrorKind::Empty, position, text)),
                "OUTPUT_DIR" => Segment::OutputDir,
                "SOURCE_DIR" => Segment::SourceDir,
                _ => match inner.strip_prefix("DEP:") {
                    Some("") => {
                        return Err(TemplateError::new(
                            TemplateErrorKind::EmptyDep,
                            position,
                            text,
                        ));
                    }
                    Some(dep) if !dep.contains("{{") => Segment::Dep(dep),
                    _ => {
                        let kind = TemplateErrorKind::Unknown(crate::path::shorten(inner));
                        return Err(TemplateError::new(kind, position, text));
                    }
                },
            });
            let consumed = inner_start + close + 2;
            rest = &rest[consumed..];
            offset += consumed;
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest));
        }
        Ok(Template { segments })
    }

    /// The pieces, in order.
    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segments
    }

    /// The `ref` of every `{{DEP:<ref>}}`, in order.
    pub fn deps(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Dep(dep) => Some(*dep),
            _ => None,
        })
    }

    /// Whether the template has no placeholder at all.
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Substitutes every placeholder. `dep` maps a dependency reference to its directory, or
    /// `None` when the reference is unknown, which fails the render.
    pub fn render(
        &self,
        output_dir: &str,
        source_dir: &str,
        mut dep: impl FnMut(&str) -> Option<String>,
    ) -> Result<String, UnknownDep> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::OutputDir => out.push_str(output_dir),
                Segment::SourceDir => out.push_str(source_dir),
                Segment::Dep(reference) => match dep(reference) {
                    Some(dir) => out.push_str(&dir),
                    None => return Err(UnknownDep(crate::path::shorten(reference))),
                },
            }
        }
        Ok(out)
    }

    /// The template's text with each `{{DEP:<ref>}}` written `{{DEP:<new>}}`, where `new` is
    /// what `resolve` makes of `ref`; literals and the other placeholders are kept as they
    /// are. Front ends use it to turn their references (labels, graph IDs) into canonical
    /// ones, and lowering to turn those into [`JobId`](crate::JobId)s. The first error of
    /// `resolve` fails the rewrite.
    pub fn rewrite_deps<T: fmt::Display, E>(
        &self,
        mut resolve: impl FnMut(&'a str) -> Result<T, E>,
    ) -> Result<String, E> {
        use fmt::Write;
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::OutputDir => out.push_str("{{OUTPUT_DIR}}"),
                Segment::SourceDir => out.push_str("{{SOURCE_DIR}}"),
                Segment::Dep(reference) => {
                    let new = resolve(reference)?;
                    // Writing to a `String` cannot fail.
                    let _ = write!(out, "{{{{DEP:{new}}}}}");
                }
            }
        }
        Ok(out)
    }
}

/// A `{{DEP:<ref>}}` whose reference names no dependency of the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{{{{DEP:{0}}}}}` names no dependency of this job")]
pub struct UnknownDep(pub String);

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad template `{text}`: {kind} at byte {position}")]
pub struct TemplateError {
    /// What is wrong.
    pub kind: TemplateErrorKind,
    /// The byte offset of the placeholder's `{{`.
    pub position: usize,
    /// The template, shortened when very long.
    pub text: String,
}

impl TemplateError {
    fn new(kind: TemplateErrorKind, position: usize, text: &str) -> TemplateError {
        TemplateError {
            kind,
            position,
            text: crate::path::shorten(text),
        }
    }
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// A `{{` has no `}}` after it.
    Unclosed,
    /// `{{}}`.
    Empty,
    /// `{{DEP:}}`.
    EmptyDep,
    /// A placeholder that is none of the known ones.
    Unknown(String),
}

impl fmt::Display for TemplateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateErrorKind::Unclosed => f.write_str("`{{` is never closed with `}}`"),
            TemplateErrorKind::Empty => f.write_str("empty placeholder `{{}}`"),
            TemplateErrorKind::EmptyDep => {
                f.write_str("`{{DEP:}}` names no dependency; write `{{DEP:<ref>}}`")
            }
            TemplateErrorKind::Unknown(name) => write!(
                f,
                "unknown placeholder `{{{{{name}}}}}`; the known ones are `{{{{OUTPUT_DIR}}}}`, \
                 `{{{{SOURCE_DIR}}}}` and `{{{{DEP:<ref>}}}}`"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_literals() {
        let t = Template::parse("cc -o {{OUTPUT_DIR}}/a.o {{SOURCE_DIR}}/a.c -I{{DEP:ab12}}}}")
            .expect("valid");
        assert_eq!(
            t.segments(),
            &[
                Segment::Literal("cc -o "),
                Segment::OutputDir,
                Segment::Literal("/a.o "),
                Segment::SourceDir,
                Segment::Literal("/a.c -I"),
                Segment::Dep("ab12"),
                Segment::Literal("}}"),
            ]
        );
        assert_eq!(t.deps().collect::<Vec<_>>(), ["ab12"]);
        let rendered = t.render("/o", "/s", |d| (d == "ab12").then(|| "/d".to_owned()));
        assert_eq!(rendered.as_deref(), Ok("cc -o /o/a.o /s/a.c -I/d}}"));
        assert!(Template::parse("plain").expect("valid").is_literal());
        assert_eq!(Template::parse("").expect("valid").segments(), &[]);
    }

    #[test]
    fn errors_carry_kind_and_position() {
        let cases = [
            ("ab {{OUTPUT_DIR", TemplateErrorKind::Unclosed, 3),
            ("{{}}", TemplateErrorKind::Empty, 0),
            ("x{{DEP:}}", TemplateErrorKind::EmptyDep, 1),
            ("{{OUT}}", TemplateErrorKind::Unknown("OUT".into()), 0),
            (
                "{{OUTPUT_DIR}}{{ SOURCE_DIR }}",
                TemplateErrorKind::Unknown(" SOURCE_DIR ".into()),
                14,
            ),
            (
                "{{DEP:a{{b}}",
                TemplateErrorKind::Unknown("DEP:a{{b".into()),
                0,
            ),
            (
                "{{output_dir}}",
                TemplateErrorKind::Unknown("output_dir".into()),
                0,
            ),
        ];
        for (text, kind, position) in cases {
            let err = Template::parse(text).expect_err(text);
            assert_eq!((err.kind, err.position), (kind, position), "{text}");
        }
        let err = Template::parse("{{OUT}}").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "bad template `{{OUT}}`: unknown placeholder `{{OUT}}`; the known ones are \
             `{{OUTPUT_DIR}}`, `{{SOURCE_DIR}}` and `{{DEP:<ref>}}` at byte 0"
        );
    }

    #[test]
    fn rewrite_deps_changes_only_the_references() {
        let cases: [(&str, Result<&str, &str>); 5] = [
            ("plain text }}", Ok("plain text }}")),
            (
                "-I{{DEP:a}} -o {{OUTPUT_DIR}}/x {{SOURCE_DIR}}/y",
                Ok("-I{{DEP:<a>}} -o {{OUTPUT_DIR}}/x {{SOURCE_DIR}}/y"),
            ),
            ("{{DEP:a}}{{DEP:b}}}}", Ok("{{DEP:<a>}}{{DEP:<b>}}}}")),
            ("", Ok("")),
            ("{{DEP:a}} {{DEP:zz}} {{DEP:yy}}", Err("zz")),
        ];
        for (text, expected) in cases {
            let template = Template::parse(text).expect(text);
            let rewritten = template.rewrite_deps(|reference| match reference {
                "a" | "b" => Ok(format!("<{reference}>")),
                unknown => Err(unknown),
            });
            assert_eq!(rewritten.as_deref().map_err(|e| *e), expected, "{text}");
        }
        // The rewrite of a template with no references is the text itself, parsed or not.
        for text in [
            "{{OUTPUT_DIR}}{{SOURCE_DIR}}",
            "a}}b",
            "x {{SOURCE_DIR}}/}}",
        ] {
            let template = Template::parse(text).expect(text);
            let rewritten = template.rewrite_deps(|_| Err::<String, ()>(()));
            assert_eq!(rewritten.as_deref(), Ok(text));
        }
    }

    #[test]
    fn render_fails_on_unknown_dep() {
        let t = Template::parse("{{DEP:zz}}").expect("valid");
        assert_eq!(t.render("", "", |_| None), Err(UnknownDep("zz".into())));
    }
}
