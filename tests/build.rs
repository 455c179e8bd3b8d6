//! Builds the guest plugins the tests load, for wasm32-wasip2, into
//! `target/plugins` (shared with `scripts/setup`, so nothing builds twice).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_owned();
    for watched in ["plugins", "plugin-sdk/src", "plugin-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = root.join("target/plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("cannot run cargo to build the test plugins");
    assert!(
        status.success(),
        "building the test plugins failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)"
    );
    // Compiled code shared by the test beds (see `shared_compile_cache`).
    println!(
        "cargo:rustc-env=REDIS_SPANNER_TEST_COMPILE_CACHE={}",
        target_dir.join("compiled").display()
    );
    println!(
        "cargo:rustc-env=REDIS_SPANNER_TEST_PLUGINS={}",
        target_dir.join("wasm32-wasip2/release").display()
    );
}
