//! `REDIS_SPANNER__…` environment variables reach the real binary's
//! configuration: `status` asks the admin address a variable sets, and an
//! unknown setting in a variable's name is refused, naming the variable.

use crate::support;

#[test]
fn settings_from_the_environment_reach_the_binary() {
    let temp = tempfile::tempdir().unwrap();
    let config = support::config_file(temp.path(), "", "url = \"redis://127.0.0.1:6379\"", "");
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status = |name: &str, value: &str| {
        support::binary()
            .arg("status")
            .arg("--config")
            .arg(&config)
            .env(name, value)
            .output()
            .expect("run redis-spanner status")
    };

    let output = status("REDIS_SPANNER__ADMIN__LISTEN", &format!("127.0.0.1:{port}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the service at http://127.0.0.1:{port}/status"
        )),
        "{stderr}"
    );

    let output = status("REDIS_SPANNER__ADMIN__LISTENN", "127.0.0.1:1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("environment variable REDIS_SPANNER__ADMIN__LISTENN")
            && stderr.contains("unknown field `listenn`"),
        "{stderr}"
    );
}
