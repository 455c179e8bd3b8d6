//! The host talks mutual TLS to redis-server: certificates made here with
//! openssl, a redis-server listening only on a TLS port, and the service
//! caching a Spanner change through it with its client certificate.

use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::schema;
use redis_spanner::redis_connection::tls::RedisTls;
use redis_spanner::service::Service;
use redis_spanner_tests::{RunningService, TestBed, eventually, plugin_dir, upsert_user};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {}", args.join(" "));
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=redis-spanner test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    // The host's client certificate, for mutual TLS: an X.509 v3
    // certificate (rustls refuses v1 ones) for client authentication.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=redis-spanner host",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    );
}

/// Connects with `tls` and answers a PING, or fails.
async fn ping(url: &str, tls: &RedisTls) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let certificates = tls.certificates().map_err(anyhow::Error::msg)?;
    let client = redis::Client::build_with_tls(url, certificates)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(conn)
}

/// redis-server with TLS only (no plain port), requiring a client
/// certificate signed by the test CA (mutual TLS).
struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_redis(dir: &Path) -> TlsRedis {
    let port = redis_spanner::devtools::local::ports::free_port().unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
        ])
        .args([
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "yes",
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    TlsRedis { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_caches_through_a_tls_only_redis() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    make_certificates(certs.path());
    let server = start_tls_redis(certs.path());
    let url = format!("rediss://localhost:{}", server.port);
    let tls = RedisTls {
        ca_file: Some(certs.path().join("ca.pem")),
        cert_file: Some(certs.path().join("client.pem")),
        key_file: Some(certs.path().join("client.key")),
    };

    // Our CA and client certificate make the connection; no client
    // certificate, the plain protocol and the system roots do not.
    let ready = eventually(Duration::from_secs(10), || {
        let (url, tls) = (url.clone(), tls.clone());
        async move { ping(&url, &tls).await.ok() }
    })
    .await;
    let mut redis = ready.expect("TLS redis-server accepts our CA and client certificate");
    let without_client_certificate = RedisTls {
        cert_file: None,
        key_file: None,
        ..tls.clone()
    };
    assert!(
        ping(&url, &without_client_certificate).await.is_err(),
        "a client without a certificate is refused (mutual TLS)"
    );
    let plain = redis::Client::open(format!("redis://localhost:{}", server.port))?;
    assert!(
        plain.get_multiplexed_async_connection().await.is_err(),
        "plain text refused"
    );
    let system_roots = redis::Client::open(url.as_str())?;
    assert!(
        system_roots
            .get_multiplexed_async_connection()
            .await
            .is_err(),
        "a certificate from an unknown CA is refused"
    );

    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.redis.url = url.clone();
    config.redis.tls = Some(tls);
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    upsert_user(&spanner, 7, "over TLS", None).await?;
    let cached = redis_spanner_tests::eventually_get(&redis, "users:7", Duration::from_secs(30))
        .await
        .expect("users:7 cached through TLS");
    assert!(cached.contains("\"Name\":\"over TLS\""), "{cached}");
    let _: () = redis.del("users:7").await?;
    running.shutdown().await
}
