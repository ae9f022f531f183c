//! Redis-style glob patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`,
//! `[abc]`, `[^abc]`, `[a-z]` and `\` escapes.
//!
//! Matching is iterative with one backtrack point (the last `*`), so it takes
//! O(pattern × subject) time whatever the pattern: a client-chosen pattern cannot make
//! a replica (or the gateway) spend exponential time, unlike a recursive matcher.
//! Deviation from Redis's `stringmatchlen`: a `[` without a closing `]` matches
//! nothing (Redis reads it up to the end of the pattern).

/// One pattern element.
#[derive(Clone, Debug)]
enum Tok {
    Star,
    Any,
    Byte(u8),
    /// A bracket class: (negated, single bytes and ranges).
    Class(bool, Vec<(u8, u8)>),
    /// An unclosed `[`: matches nothing.
    Never,
}

fn lower(c: u8, nocase: bool) -> u8 {
    if nocase {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

fn tokens(p: &[u8], nocase: bool) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
            }
            b'?' => out.push(Tok::Any),
            b'\\' if i + 1 < p.len() => {
                i += 1;
                out.push(Tok::Byte(lower(p[i], nocase)));
            }
            b'[' => {
                let Some(close) = p[i + 1..].iter().position(|&c| c == b']') else {
                    out.push(Tok::Never);
                    return out;
                };
                let set = &p[i + 1..i + 1 + close];
                let (negate, set) = match set.split_first() {
                    Some((b'^', rest)) => (true, rest),
                    _ => (false, set),
                };
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < set.len() {
                    if k + 2 < set.len() && set[k + 1] == b'-' {
                        let (a, b) = (lower(set[k], nocase), lower(set[k + 2], nocase));
                        ranges.push((a.min(b), a.max(b)));
                        k += 3;
                    } else {
                        let c = lower(set[k], nocase);
                        ranges.push((c, c));
                        k += 1;
                    }
                }
                out.push(Tok::Class(negate, ranges));
                i += close + 1;
            }
            c => out.push(Tok::Byte(lower(c, nocase))),
        }
        i += 1;
    }
    out
}

fn one(t: &Tok, c: u8) -> bool {
    match t {
        Tok::Any => true,
        Tok::Byte(b) => *b == c,
        Tok::Class(negate, ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&c)) != *negate,
        Tok::Star | Tok::Never => false,
    }
}

/// Whether `s` matches the glob `pattern` (ASCII case-insensitively if `nocase`).
pub fn matches(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let toks = tokens(pattern, nocase);
    let (mut ti, mut si) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        let c = lower(s[si], nocase);
        match toks.get(ti) {
            Some(Tok::Star) => {
                backtrack = Some((ti, si));
                ti += 1;
                continue;
            }
            Some(t) if one(t, c) => {
                ti += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((bt, bs)) => {
                backtrack = Some((bt, bs + 1));
                ti = bt + 1;
                si = bs + 1;
            }
            None => return false,
        }
    }
    toks[ti..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, s, nocase, want) in [
            ("*", "save", true, true),
            ("*", "", false, true),
            ("save", "SAVE", true, true),
            ("save", "SAVE", false, false),
            ("sa*", "save", false, true),
            ("*only", "appendonly", false, true),
            ("s?ve", "save", false, true),
            ("s[a-c]ve", "save", false, true),
            ("s[c-a]ve", "save", false, true),
            ("s[^a]ve", "save", false, false),
            ("s[^b]ve", "save", false, true),
            ("max*", "save", false, false),
            ("", "save", false, false),
            ("", "", false, true),
            ("\\*", "*", false, true),
            ("\\*", "a", false, false),
            ("[", "a", false, false),
            ("a*b*c", "aXbYc", false, true),
            ("a*b*c", "aXbY", false, false),
            ("*a", "aaa", false, true),
            ("k?", "k", false, false),
            (
                "a**********************************************************************b",
                "ab",
                false,
                true,
            ),
        ] {
            assert_eq!(matches(p.as_bytes(), s.as_bytes(), nocase), want, "{p} {s}");
        }
    }

    #[test]
    fn adversarial_patterns_take_polynomial_time() {
        // exponential for a naive recursive matcher
        let p = "*a".repeat(200) + "b";
        let s = vec![b'a'; 5000];
        assert!(!matches(p.as_bytes(), &s, false));
    }
}
