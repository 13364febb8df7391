//! UTF-8-safe cutting of text: every place that bounds a string (messages, patches, output
//! tails, status summaries) cuts through these, never in the middle of a character.

/// The longest prefix of `s` of at most `max` bytes.
pub fn prefix(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// The longest suffix of `s` of at most `max` bytes.
pub fn suffix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    &s[s.ceil_char_boundary(s.len() - max)..]
}

/// The last `lines` lines of `s` (joined by `\n`), then at most their last `max` bytes: an
/// output tail.
pub fn last_lines(s: &str, lines: usize, max: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    let joined = all[all.len().saturating_sub(lines)..].join("\n");
    suffix(&joined, max).to_string()
}

/// The first `n` characters of `s`.
pub fn chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `s` cut to at most `max` bytes: at a line end when one lies in the second half of the
/// budget (so a cut patch or log ends with a whole line), else at a character boundary.
/// Returns the text and whether it was cut.
pub fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let head = prefix(s, max);
    match head.rfind('\n') {
        Some(nl) if nl + 1 >= max / 2 => (&head[..=nl], true),
        _ => (head, true),
    }
}

/// Truncates `s` to at most `max` bytes at a character boundary; true when it was cut.
pub fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let end = s.floor_char_boundary(max);
    s.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end_within_both_bounds() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(last_lines(&text, 2, 1000), "line 98\nline 99");
        assert_eq!(last_lines(&text, 2, 9), "8\nline 99");
        assert_eq!(last_lines("é\néé", 5, 3), "é");
        assert_eq!(last_lines("", 5, 3), "");
    }

    #[test]
    fn never_inside_a_character() {
        assert_eq!(prefix("aéé", 2), "a");
        assert_eq!(prefix("aéé", 3), "aé");
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(prefix("abc", 0), "");
        assert_eq!(suffix("aéé", 3), "é");
        assert_eq!(suffix("aéé", 4), "éé");
        assert_eq!(suffix("abc", 5), "abc");
        assert_eq!(chars("aéb", 2), "aé");
        assert_eq!(chars("ab", 5), "ab");
        let mut s = String::from("aéé");
        assert!(truncate(&mut s, 4));
        assert_eq!(s, "aé");
        assert!(!truncate(&mut s, 10));
    }

    #[test]
    fn cuts_at_a_line_end_in_the_second_half() {
        assert_eq!(cut("ab\ncd\n", 6), ("ab\ncd\n", false));
        assert_eq!(cut("ab\ncd\n", 5), ("ab\n", true));
        assert_eq!(cut("abcdef", 4), ("abcd", true));
        assert_eq!(cut("éé", 3), ("é", true));
        assert_eq!(cut("abc", 0), ("", true));
        // A line end early in the budget would lose too much: cut at the boundary instead.
        assert_eq!(cut("a\nbcdefghij", 8), ("a\nbcdefg", true));
    }
}
