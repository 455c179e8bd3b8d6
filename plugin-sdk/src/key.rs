//! Building Redis keys from parts.

/// Joins `parts` with `:` into a Redis key, escaping each part so that
/// different parts always give different keys and no part chooses the
/// key's Redis Cluster slot.
///
/// Inside a part, `\` becomes `\\`, `:` becomes `\:`, `{` becomes `\(` and
/// `}` becomes `\)`. So the `:` between parts is the only unescaped one
/// (`key(&["a:b"])` and `key(&["a", "b"])` differ), and a key made only of
/// parts has no braces: Redis Cluster hashes it whole, whatever the row
/// holds. To choose the slot on purpose, use [`key_with_tag`].
///
/// ```
/// use redis_spanner_sdk::key;
///
/// assert_eq!(key(&["users", "42"]), "users:42");
/// assert_eq!(key(&["files", r"C:\tmp"]), r"files:C\:\\tmp");
/// assert_eq!(key(&["users", "{eu}7"]), r"users:\(eu\)7");
/// ```
pub fn key<P: AsRef<str>>(parts: &[P]) -> String {
    key_with_tag(parts, usize::MAX)
}

/// [`key`], with part number `tag` (from 0) as the key's Redis Cluster hash
/// tag: it is escaped like any part, then put in braces, so every key with
/// the same tag part lands in the same slot, whatever the other parts hold.
/// An empty tag part, or a `tag` past the last part, gives the plain key.
///
/// ```
/// use redis_spanner_sdk::key_with_tag;
///
/// assert_eq!(key_with_tag(&["orders", "42", "7"], 1), "orders:{42}:7");
/// assert_eq!(key_with_tag(&["orders", "a:{b}", "7"], 1), r"orders:{a\:\(b\)}:7");
/// assert_eq!(key_with_tag(&["orders", "", "7"], 1), "orders::7");
/// ```
pub fn key_with_tag<P: AsRef<str>>(parts: &[P], tag: usize) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.as_ref().len() + 3).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        let tagged = i == tag && !part.as_ref().is_empty();
        if tagged {
            key.push('{');
        }
        for c in part.as_ref().chars() {
            match c {
                ':' | '\\' => {
                    key.push('\\');
                    key.push(c);
                }
                '{' => key.push_str("\\("),
                '}' => key.push_str("\\)"),
                _ => key.push(c),
            }
        }
        if tagged {
            key.push('}');
        }
    }
    key
}

/// The parts of a key [`key`] made, unescaped: `split_key(&key(&parts))` is
/// `parts` (one empty part for the empty key), e.g. to read the row's key
/// back out of a missed key.
///
/// `None` for a key [`key`] does not make: a `\` at its end or before a
/// character other than `\`, `:`, `(` and `)`, or an unescaped `{` or `}`
/// (a hash tag of [`key_with_tag`]: take it apart yourself).
///
/// ```
/// use redis_spanner_sdk::split_key;
///
/// assert_eq!(split_key(r"orders:eu\:\(1\):7").unwrap(), ["orders", "eu:{1}", "7"]);
/// assert_eq!(split_key(r"orders:\x"), None);
/// ```
pub fn split_key(key: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        let unescaped = match c {
            ':' => {
                parts.push(String::new());
                continue;
            }
            '{' | '}' => return None,
            '\\' => match chars.next()? {
                '\\' => '\\',
                ':' => ':',
                '(' => '{',
                ')' => '}',
                _ => return None,
            },
            other => other,
        };
        parts.last_mut()?.push(unescaped);
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::{key, key_with_tag, split_key};

    #[test]
    fn split_key_undoes_key() {
        let cases: &[&[&str]] = &[
            &["users", "42"],
            &["a:b", r"c\d", "{e}", "}{", ""],
            &[r"\(x\)", ":", r"\"],
            &["", ""],
            &["ü", "日本:語"],
        ];
        for parts in cases {
            let split = split_key(&key(parts)).expect("a key `key` made splits");
            assert_eq!(split, *parts);
        }
        assert_eq!(split_key("").unwrap(), [""]);
    }

    #[test]
    fn split_key_refuses_what_key_never_makes() {
        for bad in [r"a\", r"a:\x", r"\{", "a:{b}", "a}", r"a\ b", r"\"] {
            assert_eq!(split_key(bad), None, "{bad:?}");
        }
        assert_eq!(split_key(&key_with_tag(&["o", "42"], 1)), None);
    }

    #[test]
    fn the_tag_part_alone_is_in_braces() {
        assert_eq!(key_with_tag(&["orders", "42", "7"], 1), "orders:{42}:7");
        assert_eq!(key_with_tag(&["{x}", "y"], 0), r"{\(x\)}:y");
        assert_eq!(key_with_tag(&["a", "b"], 2), "a:b");
        assert_eq!(key_with_tag(&["a", ""], 1), "a:");
    }

    #[test]
    fn joins_with_colons() {
        assert_eq!(key(&["users", "42"]), "users:42");
        assert_eq!(key(&["a", "b", "c"]), "a:b:c");
        assert_eq!(key(&["solo"]), "solo");
        assert_eq!(key::<&str>(&[]), "");
    }

    #[test]
    fn escapes_colon_and_backslash() {
        assert_eq!(key(&["a:b"]), r"a\:b");
        assert_eq!(key(&[r"a\b"]), r"a\\b");
        assert_eq!(key(&["t", r"x\:y"]), r"t:x\\\:y");
    }

    #[test]
    fn braces_never_reach_the_key() {
        assert_eq!(key(&["u", "{x}"]), r"u:\(x\)");
        assert_eq!(key(&["u", "}{"]), r"u:\)\(");
        assert!(!key(&["{a}", "b}", "{c"]).contains(['{', '}']));
    }

    #[test]
    fn accepts_owned_strings() {
        let id = 42.to_string();
        assert_eq!(key(&["users", &id]), "users:42");
        assert_eq!(key(&[String::from("users"), id]), "users:42");
    }

    #[test]
    fn different_parts_give_different_keys() {
        let cases: &[&[&str]] = &[
            &["a", "b"],
            &["a:b"],
            &[r"a\", "b"],
            &[r"a\:b"],
            &[r"a\", ":b"],
            &["a", "", "b"],
            &["a:", "b"],
            &["a", ":b"],
            &["{a}"],
            &["(a)"],
            &[r"\(a\)"],
            &[""],
            &["", ""],
        ];
        let keys: std::collections::HashSet<String> =
            cases.iter().map(|parts| key(parts)).collect();
        assert_eq!(keys.len(), cases.len(), "collision among {keys:?}");
    }
}
