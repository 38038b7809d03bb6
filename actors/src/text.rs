//! Character-safe text clipping, shared by previews, storage and error messages.

/// The first `max` characters of `s` (never splitting a character).
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The first `max` characters of `s`, with `…` when something was cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    let head = prefix(s, max);
    if head.len() < s.len() {
        format!("{head}…")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters_not_bytes() {
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("hi", 5), "hi");
        assert_eq!(ellipsize("héllo", 2), "hé…");
        assert_eq!(ellipsize("hé", 2), "hé");
    }
}
