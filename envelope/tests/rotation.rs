//! Key rotation as an operator does it: add a version to the keyring
//! directory, reload, and check that new values use it while values sealed
//! before still open.

use redis_spanner_envelope::{CryptoError, Keyring, keyed_hash, open, parse_header, seal};

#[test]
fn new_version_seals_and_old_values_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v1) = Keyring::generate(dir.path(), "pii").unwrap();
    Keyring::generate(dir.path(), "email-hash").unwrap();
    let before = Keyring::from_dir(dir.path()).unwrap();
    let old = seal(&before, "pii", b"alice@example.com", b"user:1").unwrap();
    let old_hash = keyed_hash(&before, "email-hash", b"alice@example.com").unwrap();
    assert_eq!(parse_header(&old).unwrap().version, v1);

    let (path, v2) = Keyring::generate(dir.path(), "pii").unwrap();
    assert_eq!((v1, v2), (1, 2));
    assert!(path.ends_with("pii.v2.key"), "{}", path.display());
    let after = Keyring::from_dir(dir.path()).unwrap();
    let new = seal(&after, "pii", b"bob@example.com", b"user:2").unwrap();
    assert_eq!(parse_header(&new).unwrap().version, 2);
    assert_eq!(open(&after, &old, b"user:1").unwrap(), b"alice@example.com");
    assert_eq!(open(&after, &new, b"user:2").unwrap(), b"bob@example.com");
    // Other keys are untouched by the rotation.
    assert_eq!(
        keyed_hash(&after, "email-hash", b"alice@example.com").unwrap(),
        old_hash
    );

    // A reader that was never given v2 names what it lacks.
    let err = open(&before, &new, b"user:2").unwrap_err();
    assert!(
        matches!(&err, CryptoError::UnknownVersion { name, version: 2 } if name == "pii"),
        "{err}"
    );
}

#[test]
fn directory_and_variables_combine() {
    let dir = tempfile::tempdir().unwrap();
    Keyring::generate(dir.path(), "pii").unwrap();
    let mut ring = Keyring::from_dir(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("pii.v1.key")).unwrap();
    // The same version with the same bytes from both places is fine.
    let same = Keyring::from_vars([("REDIS_SPANNER_KEY_PII_V1", text.trim())]).unwrap();
    ring.merge(same).unwrap();
    // With other bytes it is a conflict naming both places.
    let other = Keyring::from_vars([(
        "REDIS_SPANNER_KEY_PII_V1",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )])
    .unwrap();
    let message = ring.merge(other).unwrap_err().to_string();
    assert!(
        message.contains("pii.v1.key") && message.contains("REDIS_SPANNER_KEY_PII_V1"),
        "{message}"
    );
}
