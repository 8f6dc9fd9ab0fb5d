//! "Did you mean...?": the closest existing name to a misspelt one.

/// The candidate closest to `wanted` by edit distance, when it is close enough to be a likely
/// typo: at most a third of the longer name, and at least one edit allowed. Ties go to the
/// first candidate in iteration order.
pub(crate) fn closest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == wanted {
            continue;
        }
        let limit = (wanted.chars().count().max(candidate.chars().count()) / 3).max(1);
        let Some(distance) = edit_distance(wanted, candidate, limit) else {
            continue;
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// The Levenshtein distance between `a` and `b` (with a swap of two adjacent characters
/// counting as one edit), or `None` when it exceeds `limit`.
pub(crate) fn edit_distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    // Three rows of the dynamic-programming table: two rows back (for swaps), the previous
    // row and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(before[j - 2] + 1);
            }
            current[j] = value;
            row_min = row_min.min(value);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()];
    (distance <= limit).then_some(distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let cases = [
            ("", "", Some(0)),
            ("lib", "lib", Some(0)),
            ("lib", "lob", Some(1)),
            ("lib", "lbi", Some(1)),
            ("util", "utils", Some(1)),
            ("util", "", None),
            ("kitten", "sitting", Some(3)),
        ];
        for (a, b, expected) in cases {
            assert_eq!(edit_distance(a, b, 3), expected, "{a} {b}");
        }
        assert_eq!(edit_distance("kitten", "sitting", 2), None);
    }

    #[test]
    fn suggestions() {
        let names = ["util", "main", "util_test", "parser"];
        assert_eq!(closest("utl", names), Some("util"));
        assert_eq!(closest("mian", names), Some("main"));
        assert_eq!(closest("parsr", names), Some("parser"));
        assert_eq!(closest("zzzz", names), None);
        assert_eq!(closest("util", names), None);
    }
}
