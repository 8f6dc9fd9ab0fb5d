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
