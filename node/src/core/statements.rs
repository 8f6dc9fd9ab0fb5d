//! [`Statements`]: the signed statements on who is disowned that this node issued or heard, and
//! which of them it follows ([`FollowDistrust`]).
//!
//! The rules, all here:
//! - this node's own word about a node is final here: a statement it issued counts over any
//!   it heard, whatever their stamps;
//! - otherwise, with `follow_distrust = "any"`, the statement heard last by the team's order
//!   ([`TrustStatement::supersedes`]) counts; with `"never"`, none heard does;
//! - a statement about this node, one whose issuer is its subject, one with an overlong
//!   reason, and one stamped too far ahead of this node's clock are ignored; so is one that
//!   does not supersede what is known from the same side (own or heard).
//!
//! The driver checks each statement's signature and that its issuer is not disowned here
//! before it calls [`Statements::record`], and carries out what changed (a node disowned or
//! taken back). Every statement known is kept, followed or not, and sent on to newcomers.

use std::collections::BTreeMap;

use weft_protocol::{NodeId, TrustStatement, Verdict};

/// Whose distrusts this node follows (`follow_distrust` in `config.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FollowDistrust {
    /// Any team member's (the default): a teammate's `weft team distrust` applies here too.
    #[default]
    Any,
    /// Only this node's own.
    Never,
}

/// Why a statement changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// It is about this node.
    #[error("it is about this node")]
    AboutThisNode,
    /// Its issuer speaks of itself.
    #[error("its issuer is its subject")]
    AboutItsIssuer,
    /// Its reason is longer than [`TrustStatement::MAX_REASON`].
    #[error("its reason is too long")]
    ReasonTooLong,
    /// It is stamped later than this node allows.
    #[error("it is stamped in the future")]
    FromTheFuture,
    /// A statement that supersedes it (or it itself) is known.
    #[error("a later statement about the same node is known")]
    Superseded,
}

/// What a recorded statement changed: the subject's standing here before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The node.
    pub subject: NodeId,
    /// Whether it was disowned here before.
    pub was_distrusted: bool,
    /// Whether it is now.
    pub distrusted: bool,
}

/// The statements this node issued and heard, by subject.
#[derive(Debug, Clone)]
pub struct Statements {
    node: NodeId,
    follow: FollowDistrust,
    own: BTreeMap<NodeId, TrustStatement>,
    heard: BTreeMap<NodeId, TrustStatement>,
}

impl Statements {
    /// How far ahead of this node's clock a statement may be stamped: clocks differ, but not
    /// by a day, and a statement stamped far ahead could never be superseded.
    pub const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;

    /// No statements yet, for node `node`.
    pub fn new(node: NodeId, follow: FollowDistrust) -> Statements {
        Statements {
            node,
            follow,
            own: BTreeMap::new(),
            heard: BTreeMap::new(),
        }
    }

    /// The stamp for a new statement of this node's about `subject`, at `now_ms` on its
    /// clock: at least one more than any statement about `subject` known here.
    pub fn next_stamp(&self, subject: &NodeId, now_ms: u64) -> u64 {
        [self.own.get(subject), self.heard.get(subject)]
            .into_iter()
            .flatten()
            .map(|s| s.issued_at.saturating_add(1))
            .fold(now_ms, u64::max)
    }

    /// Records `statement`, whose signature the driver checked, at `now_ms` on this node's
    /// clock (`u64::MAX` for statements read back from this node's own file).
    pub fn record(&mut self, statement: TrustStatement, now_ms: u64) -> Result<Change, Ignored> {
        let subject = statement.subject;
        if subject == self.node {
            return Err(Ignored::AboutThisNode);
        }
        if statement.issuer == subject {
            return Err(Ignored::AboutItsIssuer);
        }
        if statement.reason.len() > TrustStatement::MAX_REASON {
            return Err(Ignored::ReasonTooLong);
        }
        if statement.issued_at > now_ms.saturating_add(Self::MAX_AHEAD_MS) {
            return Err(Ignored::FromTheFuture);
        }
        let was_distrusted = self.is_distrusted(&subject);
        let side = if statement.issuer == self.node {
            &mut self.own
        } else {
            &mut self.heard
        };
        if side
            .get(&subject)
            .is_some_and(|known| !statement.supersedes(known))
        {
            return Err(Ignored::Superseded);
        }
        side.insert(subject, statement);
        Ok(Change {
            subject,
            was_distrusted,
            distrusted: self.is_distrusted(&subject),
        })
    }

    /// The statement that counts here about `subject`, if any.
    pub fn in_force(&self, subject: &NodeId) -> Option<&TrustStatement> {
        self.own.get(subject).or(match self.follow {
            FollowDistrust::Any => self.heard.get(subject),
            FollowDistrust::Never => None,
        })
    }

    /// Whether `subject` is disowned here by a statement.
    pub fn is_distrusted(&self, subject: &NodeId) -> bool {
        self.in_force(subject)
            .is_some_and(|s| s.verdict == Verdict::Distrust)
    }

    /// The nodes disowned here by a statement, sorted.
    pub fn distrusted(&self) -> Vec<NodeId> {
        let subjects: std::collections::BTreeSet<&NodeId> =
            self.own.keys().chain(self.heard.keys()).collect();
        subjects
            .into_iter()
            .filter(|s| self.is_distrusted(s))
            .copied()
            .collect()
    }

    /// Every node a statement known here is about, sorted.
    pub fn subjects(&self) -> Vec<NodeId> {
        let subjects: std::collections::BTreeSet<NodeId> =
            self.own.keys().chain(self.heard.keys()).copied().collect();
        subjects.into_iter().collect()
    }

    /// Every statement known here, this node's first, each side by subject: what is kept on
    /// disk and sent to newcomers.
    pub fn statements(&self) -> Vec<TrustStatement> {
        self.own
            .values()
            .chain(self.heard.values())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::Signature;

    use super::*;

    const ME: NodeId = NodeId([1; 32]);
    const X: NodeId = NodeId([9; 32]);

    fn said(issuer: u8, verdict: Verdict, issued_at: u64) -> TrustStatement {
        TrustStatement {
            subject: X,
            verdict,
            reason: String::new(),
            issuer: NodeId([issuer; 32]),
            issued_at,
            signature: Signature([0; 64]),
        }
    }

    #[test]
    fn a_teammates_distrust_is_followed_until_a_later_trust() {
        let mut verdicts = Statements::new(ME, FollowDistrust::Any);
        let change = verdicts
            .record(said(2, Verdict::Distrust, 10), 10)
            .expect("kept");
        assert_eq!(
            change,
            Change {
                subject: X,
                was_distrusted: false,
                distrusted: true
            }
        );
        assert_eq!(verdicts.distrusted(), vec![X]);
        // An older trust changes nothing; a later one, from anyone, takes it back.
        assert_eq!(
            verdicts.record(said(3, Verdict::Trust, 9), 10),
            Err(Ignored::Superseded)
        );
        let change = verdicts
            .record(said(3, Verdict::Trust, 11), 11)
            .expect("kept");
        assert!(change.was_distrusted && !change.distrusted);
        assert!(verdicts.distrusted().is_empty());
        // Both are still known, to tell newcomers.
        assert_eq!(verdicts.statements().len(), 1);
        assert_eq!(verdicts.subjects(), vec![X]);
    }

    #[test]
    fn own_word_is_final_and_never_follows_nobody_else() {
        let mut verdicts = Statements::new(ME, FollowDistrust::Any);
        verdicts
            .record(said(1, Verdict::Distrust, 5), 5)
            .expect("own");
        // A teammate's later trust is kept but does not undo this node's own distrust.
        let change = verdicts
            .record(said(2, Verdict::Trust, 50), 50)
            .expect("kept");
        assert!(change.distrusted);
        assert_eq!(verdicts.next_stamp(&X, 7), 51);
        assert_eq!(verdicts.next_stamp(&X, 100), 100);

        let mut never = Statements::new(ME, FollowDistrust::Never);
        let change = never
            .record(said(2, Verdict::Distrust, 5), 5)
            .expect("kept");
        assert!(!change.distrusted);
        assert_eq!(never.statements().len(), 1, "kept to tell newcomers");
        assert!(never.distrusted().is_empty());
    }

    #[test]
    fn statements_that_cannot_count_are_ignored() {
        let mut verdicts = Statements::new(ME, FollowDistrust::Any);
        let mut about_me = said(2, Verdict::Distrust, 1);
        about_me.subject = ME;
        assert_eq!(verdicts.record(about_me, 1), Err(Ignored::AboutThisNode));
        assert_eq!(
            verdicts.record(said(9, Verdict::Trust, 1), 1),
            Err(Ignored::AboutItsIssuer)
        );
        let mut long = said(2, Verdict::Distrust, 1);
        long.reason = "x".repeat(TrustStatement::MAX_REASON + 1);
        assert_eq!(verdicts.record(long, 1), Err(Ignored::ReasonTooLong));
        assert_eq!(
            verdicts.record(said(2, Verdict::Distrust, Statements::MAX_AHEAD_MS + 2), 1),
            Err(Ignored::FromTheFuture)
        );
        let known = said(2, Verdict::Distrust, 1);
        verdicts.record(known.clone(), 1).expect("kept");
        assert_eq!(verdicts.record(known, 1), Err(Ignored::Superseded));
    }
}
