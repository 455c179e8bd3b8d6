//! Running the real `redis-spanner` binary in the host's CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A command for the binary cargo built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
}

/// The standard output of a run that must have succeeded; otherwise fails
/// the test with `args` and both outputs.
pub fn expect_success(args: &[&str], output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "redis-spanner {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Writes a minimal configuration into `dir` and returns its path: Spanner
/// database `p/i/d`, stream `s`, plus `spanner_lines`; `[redis]` holding
/// `redis_lines`; plugins from `dir`; then `tail`.
pub fn config_file(dir: &Path, spanner_lines: &str, redis_lines: &str, tail: &str) -> PathBuf {
    let path = dir.join("redis-spanner.toml");
    std::fs::write(
        &path,
        format!(
            "[spanner]\nproject = \"p\"\ninstance = \"i\"\ndatabase = \"d\"\n\
             change_stream = \"s\"\n{spanner_lines}\n\n[redis]\n{redis_lines}\n\n\
             [plugins]\ndir = \"{}\"\n\n{tail}",
            dir.display()
        ),
    )
    .expect("write the configuration");
    path
}

/// The file the service of the configuration at `config` writes its admin
/// server's address to (the benches' convention).
fn admin_address_file(config: &Path) -> PathBuf {
    redis_spanner::devtools::service_process::admin_address_file(config)
}

/// Writes the configuration of a service on `bed` (demo schema, stream and
/// database; plugins from `plugins`; the users_cache grant; admin server on
/// a port it picks, written to a file [`admin_port`] reads) plus `tail`
/// into `dir`, and returns its path.
pub fn service_config(
    bed: &redis_spanner_tests::TestBed,
    plugins: &Path,
    dir: &Path,
    tail: &str,
) -> PathBuf {
    let path = dir.join("redis-spanner.toml");
    let text = format!(
        r#"
[spanner]
project = "{project}"
instance = "{instance}"
database = "{database}"
change_stream = "{stream}"
emulator_host = "{grpc}"
emulator_rest = "{rest}"

[redis]
url = "{redis}"

[plugins]
dir = "{plugins}"

[admin]
listen = "127.0.0.1:0"
address_file = "{address_file}"

[grants.users_cache]
key_prefixes = ["users:"]

{tail}
"#,
        project = redis_spanner_tests::PROJECT,
        instance = redis_spanner_tests::INSTANCE,
        database = redis_spanner_tests::DATABASE,
        stream = redis_spanner::devtools::demo::schema::STREAM,
        grpc = bed.emulator.grpc_endpoint(),
        rest = bed.emulator.rest_endpoint(),
        redis = bed.redis.url(),
        plugins = plugins.display(),
        address_file = admin_address_file(&path).display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The admin port of the service started with `config` (written by
/// [`service_config`]), once it listens: the service binds a port of its
/// own choosing and writes it to a file, so no other process can take the
/// port between choosing and binding it. Before starting a service on
/// `config` again, call [`forget_admin_port`]. Fails the test after 60 s.
pub async fn admin_port(config: &Path) -> u16 {
    let file = admin_address_file(config);
    let port = redis_spanner_tests::eventually(std::time::Duration::from_secs(60), || async {
        redis_spanner::admin_address::read(&file)
            .ok()
            .map(|address| address.port())
    })
    .await;
    port.unwrap_or_else(|| panic!("the service never wrote {}", file.display()))
}

/// Whether a service on `config` has an admin address written now.
pub fn admin_address_written(config: &Path) -> bool {
    admin_address_file(config).exists()
}

/// Removes the admin address the last service on `config` wrote, so that
/// [`admin_port`] waits for the next one's.
pub fn forget_admin_port(config: &Path) {
    let _ = std::fs::remove_file(admin_address_file(config));
}

/// Waits until the service whose admin server listens on `port` answers
/// `/readyz` with 200: it follows its stream, so every change committed
/// from then on reaches it. Fails the test after 60 s.
pub async fn wait_until_ready(port: u16) {
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let ready = redis_spanner_tests::eventually(std::time::Duration::from_secs(60), || async {
        let (status, _) = redis_spanner_tests::http_get(address, "/readyz")
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the service on port {port} never became ready"
    );
}

/// Adds `lines` to the `[spanner]` table of the configuration at `config`
/// (written by [`service_config`]).
pub fn add_spanner_settings(config: &Path, lines: &str) {
    let text = std::fs::read_to_string(config)
        .expect("read the configuration")
        .replacen("[spanner]\n", &format!("[spanner]\n{lines}\n"), 1);
    std::fs::write(config, text).expect("write the configuration");
}
