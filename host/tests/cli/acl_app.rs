//! `acl app` with the real binary: standard output is exactly one
//! `ACL SETUSER` line (pipeable to `redis-cli`), what it allows is said on
//! standard error, the password only ever appears hashed, the event stream
//! comes from a configuration, a prefix that reaches too far is refused
//! with a message naming it, and a reader that stops early ends the
//! command quietly (as for every command but `run`).

use std::process::Output;

use crate::support;

fn redis_spanner(args: &[&str]) -> Output {
    support::binary()
        .args(args)
        .output()
        .expect("run redis-spanner")
}

/// Standard output and standard error of a successful run.
fn succeed(args: &[&str]) -> (String, String) {
    let output = redis_spanner(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8(support::expect_success(args, output)).expect("UTF-8");
    (stdout, stderr)
}

/// The message of a run that must fail, with nothing on standard output.
fn fail(args: &[&str]) -> String {
    let output = redis_spanner(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(output.stdout.is_empty(), "{args:?} printed a line");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn prints_one_setuser_line_and_says_what_it_allows() {
    let (stdout, stderr) = succeed(&[
        "acl", "app", "--user", "shop", "--prefix", "users:", "--prefix", "orders:",
    ]);
    assert_eq!(
        stdout,
        "ACL SETUSER shop reset on resetchannels -@all +fcall|rs_fill +get +set ~users:* \
         ~{users:*}:rs-version ~orders:* ~{orders:*}:rs-version \
         \"(+xadd %W~redis-spanner:cache-events)\"\n"
    );
    let comments: Vec<&str> = stderr.lines().collect();
    assert!(
        comments.iter().all(|line| line.starts_with("# ")),
        "{stderr}"
    );
    assert!(
        stderr.contains("XADD to redis-spanner:cache-events")
            && stderr.contains("FCALL rs_fill")
            && stderr.contains("never rs_apply")
            && stderr.contains("no password"),
        "{stderr}"
    );
}

/// A reader that stops early (`… | head`) ends the command quietly (by
/// SIGPIPE, as other tools), not with a panic.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = support::binary()
        .args(["acl", "app", "--user", "shop", "--prefix", "users:"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}",
        output.status
    );
}

#[test]
fn a_cluster_user_may_read_the_slot_map() {
    let (stdout, _) = succeed(&[
        "acl",
        "app",
        "--user",
        "shop",
        "--prefix",
        "users:",
        "--cluster",
    ]);
    assert!(stdout.contains(" +cluster|slots "), "{stdout}");
    let (stdout, _) = succeed(&["acl", "app", "--user", "shop", "--prefix", "users:"]);
    assert!(!stdout.contains("cluster"), "{stdout}");
}

#[test]
fn the_password_file_is_set_as_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let (stdout, stderr) = succeed(&[
        "acl",
        "app",
        "--user",
        "shop",
        "--prefix",
        "users:",
        "--no-events",
        "--password-file",
        file.to_str().unwrap(),
    ]);
    // sha256("s3cret"): the trailing newline is not part of it.
    assert!(
        stdout.starts_with(
            "ACL SETUSER shop reset on \
             #1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0 "
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    assert!(!stdout.contains("xadd") && !stderr.contains("no password"));
}

#[test]
fn the_stream_and_the_service_keys_come_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(
        dir.path(),
        "",
        "url = \"redis://127.0.0.1:6379/2\"\ndead_letter_stream = \"shop:dead\"",
        "[cache_events]\nstream = \"shop-events\"\n",
    );
    let config = config.to_str().unwrap();
    let (stdout, _) = succeed(&[
        "acl",
        "app",
        "--user",
        "shop",
        "--prefix",
        "users:",
        "--config",
        config,
        "--no-fills",
    ]);
    assert_eq!(
        stdout,
        "ACL SETUSER shop reset on resetchannels -@all +select|2 \"(+xadd %W~shop-events)\"\n"
    );
    let refused = fail(&[
        "acl", "app", "--user", "shop", "--prefix", "shop:", "--config", config,
    ]);
    assert!(
        refused.contains("prefix \"shop:\" refused")
            && refused.contains("the dead-letter stream \"shop:dead\""),
        "{refused}"
    );
}

#[test]
fn prefixes_that_reach_too_far_are_refused_by_name() {
    for (prefix, says) in [
        ("", "an empty prefix covers every key"),
        ("redis-spanner:", "the service's own keys"),
        ("redis", "the service's own keys"),
        ("{users", "must close its hash tag"),
    ] {
        let message = fail(&["acl", "app", "--user", "shop", "--prefix", prefix]);
        assert!(
            message.contains(&format!("prefix {prefix:?} refused")) && message.contains(says),
            "{prefix:?}: {message}"
        );
    }
    let message = fail(&[
        "acl",
        "app",
        "--user",
        "shop",
        "--prefix",
        "users:",
        "--stream",
        "redis-spanner:audit",
    ]);
    assert!(
        message.contains("\"redis-spanner:audit\" refused") && message.contains("audit stream"),
        "{message}"
    );
    let message = fail(&["acl", "app", "--user", "default", "--prefix", "users:"]);
    assert!(message.contains("\"default\" refused"), "{message}");
}
