//! [`TrustStatement`]: a node's signed word that it disowns another node, or takes it back
//! (`weft team distrust`, `weft team trust`). Statements are gossiped to the team and sent to
//! each newly admitted peer; each node decides by its own policy whether to follow them.
//!
//! Of two statements about one node, the one that [`TrustStatement::supersedes`] the other
//! counts: the later `issued_at`, then a distrust over a trust, then the larger issuer. Every
//! node orders them alike. An issuer stamps a statement with at least one more than the stamp
//! of any statement about that node it has seen, so a trust issued after a distrust was heard
//! supersedes it whatever the two machines' clocks say.

use serde::{Deserialize, Serialize};

use crate::canon::Canon;
use crate::{Digest, NodeId, Signature};

/// What a statement says of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Taken back: its results, blobs and jobs count again.
    Trust,
    /// Disowned: no result, blob or job of its is taken, and the entries it signed are dropped.
    Distrust,
}

impl Verdict {
    /// `trust` or `distrust`, as the commands and the daemon's files name it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Trust => "trust",
            Verdict::Distrust => "distrust",
        }
    }
}

/// One node's signed verdict on another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStatement {
    /// The node the statement is about.
    pub subject: NodeId,
    /// What it says.
    pub verdict: Verdict,
    /// Why, in the issuer's words (may be empty).
    pub reason: String,
    /// The node that issued and signed it.
    pub issuer: NodeId,
    /// Milliseconds since the Unix epoch on the issuer's clock, raised to one more than any
    /// earlier statement about `subject` the issuer had seen: what orders statements.
    pub issued_at: u64,
    /// `issuer`'s ed25519 signature over [`TrustStatement::signing_digest`].
    pub signature: Signature,
}

impl TrustStatement {
    /// The longest reason a statement may carry, in bytes; a longer one is refused.
    pub const MAX_REASON: usize = 1024;

    /// The digest the issuer signs: the canonical encoding of every field but the signature.
    pub fn signing_digest(&self) -> Digest {
        signing_canon(
            &self.subject,
            self.verdict,
            &self.reason,
            &self.issuer,
            self.issued_at,
        )
        .finish()
    }

    /// The digest a statement with these fields is signed over, before it has a signature.
    pub fn digest_to_sign(
        subject: &NodeId,
        verdict: Verdict,
        reason: &str,
        issuer: &NodeId,
        issued_at: u64,
    ) -> Digest {
        signing_canon(subject, verdict, reason, issuer, issued_at).finish()
    }

    /// Whether this statement counts over `other` (about the same subject): the later stamp,
    /// then a distrust over a trust, then the larger issuer.
    pub fn supersedes(&self, other: &TrustStatement) -> bool {
        (self.issued_at, self.verdict, self.issuer) > (other.issued_at, other.verdict, other.issuer)
    }
}

/// The canonical encoding that [`TrustStatement::signing_digest`] hashes.
fn signing_canon(
    subject: &NodeId,
    verdict: Verdict,
    reason: &str,
    issuer: &NodeId,
    issued_at: u64,
) -> Canon {
    let mut canon = Canon::new("weft.trust.v1");
    canon.tag(1).bytes(&subject.0);
    canon.tag(2).u8(match verdict {
        Verdict::Trust => 0,
        Verdict::Distrust => 1,
    });
    canon.tag(3).str(reason);
    canon.tag(4).bytes(&issuer.0);
    canon.tag(5).u64(issued_at);
    canon
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn statement(verdict: Verdict, issued_at: u64, issuer: u8) -> TrustStatement {
        TrustStatement {
            subject: NodeId([0x0a; 32]),
            verdict,
            reason: "left the team".into(),
            issuer: NodeId([issuer; 32]),
            issued_at,
            signature: Signature([0x09; 64]),
        }
    }

    #[test]
    fn the_canonical_encoding_of_a_statement() {
        // A change here makes every statement ever issued fail its check: bump the domain.
        let statement = statement(Verdict::Distrust, 1_767_225_600_000, 0x0b);
        let canon = signing_canon(
            &statement.subject,
            statement.verdict,
            &statement.reason,
            &statement.issuer,
            statement.issued_at,
        );
        assert_eq!(Digest::of(&canon.fed_bytes()), canon.finish());
        expect![[r#"
            str    0d00000000000000 776566742e74727573742e7631 "weft.trust.v1"
            tag    01
            bytes  2000000000000000 0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a
            tag    02
            u8     01
            tag    03
            str    0d00000000000000 6c65667420746865207465616d "left the team"
            tag    04
            bytes  2000000000000000 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b
            tag    05
            u64    00a8da769b010000
        "#]]
        .assert_eq(&canon.trace());
        expect!["8aca504ed777a9688da55b0edc86467128363a2b4ee89c0901758de2d30384d4"]
            .assert_eq(&statement.signing_digest().to_string());
        assert_eq!(
            statement.signing_digest(),
            TrustStatement::digest_to_sign(
                &statement.subject,
                Verdict::Distrust,
                "left the team",
                &statement.issuer,
                1_767_225_600_000
            )
        );
        // The signature is not part of what is signed; every other field is.
        let mut other = statement.clone();
        other.signature = Signature([0x08; 64]);
        assert_eq!(other.signing_digest(), statement.signing_digest());
        other.verdict = Verdict::Trust;
        assert_ne!(other.signing_digest(), statement.signing_digest());
    }

    #[test]
    fn the_later_statement_counts_and_ties_break_alike_everywhere() {
        let distrust = statement(Verdict::Distrust, 10, 1);
        let trust = statement(Verdict::Trust, 11, 1);
        assert!(trust.supersedes(&distrust));
        assert!(!distrust.supersedes(&trust));
        // The same stamp: a distrust wins, then the larger issuer.
        let tied = statement(Verdict::Trust, 10, 2);
        assert!(distrust.supersedes(&tied));
        assert!(statement(Verdict::Distrust, 10, 2).supersedes(&distrust));
        assert!(!distrust.supersedes(&distrust));
    }
}
