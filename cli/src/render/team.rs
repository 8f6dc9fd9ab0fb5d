//! What `weft team create`, `join` and `share` say about sharing: in plain words, what a
//! teammate's job can do on this machine, and what this machine does now.

use std::path::Path;

use weft_protocol::wire::SharePolicy;

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

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

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
