//! Settings from environment variables, over those of the TOML file.
//!
//! A variable named `REDIS_SPANNER__<TABLE>__<KEY>` sets `<key>` of
//! `[<table>]`: the name after [`PREFIX`] is cut at each `__` into the path
//! of a setting, and each part is lower-cased to match the file's keys.
//! `REDIS_SPANNER__REDIS__URL=redis://cache:6379` sets `[redis] url`,
//! `REDIS_SPANNER__PLUGINS__LANE_BATCHES_IN_FLIGHT=8` sets
//! `[plugins] lane_batches_in_flight`, and
//! `REDIS_SPANNER__GRANTS__USERS_CACHE__KEY_PREFIXES='["users:"]'` sets the
//! `users_cache` grant's prefixes (a single `_` stays part of a name).
//!
//! A value that reads as a TOML value (an integer, float, boolean, array or
//! inline table) is taken as that value; anything else, a date-time
//! included, is a string (`redis://…`, `now`, an empty value). Text that
//! would read as a number or boolean is passed as a string by quoting it:
//! `REDIS_SPANNER__REDIS__USERNAME='"1234"'`.
//!
//! The settings are put into the file's table before it is read as a
//! [`Config`](super::Config), so an unknown setting or a wrong type is
//! refused as in the file, and the error names the variable. A variable
//! replaces what the file has at its path, a whole table when its value is
//! an inline table. Two variables of which one sets a path inside the other
//! (`REDIS_SPANNER__REDIS` and `REDIS_SPANNER__REDIS__URL`) are refused, as
//! their order would be a guess.
//!
//! Lower-casing means a key with capitals cannot be reached part by part: a
//! grant for a plugin named `UsersCache` (or one whose name holds `__`) is
//! set in the file, or with a whole `[grants]` as an inline table whose
//! quoted keys keep their case:
//! `REDIS_SPANNER__GRANTS='{ "UsersCache" = { key_prefixes = ["users:"], operations = ["set"] } }'`.
//!
//! The prefix ends in two underscores, so it never matches the keyring's
//! `REDIS_SPANNER_KEY_<NAME>_V<version>` variables nor any other
//! `REDIS_SPANNER_<WORD>` variable the tools read.

use crate::text::describe_toml_error;
use serde::de::DeserializeOwned;
use std::ffi::OsStr;

/// What every variable read as a setting starts with.
pub const PREFIX: &str = "REDIS_SPANNER__";

/// The names of this process's variables that [`from_vars`] reads as
/// settings: what the developer tools remove from the services they start,
/// so a shell set up for production cannot point a benchmark at it.
pub fn variables_in_env() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(|name| name.starts_with(PREFIX)))
        .collect()
}

/// One setting taken from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvOverride {
    /// The variable's name, for error messages.
    pub variable: String,
    /// The setting's path in the file, lower case (`["redis", "url"]`).
    pub path: Vec<String>,
    /// The value, as read from the variable.
    pub value: toml::Value,
    /// The variable's text, when it read as a TOML value (for the hint
    /// to quote it).
    raw: Option<String>,
}

/// The settings among `(variable, value)` pairs (the process's are
/// `std::env::vars_os()`), sorted by variable name. Variables without
/// [`PREFIX`] are ignored; one with it must name a path of non-empty parts
/// (ASCII letters, digits, `_` and `-`, neither starting nor ending with
/// `_`) and hold UTF-8.
pub fn from_vars<I, K, V>(vars: I) -> Result<Vec<EnvOverride>, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut overrides = Vec::new();
    for (name, value) in vars {
        let lossy = name.as_ref().to_string_lossy();
        let Some(rest) = lossy.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(variable) = name.as_ref().to_str() else {
            return Err(format!(
                "environment variable {lossy}: the name is not UTF-8; settings from the \
                 environment are REDIS_SPANNER__<TABLE>__<KEY>"
            ));
        };
        let path = setting_path(rest).map_err(|why| {
            format!(
                "environment variable {variable}: {why}; settings from the environment are \
                 REDIS_SPANNER__<TABLE>__<KEY>, e.g. REDIS_SPANNER__REDIS__URL"
            )
        })?;
        let Some(text) = value.as_ref().to_str() else {
            return Err(format!(
                "environment variable {variable}: the value is not UTF-8"
            ));
        };
        let (value, raw) = match read_value(text) {
            Some(value) => (value, Some(text.to_owned())),
            None => (toml::Value::String(text.to_owned()), None),
        };
        overrides.push(EnvOverride {
            variable: variable.to_owned(),
            path,
            value,
            raw,
        });
    }
    overrides.sort_by(|a, b| a.variable.cmp(&b.variable));
    for (i, a) in overrides.iter().enumerate() {
        if let Some(b) = overrides[i + 1..]
            .iter()
            .find(|b| is_prefix(&a.path, &b.path) || is_prefix(&b.path, &a.path))
        {
            return Err(format!(
                "environment variables {} and {} both set `{}`; keep one",
                a.variable,
                b.variable,
                shorter(&a.path, &b.path).join(".")
            ));
        }
    }
    Ok(overrides)
}

/// The lower-case path a variable's name (less the prefix) names.
fn setting_path(rest: &str) -> Result<Vec<String>, String> {
    if rest.is_empty() {
        return Err("no setting is named after the prefix".into());
    }
    rest.split("__")
        .map(|part| {
            if part.is_empty() {
                Err("a part of the name between `__` is empty".to_owned())
            } else if part.starts_with('_') || part.ends_with('_') {
                Err(format!(
                    "`{part}` starts or ends with `_` (parts are separated by exactly two)"
                ))
            } else if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                Err(format!(
                    "`{part}` holds {c:?}; use ASCII letters, digits, `_` and `-`"
                ))
            } else {
                Ok(part.to_ascii_lowercase())
            }
        })
        .collect()
}

/// `text` as a TOML value, when it is one other than a string or a
/// date-time (those stay the text itself).
fn read_value(text: &str) -> Option<toml::Value> {
    use serde::Deserialize as _;
    let parsed = toml::de::ValueDeserializer::parse(text).ok()?;
    match toml::Value::deserialize(parsed).ok()? {
        toml::Value::Datetime(_) => None,
        value => Some(value),
    }
}

fn is_prefix(short: &[String], long: &[String]) -> bool {
    long.starts_with(short)
}

fn shorter<'a>(a: &'a [String], b: &'a [String]) -> &'a [String] {
    if a.len() <= b.len() { a } else { b }
}

/// Puts each setting into `table` (the file's), replacing what is at its
/// path and making the tables on the way. Fails, naming the variable, when
/// the way passes a value that is not a table.
pub fn apply(table: &mut toml::Table, overrides: &[EnvOverride]) -> Result<(), String> {
    for o in overrides {
        let Some((last, parents)) = o.path.split_last() else {
            continue;
        };
        let mut at = &mut *table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = at
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(inner) => inner,
                other => {
                    return Err(format!(
                        "environment variable {}: `{}` is a {}, not a table",
                        o.variable,
                        o.path[..=depth].join("."),
                        other.type_str()
                    ));
                }
            };
        }
        at.insert(last.clone(), o.value.clone());
    }
    Ok(())
}

/// Reads `text` (a TOML file) with `overrides` applied as a `T`. Errors
/// name the variables they come from; an error of the file's own is given
/// with its line and column.
pub fn deserialize<T: DeserializeOwned>(
    text: &str,
    overrides: &[EnvOverride],
) -> Result<T, String> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|err| describe_toml_error(text, &err))?;
    if table.values().any(holds_datetime) {
        // No setting is a TOML date-time; the file read alone says so with
        // its line, so the file means the same with or without variables.
        return match toml::from_str::<T>(text) {
            Err(err) => Err(describe_toml_error(text, &err)),
            Ok(_) => Err("a TOML date-time is no setting's type: quote it".to_owned()),
        };
    }
    apply(&mut table, overrides)?;
    toml::Value::Table(table)
        .try_into::<T>()
        .map_err(|err| blame::<T>(text, &err, overrides))
}

/// Whether `value` is or holds a TOML date-time.
fn holds_datetime(value: &toml::Value) -> bool {
    match value {
        toml::Value::Datetime(_) => true,
        toml::Value::Array(items) => items.iter().any(holds_datetime),
        toml::Value::Table(table) => table.values().any(holds_datetime),
        _ => false,
    }
}

/// Names the variables an error of the merged table comes from.
fn blame<T: DeserializeOwned>(
    text: &str,
    err: &toml::de::Error,
    overrides: &[EnvOverride],
) -> String {
    let message = err.message();
    // The toml crate shows where an error is as a last line "in `a.b`".
    let shown = err.to_string();
    let keys = shown
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .unwrap_or("");
    let mut at: Vec<String> = keys
        .split('.')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    // An unknown or missing field is named in the message, inside the
    // table the keys name; any other error is about the keys' own value.
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start))
        .and_then(|rest| rest.split('`').next());
    let place = match (keys.is_empty(), field) {
        (true, _) => String::new(),
        (false, Some(_)) => format!(" (in [{keys}])"),
        (false, None) => format!(" ({keys})"),
    };
    at.extend(field.map(str::to_owned));
    let blamed: Vec<&EnvOverride> = overrides
        .iter()
        .filter(|o| !at.is_empty() && (is_prefix(&o.path, &at) || is_prefix(&at, &o.path)))
        .collect();
    if blamed.is_empty() {
        // The file's own mistake: read alone it shows line and column.
        return match toml::from_str::<T>(text) {
            Err(file_err) if file_err.message() == message => describe_toml_error(text, &file_err),
            _ => mention(format!("{message}{place}"), overrides),
        };
    }
    // A variable's text may be a secret (a URL with a password): the
    // message names the variable instead of repeating what it holds.
    let mut message = message.to_owned();
    for o in &blamed {
        if let toml::Value::String(text) = &o.value
            && !text.is_empty()
        {
            message = message.replace(text.as_str(), &format!("<value of {}>", o.variable));
        }
    }
    let hint = match blamed.as_slice() {
        [o] if message.starts_with("invalid type") => match (&o.raw, &o.value) {
            (
                Some(raw),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_),
            ) => format!("; to pass it as text, quote it: {}='\"{raw}\"'", o.variable),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let plural = if blamed.len() == 1 { "" } else { "s" };
    format!(
        "environment variable{plural} {}: {message}{place}{hint}",
        names(blamed.into_iter())
    )
}

fn names<'a>(overrides: impl Iterator<Item = &'a EnvOverride>) -> String {
    overrides
        .map(|o| o.variable.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `message` (a check of the merged settings that failed) with the
/// variables that took part, so a bad value from the environment is
/// traced to it.
pub fn mention(message: String, overrides: &[EnvOverride]) -> String {
    if overrides.is_empty() {
        message
    } else {
        format!(
            "{message} (settings from the environment: {})",
            names(overrides.iter())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::ffi::OsString;
    use std::path::Path;

    use crate::config::tests::MINIMAL;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn parse(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, Path::new("test.toml"), vars(pairs))
    }

    fn refused(text: &str, pairs: &[(&str, &str)]) -> String {
        parse(text, pairs).expect_err("refused").to_string()
    }

    #[test]
    fn variables_set_settings_by_path() {
        let config = parse(
            MINIMAL,
            &[
                ("REDIS_SPANNER__REDIS__URL", "redis://cache.internal:6379/2"),
                ("REDIS_SPANNER__PLUGINS__LANE_BATCHES_IN_FLIGHT", "8"),
                ("REDIS_SPANNER__PLUGINS__HOT_RELOAD", "false"),
                (
                    "REDIS_SPANNER__PLUGINS__CACHE_DIR",
                    "/var/cache/redis-spanner",
                ),
                ("REDIS_SPANNER__VERIFY__SAMPLE", "0.5"),
                ("REDIS_SPANNER__VERIFY__DELAYS_MS", "[10, 2000]"),
                ("REDIS_SPANNER__SPANNER__START", "2026-01-31T12:00:00Z"),
                ("REDIS_SPANNER__ADMIN__LISTEN", "0.0.0.0:9464"),
                ("REDIS_SPANNER__CACHE_EVENTS__STREAM", ""),
                ("REDIS_SPANNER__KEYRING__DIR", "/etc/redis-spanner/keys"),
                (
                    "REDIS_SPANNER__GRANTS__USERS_CACHE__KEY_PREFIXES",
                    r#"["users:"]"#,
                ),
                (
                    "REDIS_SPANNER__GRANTS__USERS_CACHE__OPERATIONS",
                    r#"["set", "delete"]"#,
                ),
                ("PATH", "/usr/bin"),
                ("REDIS_SPANNER_KEY_PII_V1", "not a setting"),
            ],
        )
        .expect("valid");
        assert_eq!(config.redis.url, "redis://cache.internal:6379/2");
        assert_eq!(config.plugins.lane_batches_in_flight, 8);
        assert!(!config.plugins.hot_reload);
        assert_eq!(
            config.plugins.cache_dir(),
            Path::new("/var/cache/redis-spanner")
        );
        assert_eq!(config.verify.sample, 0.5);
        assert_eq!(config.spanner.start, "2026-01-31T12:00:00Z");
        assert_eq!(config.admin.listen.as_deref(), Some("0.0.0.0:9464"));
        assert_eq!(config.cache_events.stream, "");
        let keyring = config.keyring.expect("a keyring table was made");
        assert_eq!(
            keyring.dir.as_deref(),
            Some(Path::new("/etc/redis-spanner/keys"))
        );
        assert!(config.grants.contains_key("users_cache"));
        // What the file has and no variable sets stays.
        assert_eq!(config.spanner.project, "p");
    }

    #[test]
    fn an_empty_file_takes_everything_from_the_environment() {
        let config = parse(
            "",
            &[
                ("REDIS_SPANNER__SPANNER__PROJECT", "p"),
                ("REDIS_SPANNER__SPANNER__INSTANCE", "i"),
                ("REDIS_SPANNER__SPANNER__DATABASE", "d"),
                ("REDIS_SPANNER__SPANNER__CHANGE_STREAM", "S"),
                ("REDIS_SPANNER__REDIS__URL", "redis://127.0.0.1:6379"),
            ],
        )
        .expect("valid");
        assert_eq!(config.database_path(), "projects/p/instances/i/databases/d");
    }

    #[test]
    fn names_are_lower_cased_and_a_whole_table_may_be_inline() {
        let config = parse(
            MINIMAL,
            &[
                ("redis_spanner__redis__url", "redis://ignored:1"),
                ("REDIS_SPANNER__redis__Username", "cache"),
                ("REDIS_SPANNER__REDIS__PASSWORD_FILE", "/run/secrets/redis"),
                (
                    "REDIS_SPANNER__GRANTS",
                    r#"{ "UsersCache" = { key_prefixes = ["u:"], operations = ["set"] } }"#,
                ),
            ],
        )
        .expect("valid");
        // The prefix itself is matched as written.
        assert_eq!(config.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(config.redis.username.as_deref(), Some("cache"));
        assert!(
            config.grants.contains_key("UsersCache"),
            "{:?}",
            config.grants.keys()
        );
    }

    #[test]
    fn an_unknown_setting_names_the_variable() {
        let err = refused(MINIMAL, &[("REDIS_SPANNER__REDIS__URLL", "redis://x:1")]);
        assert!(
            err.contains("environment variable REDIS_SPANNER__REDIS__URLL"),
            "{err}"
        );
        assert!(err.contains("unknown field `urll`"), "{err}");
        assert!(err.contains("[redis]"), "{err}");
        let err = refused(MINIMAL, &[("REDIS_SPANNER__REDISS__URL", "redis://x:1")]);
        assert!(
            err.contains("environment variable REDIS_SPANNER__REDISS__URL"),
            "{err}"
        );
        assert!(err.contains("unknown field `rediss`"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_variable_and_how_to_quote() {
        let err = refused(MINIMAL, &[("REDIS_SPANNER__PLUGINS__BATCH_MAX", "many")]);
        assert!(
            err.contains("environment variable REDIS_SPANNER__PLUGINS__BATCH_MAX"),
            "{err}"
        );
        assert!(err.contains("(plugins.batch_max)"), "{err}");
        let err = refused(MINIMAL, &[("REDIS_SPANNER__REDIS__USERNAME", "1234")]);
        assert!(err.contains("REDIS_SPANNER__REDIS__USERNAME"), "{err}");
        assert!(
            err.contains(r#"quote it: REDIS_SPANNER__REDIS__USERNAME='"1234"'"#),
            "{err}"
        );
        let config = parse(
            MINIMAL,
            &[
                ("REDIS_SPANNER__REDIS__USERNAME", "\"1234\""),
                ("REDIS_SPANNER__REDIS__PASSWORD_FILE", "/run/secrets/redis"),
            ],
        )
        .expect("a quoted number is text");
        assert_eq!(config.redis.username.as_deref(), Some("1234"));
    }

    #[test]
    fn a_mistake_of_the_file_keeps_its_line_and_column() {
        let text = MINIMAL.replace("database = \"d\"", "database = \"d\"\ndatabse = \"x\"");
        let err = refused(&text, &[("REDIS_SPANNER__REDIS__URL", "redis://x:1")]);
        assert!(err.contains("line 6, column 1"), "{err}");
        assert!(err.contains("databse"), "{err}");
        assert!(!err.contains("REDIS_SPANNER__REDIS__URL"), "{err}");
    }

    #[test]
    fn a_bad_value_from_the_environment_is_traced_to_it() {
        let err = refused(MINIMAL, &[("REDIS_SPANNER__REDIS__URL", "http://x:1")]);
        assert!(err.contains("redis.url"), "{err}");
        assert!(err.contains("REDIS_SPANNER__REDIS__URL"), "{err}");
    }

    #[test]
    fn a_path_through_a_value_is_refused() {
        let err = refused(MINIMAL, &[("REDIS_SPANNER__REDIS__URL__HOST", "x")]);
        assert!(err.contains("REDIS_SPANNER__REDIS__URL__HOST"), "{err}");
        assert!(
            err.contains("`redis.url` is a string, not a table"),
            "{err}"
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for (name, why) in [
            ("REDIS_SPANNER__", "no setting is named"),
            ("REDIS_SPANNER__REDIS__", "is empty"),
            ("REDIS_SPANNER__REDIS____URL", "is empty"),
            ("REDIS_SPANNER___REDIS__URL", "starts or ends with `_`"),
            ("REDIS_SPANNER__REDIS___URL", "starts or ends with `_`"),
            ("REDIS_SPANNER__REDIS__U.RL", "holds '.'"),
        ] {
            let err = refused(MINIMAL, &[(name, "x")]);
            assert!(
                err.contains(&format!("environment variable {name}:")),
                "{err}"
            );
            assert!(err.contains(why), "{name}: {err}");
        }
    }

    #[test]
    fn overlapping_variables_are_refused() {
        let err = refused(
            MINIMAL,
            &[
                ("REDIS_SPANNER__REDIS__URL", "redis://a:1"),
                ("REDIS_SPANNER__REDIS", r#"{ url = "redis://b:1" }"#),
            ],
        );
        assert!(
            err.contains("REDIS_SPANNER__REDIS and REDIS_SPANNER__REDIS__URL both set `redis`"),
            "{err}"
        );
        let err = refused(
            MINIMAL,
            &[
                ("REDIS_SPANNER__REDIS__URL", "redis://a:1"),
                ("REDIS_SPANNER__redis__url", "redis://b:1"),
            ],
        );
        assert!(err.contains("both set `redis.url`"), "{err}");
    }

    #[test]
    fn names_and_values_that_are_not_utf8_are_refused() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = || OsString::from_vec(vec![b'x', 0xff]);
        let mut name = b"REDIS_SPANNER__REDIS__".to_vec();
        name.push(0xff);
        let err =
            from_vars([(OsString::from_vec(name), OsString::from("x"))]).expect_err("refused");
        assert!(
            err.contains("REDIS_SPANNER__REDIS__") && err.contains("not UTF-8"),
            "{err}"
        );
        let err =
            from_vars([(OsString::from("REDIS_SPANNER__REDIS__URL"), bad())]).expect_err("refused");
        assert!(
            err.contains("REDIS_SPANNER__REDIS__URL: the value is not UTF-8"),
            "{err}"
        );
        // Other variables are none of this reader's business.
        assert_eq!(from_vars([(bad(), bad())]), Ok(Vec::new()));
    }

    #[test]
    fn the_prefix_collides_with_no_other_variable_of_the_project() {
        let keyring = redis_spanner_envelope::ENV_PREFIX;
        assert!(!PREFIX.starts_with(keyring) && !keyring.starts_with(PREFIX));
        // The keyring reader and this one each take only their own.
        let both = vars(&[
            ("REDIS_SPANNER_KEY_PII_V1", "AAAA"),
            ("REDIS_SPANNER__KEYRING__DIR", "/k"),
        ]);
        let settings = from_vars(both.clone()).expect("valid");
        assert_eq!(settings.len(), 1);
        assert_eq!(settings[0].path, ["keyring", "dir"]);
        for tool in [
            "REDIS_SPANNER_COMPONENTIZE_PY",
            "REDIS_SPANNER_COMPONENTIZE_JS",
            "REDIS_SPANNER_EMULATOR_DIR",
            "REDIS_SPANNER_GATEWAY_MAIN",
            "REDIS_SPANNER_EMULATOR_MAIN",
            "REDIS_SPANNER_REDIS_SERVER",
        ] {
            assert_eq!(from_vars(vars(&[(tool, "/x")])), Ok(Vec::new()), "{tool}");
        }
    }

    #[test]
    fn the_example_reads_alike_with_and_without_the_environment() {
        let text = include_str!("../../../config.example.toml");
        let plain = Config::parse(text, Path::new("config.example.toml")).expect("valid");
        let merged =
            parse(text, &[("REDIS_SPANNER__SPANNER__PROJECT", "my-project")]).expect("valid");
        assert_eq!(format!("{plain:?}"), format!("{merged:?}"));
    }

    #[test]
    fn a_value_from_a_variable_is_not_repeated_in_errors() {
        let secret = "redis://:hunter2@cache:6379";
        let err = parse(MINIMAL, &[("REDIS_SPANNER__REDIS", secret)])
            .expect_err("a string is no table")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("<value of REDIS_SPANNER__REDIS>"), "{err}");
        let err = parse(
            MINIMAL,
            &[("REDIS_SPANNER__REDIS__URL", "http://:hunter2@cache")],
        )
        .expect_err("not a Redis URL")
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_file_means_the_same_with_or_without_variables() {
        let text = MINIMAL.replace(
            "change_stream = \"S\"",
            "change_stream = \"S\"\nstart = 2026-01-31T12:00:00Z",
        );
        let alone = parse(&text, &[])
            .expect_err("a date-time is no string")
            .to_string();
        let with = parse(&text, &[("REDIS_SPANNER__ADMIN__LISTEN", "127.0.0.1:0")])
            .expect_err("still refused")
            .to_string();
        assert_eq!(alone, with);
        assert!(alone.contains("line"), "{alone}");
    }
}
