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

#[cfg(test)]
mod tests {
    use super::{key, key_with_tag};

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
