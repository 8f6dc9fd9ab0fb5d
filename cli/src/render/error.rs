//! Errors as `weft` reports them on stderr: a request the daemon refused, or one that could
//! not be made.

use weft_protocol::wire::ErrorReport;

use super::lines::text;

/// A request the daemon refused, with its reason.
pub(crate) fn refusal_text(report: &ErrorReport) -> String {
    text(vec![format!("error: {}", report.message)])
}

/// An error of this process, with its whole chain of causes on one line.
pub(crate) fn error_text(error: &anyhow::Error) -> String {
    text(vec![format!("error: {error:#}")])
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use expect_test::expect;

    use super::*;

    #[test]
    fn a_refusal() {
        let report = ErrorReport {
            message: "BUILD:3: invalid label `//a b`: a target name cannot hold ` ` (at byte 3)"
                .into(),
        };
        expect![[r#"
            error: BUILD:3: invalid label `//a b`: a target name cannot hold ` ` (at byte 3)
        "#]]
        .assert_eq(&refusal_text(&report));
    }

    #[test]
    fn an_error_with_its_causes() {
        let error = Err::<(), _>(anyhow::anyhow!("no such file or directory"))
            .context("cannot read `/work/app/weft.toml`")
            .context("cannot load the workspace")
            .expect_err("an error");
        expect![[r#"
            error: cannot load the workspace: cannot read `/work/app/weft.toml`: no such file or directory
        "#]]
        .assert_eq(&error_text(&error));
    }
}
