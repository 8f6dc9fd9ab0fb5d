//! The one way a report becomes text.

/// `lines`, each ended by a newline: a report as it is printed.
pub(super) fn text(lines: Vec<String>) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}
