//! The keyring commands with the real binary: `keyring new` twice,
//! `keyring list`, and `decrypt --file` of a value sealed before the
//! rotation, with the right and a wrong aad.

use redis_spanner_envelope::{Keyring, seal};
use std::path::Path;
use std::process::Output;

use crate::support;

fn redis_spanner(args: &[&str]) -> Output {
    support::binary()
        .args(args)
        .output()
        .expect("run redis-spanner")
}

fn succeed(args: &[&str]) -> Vec<u8> {
    support::expect_success(args, redis_spanner(args))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn rotate_then_decrypt_an_old_value() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("keys");
    let dir_text = dir.to_str().unwrap();

    let created = text(succeed(&["keyring", "new", "--dir", dir_text, "pii"]));
    assert!(
        created.contains("pii.v1.key") && created.contains("version 1"),
        "{created}"
    );

    // A value sealed while v1 is current.
    let keyring = Keyring::from_dir(&dir).unwrap();
    let sealed = seal(&keyring, "pii", b"alice@example.com", b"user:1").unwrap();
    let file = temp.path().join("value.bin");
    std::fs::write(&file, &sealed).unwrap();

    let created = text(succeed(&["keyring", "new", "--dir", dir_text, "pii"]));
    assert!(
        created.contains("pii.v2.key") && created.contains("version 2"),
        "{created}"
    );
    let listed = text(succeed(&["keyring", "list", "--dir", dir_text]));
    assert_eq!(listed, "pii: v1, v2 (current v2)\n");

    let file_text = file.to_str().unwrap();
    let plaintext = succeed(&[
        "decrypt",
        "--keyring",
        dir_text,
        "--aad",
        "user:1",
        "--file",
        file_text,
    ]);
    assert_eq!(plaintext, b"alice@example.com");

    let wrong = redis_spanner(&[
        "decrypt",
        "--keyring",
        dir_text,
        "--aad",
        "user:2",
        "--file",
        file_text,
    ]);
    assert!(!wrong.status.success(), "a wrong aad must fail");
    assert!(wrong.stdout.is_empty(), "no plaintext on failure");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains(file_text)
            && stderr.contains("sealed with key pii v1")
            && stderr.contains("failed authentication"),
        "{stderr}"
    );
}

#[test]
fn decrypt_names_a_missing_key_version() {
    let temp = tempfile::tempdir().unwrap();
    let old = temp.path().join("old");
    let new = temp.path().join("new");
    Keyring::generate(&old, "pii").unwrap();
    Keyring::generate(&old, "pii").unwrap();
    Keyring::generate(&new, "pii").unwrap();
    // Sealed with v2 of one keyring, opened with a keyring that has only v1.
    let sealed = seal(&Keyring::from_dir(&old).unwrap(), "pii", b"x", b"").unwrap();
    let file = temp.path().join("value.bin");
    std::fs::write(&file, sealed).unwrap();
    let output = redis_spanner(&[
        "decrypt",
        "--keyring",
        new.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("key pii version 2 is not in the keyring"),
        "{stderr}"
    );
}

#[test]
fn keyring_new_rejects_a_bad_name() {
    let temp = tempfile::tempdir().unwrap();
    let output = redis_spanner(&[
        "keyring",
        "new",
        "--dir",
        temp.path().to_str().unwrap(),
        "Bad Name",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"Bad Name\" is not valid"), "{stderr}");
    assert!(is_empty(temp.path()), "nothing written");
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}
