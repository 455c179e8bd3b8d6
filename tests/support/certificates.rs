//! Certificates for tests of the admin listener's TLS, made with openssl.

/// Certificates made with openssl in `dir`: a CA, a server certificate for
/// 127.0.0.1 and a client certificate `bot` (CN=svc-bot) signed by it, and
/// `impostor` (CN=svc-bot too) signed by another CA.
pub fn make_admin_certificates(dir: &std::path::Path) {
    let script = r#"set -e
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.pem -days 1 -subj "/CN=$1 test CA"; }
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj "$4"
  printf '%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 1 -extfile $1.ext
}
ca ca; ca rogue
leaf server ca "subjectAltName=DNS:localhost,IP:127.0.0.1" "/CN=localhost"
leaf bot ca "extendedKeyUsage=clientAuth" "/CN=svc-bot"
leaf impostor rogue "extendedKeyUsage=clientAuth" "/CN=svc-bot"
"#;
    let made = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}
