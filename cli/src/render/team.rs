//! What the `weft team` commands say: for `create`, `join` and `share`, in plain words what a
//! teammate's job can do on this machine and what this machine does now; what `distrust` and
//! `trust` did; and what `rotate` made and what to do with it.

use std::path::Path;

use weft_protocol::wire::{SharePolicy, VerdictReport};
use weft_protocol::{Digest, Verdict};

use super::lines::text;

/// The explanation, for `chosen` (`None`: not chosen yet) and the configuration at `config`.
pub(crate) fn share_text(chosen: Option<SharePolicy>, config: &Path) -> String {
    let mut text = String::from(
        "Teammates share build results with this machine: a result is taken only when a\n\
         teammate's daemon signed it.\n\
         Sharing work is your choice. A teammate's job that runs here runs as your user, in a\n\
         sandbox: it sees its own inputs and the toolchain directories, not your files, the\n\
         network, other processes or this daemon's key, and it runs only the tools in\n\
         `accept_tools` (compilers, assemblers, archivers and linkers unless you add more).\n\n",
    );
    match chosen {
        None => text.push_str(
            "You have not chosen yet, so this machine neither runs teammates' jobs nor lends\n\
             them its own. Choose with one of:\n    \
             weft team share idle      # theirs run here while you build nothing and the machine is idle\n    \
             weft team share always    # theirs run here whenever a slot is free\n    \
             weft team share never     # never; yours may still run on theirs\n",
        ),
        Some(policy) => {
            let (name, what) = match policy {
                SharePolicy::Always => ("always", "teammates' jobs run here whenever a slot is free"),
                SharePolicy::Idle => (
                    "idle",
                    "teammates' jobs run here while this machine builds nothing and is otherwise idle",
                ),
                SharePolicy::Never => ("never", "teammates' jobs never run here; yours may run on theirs"),
            };
            text.push_str(&format!(
                "share = \"{name}\": {what}.\nChange it with `weft team share always|idle|never` or in `{}`.\n",
                config.display()
            ));
        }
    }
    text
}

/// What `weft team distrust` or `weft team trust` did.
pub(crate) fn verdict_text(report: &VerdictReport) -> String {
    let key = Digest::from_bytes(report.node.0).to_string();
    let mut lines = Vec::new();
    match (report.verdict, report.changed) {
        (Verdict::Distrust, true) => lines.push(format!(
            "disowned node {key}: no result, blob or job of its is taken from now on"
        )),
        (Verdict::Distrust, false) => lines.push(format!(
            "node {key} was disowned here already; it stays so, now by this node's own word"
        )),
        (Verdict::Trust, true) => lines.push(format!(
            "took node {key} back: its results, blobs and jobs count again"
        )),
        (Verdict::Trust, false) => lines.push(format!(
            "node {key} was not disowned here; the team hears that this node trusts it"
        )),
    }
    if report.verdict == Verdict::Distrust {
        lines.push(match report.n_removed {
            0 => "no action-cache entry here was signed by it".to_owned(),
            1 => "removed the 1 action-cache entry it signed (its blobs stay until gc)".to_owned(),
            n => format!(
                "removed the {n} action-cache entries it signed (their blobs stay until gc)"
            ),
        });
    }
    lines.push(if report.gossiped {
        "told the team; teammates with `follow_distrust = \"any\"` (the default) do the same"
            .to_owned()
    } else {
        "this node has no team: nobody else was told".to_owned()
    });
    if report.verdict == Verdict::Distrust {
        lines.push(format!("undo with `weft team trust {key}`"));
    }
    text(lines)
}

/// What `weft team rotate` says: the new token, what to do with it, and what happens to the
/// nodes that keep the old one.
pub(crate) fn rotate_text(old_team: &str, new_team: &str, token: &str) -> String {
    text(vec![
        format!("made a new secret: team {old_team} is now team {new_team}"),
        "on each teammate's machine that stays in the team run:".to_owned(),
        String::new(),
        format!("    weft team join {token}"),
        String::new(),
        "from now on a node with only the old token is refused by this one and by each that \
         joined with the new token"
            .to_owned(),
        "keep the token secret: anyone with it can join the mesh".to_owned(),
        "to remove a member, also run `weft team distrust NODE`: the results it signed are \
         dropped here and by the teammates that follow"
            .to_owned(),
    ])
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use weft_protocol::NodeId;

    use super::*;

    fn report(verdict: Verdict, changed: bool, n_removed: u64, gossiped: bool) -> VerdictReport {
        VerdictReport {
            node: NodeId([0xab; 32]),
            verdict,
            changed,
            n_removed,
            gossiped,
        }
    }

    #[test]
    fn distrust() {
        expect![[r#"
            disowned node abababababababababababababababababababababababababababababababab: no result, blob or job of its is taken from now on
            removed the 3 action-cache entries it signed (their blobs stay until gc)
            told the team; teammates with `follow_distrust = "any"` (the default) do the same
            undo with `weft team trust abababababababababababababababababababababababababababababababab`
        "#]]
        .assert_eq(&verdict_text(&report(Verdict::Distrust, true, 3, true)));
        expect![[r#"
            node abababababababababababababababababababababababababababababababab was disowned here already; it stays so, now by this node's own word
            removed the 1 action-cache entry it signed (its blobs stay until gc)
            this node has no team: nobody else was told
            undo with `weft team trust abababababababababababababababababababababababababababababababab`
        "#]]
        .assert_eq(&verdict_text(&report(Verdict::Distrust, false, 1, false)));
        assert!(
            verdict_text(&report(Verdict::Distrust, true, 0, true))
                .contains("no action-cache entry here was signed by it")
        );
    }

    #[test]
    fn trust() {
        expect![[r#"
            took node abababababababababababababababababababababababababababababababab back: its results, blobs and jobs count again
            told the team; teammates with `follow_distrust = "any"` (the default) do the same
        "#]]
        .assert_eq(&verdict_text(&report(Verdict::Trust, true, 0, true)));
        expect![[r#"
            node abababababababababababababababababababababababababababababababab was not disowned here; the team hears that this node trusts it
            this node has no team: nobody else was told
        "#]]
        .assert_eq(&verdict_text(&report(Verdict::Trust, false, 0, false)));
    }

    #[test]
    fn rotate() {
        expect![[r#"
            made a new secret: team 0123456789abcdef is now team fedcba9876543210
            on each teammate's machine that stays in the team run:

                weft team join weft-team-1:00ff

            from now on a node with only the old token is refused by this one and by each that joined with the new token
            keep the token secret: anyone with it can join the mesh
            to remove a member, also run `weft team distrust NODE`: the results it signed are dropped here and by the teammates that follow
        "#]]
        .assert_eq(&rotate_text(
            "0123456789abcdef",
            "fedcba9876543210",
            "weft-team-1:00ff",
        ));
    }

    #[test]
    fn not_chosen_yet() {
        expect![[r#"
            Teammates share build results with this machine: a result is taken only when a
            teammate's daemon signed it.
            Sharing work is your choice. A teammate's job that runs here runs as your user, in a
            sandbox: it sees its own inputs and the toolchain directories, not your files, the
            network, other processes or this daemon's key, and it runs only the tools in
            `accept_tools` (compilers, assemblers, archivers and linkers unless you add more).

            You have not chosen yet, so this machine neither runs teammates' jobs nor lends
            them its own. Choose with one of:
                weft team share idle      # theirs run here while you build nothing and the machine is idle
                weft team share always    # theirs run here whenever a slot is free
                weft team share never     # never; yours may still run on theirs
        "#]]
        .assert_eq(&share_text(None, Path::new("/home/me/.local/state/weft/config.toml")));
    }

    #[test]
    fn chosen() {
        let text = share_text(
            Some(SharePolicy::Idle),
            Path::new("/home/me/.local/state/weft/config.toml"),
        );
        let last = text.lines().skip(7).collect::<Vec<_>>().join("\n");
        expect![[r#"
            share = "idle": teammates' jobs run here while this machine builds nothing and is otherwise idle.
            Change it with `weft team share always|idle|never` or in `/home/me/.local/state/weft/config.toml`."#]]
        .assert_eq(&last);
    }
}
