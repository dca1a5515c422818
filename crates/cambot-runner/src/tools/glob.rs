//! A small glob matcher for `glob` and `grep`: `*` and `?` within one path segment, `**` for
//! any number of segments, `[abc]` / `[a-z]` / `[!a]` sets. Paths use `/`.

/// Whether `path` (relative, `/`-separated) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|k| match_segments(rest, &segs[k..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_segment(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|k| match_segment(rest, &s[k..])),
        Some((b'?', rest)) => !s.is_empty() && match_segment(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().skip(1).position(|c| *c == b']').map(|i| i + 1) else {
                return s.first() == Some(&b'[') && match_segment(rest, &s[1..]);
            };
            let Some((c, srest)) = s.split_first() else {
                return false;
            };
            let (negate, set) = match rest[..end].split_first() {
                Some((b'!' | b'^', set)) => (true, set),
                _ => (false, &rest[..end]),
            };
            in_set(set, *c) != negate && match_segment(&rest[end + 1..], srest)
        }
        Some((c, rest)) => s.first() == Some(c) && match_segment(rest, &s[1..]),
    }
}

fn in_set(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn glob_cases() {
        assert!(matches("*.md", "notes.md"));
        assert!(!matches("*.md", "dir/notes.md"));
        assert!(matches("**/*.md", "notes.md"));
        assert!(matches("**/*.md", "a/b/notes.md"));
        assert!(matches("a/**", "a/b/c"));
        assert!(matches("a/**/c", "a/c"));
        assert!(matches("file?.txt", "file1.txt"));
        assert!(!matches("file?.txt", "file10.txt"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("[!a-c]x", "dx"));
        assert!(!matches("*.rs", "main.rsx"));
        assert!(matches("*", ".hidden"));
    }
}
