//! Bad input gets one clear error naming what and where, never a panic.

use redis_spanner::service::Service;
use redis_spanner_tests::{TestBed, plugin, plugin_dir};

fn ddl() -> Vec<String> {
    vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX)) PRIMARY KEY (UserId)".into(),
        "CREATE CHANGE STREAM UsersStream FOR Users OPTIONS (value_capture_type = 'NEW_ROW')"
            .into(),
    ]
}

/// The error of a service start with the plugins of `dir`, every one of them
/// listed in `plugins.required` (a plugin that is not required and fails is
/// refused with the same message, and the others start).
async fn connect_error(bed: &TestBed, stream: &str, dir: &std::path::Path) -> String {
    let mut config = bed.config(stream, dir);
    config.plugins.required = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    entry
                        .ok()?
                        .path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    match Service::connect(&config).await {
        Ok(_) => panic!("connect unexpectedly succeeded"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_and_endpoints_are_named() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let good = plugin_dir(&["users_cache"]);

    let err = connect_error(&bed, "NoSuchStream", good.path()).await;
    assert!(
        err.contains("change stream NoSuchStream does not exist"),
        "{err}"
    );

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("garbage.wasm"), b"this is not wasm")?;
    let err = connect_error(&bed, "UsersStream", dir.path()).await;
    assert!(
        err.contains("required plugin garbage")
            && err.contains("garbage.wasm")
            && err.contains("not a valid WebAssembly"),
        "{err}"
    );
    // Not required: refused, and the service starts without it.
    assert!(
        Service::connect(&bed.config("UsersStream", dir.path()))
            .await
            .is_ok(),
        "a plugin that is not required does not stop the start"
    );

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0")?;
    let err = connect_error(&bed, "UsersStream", dir.path()).await;
    assert!(
        err.contains("core.wasm") && err.contains("core WebAssembly module"),
        "{err}"
    );

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0")?;
    let err = connect_error(&bed, "UsersStream", dir.path()).await;
    assert!(
        err.contains("empty.wasm") && err.contains("does not implement world"),
        "{err}"
    );

    let dir = tempfile::tempdir()?;
    let bytes = std::fs::read(plugin("users_cache"))?;
    std::fs::write(dir.path().join("truncated.wasm"), &bytes[..bytes.len() / 2])?;
    let err = connect_error(&bed, "UsersStream", dir.path()).await;
    assert!(err.contains("truncated.wasm"), "{err}");

    let dir = tempfile::tempdir()?;
    let err = connect_error(&bed, "UsersStream", dir.path()).await;
    assert!(err.contains("holds no *.wasm plugin"), "{err}");

    let mut config = bed.config("UsersStream", good.path());
    config.redis.url = "redis://127.0.0.1:1".into();
    let err = match Service::connect(&config).await {
        Ok(_) => panic!("connect to a closed Redis port succeeded"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("cannot connect to Redis at redis://127.0.0.1:1"),
        "{err}"
    );

    let mut config = bed.config("UsersStream", good.path());
    config.spanner.database = "nosuchdb".into();
    let err = match Service::connect(&config).await {
        Ok(_) => panic!("connect to a missing database succeeded"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("nosuchdb") && err.contains(&bed.emulator.grpc_endpoint()),
        "{err}"
    );
    Ok(())
}
