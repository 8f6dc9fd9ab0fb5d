//! `weft team distrust NODE` and `weft team trust NODE`: the owner's verdict on a node,
//! carried out by the engine (see `engine/disown.rs`).

use std::sync::Arc;

use weft_protocol::TrustStatement;
use weft_protocol::wire::{DaemonMessage, VerdictRequest};

use super::super::conn::{ConnError, ConnWriter};
use super::super::disown::NodeRef;
use super::super::shared::Shared;
use super::reply::send_error;

/// A reason longer than a statement may carry.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the reason is {0} bytes long, more than the {max} a statement may carry; shorten `--reason`",
    max = TrustStatement::MAX_REASON
)]
pub(crate) struct ReasonTooLong(usize);

/// Serves a verdict: what it did, or why it did not take.
pub(crate) async fn verdict(
    shared: &Arc<Shared>,
    request: VerdictRequest,
    writer: &mut ConnWriter,
) -> Result<(), ConnError> {
    let node = match NodeRef::parse(&request.node) {
        Ok(node) => node,
        Err(e) => return send_error(writer, &e).await,
    };
    let reason = request.reason.trim().to_owned();
    if reason.len() > TrustStatement::MAX_REASON {
        return send_error(writer, &ReasonTooLong(reason.len())).await;
    }
    match shared.engine.verdict(node, request.verdict, reason).await {
        Ok(report) => writer.send(&DaemonMessage::Verdict(report)).await,
        Err(e) => send_error(writer, &e).await,
    }
}
