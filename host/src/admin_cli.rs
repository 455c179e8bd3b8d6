//! `redis-spanner admin …`: the admin API's client. Each command sends one
//! call with a bearer token or over mutual TLS with a client certificate,
//! and prints the answer; a refused call prints why and exits 1.

use clap::{Args, Subcommand};
use redis_spanner::admin_api::wire::{InvalidateRequest, OperationStatus, RefreshRequest};
use redis_spanner::config::Config;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where the service is and who calls.
#[derive(Args)]
pub struct AdminTarget {
    /// The service's TOML configuration (its `admin.listen` is called).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The admin server's address instead (e.g. `http://10.0.0.5:9464`).
    #[arg(long, global = true, env = "REDIS_SPANNER_ADMIN_URL")]
    url: Option<String>,
    /// A file holding the bearer token (an OIDC ID or access token from the
    /// issuer the service trusts).
    #[arg(long, global = true, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The bearer token itself (prefer --token-file: a command line is
    /// visible to other users of the machine).
    #[arg(
        long,
        global = true,
        env = "REDIS_SPANNER_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// With an https:// address: a CA certificate (PEM) to trust for the
    /// service's certificate, beside the system's.
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// With an https:// address: a client certificate (PEM) naming the
    /// caller (mutual TLS; then no token is needed).
    #[arg(long, global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

/// The admin API's calls.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Who the token says you are, and which roles apply.
    Whoami,
    /// Loaded plugins: digest, contract, grant, lane health.
    Plugins,
    /// The change stream's partitions: state, watermark, lag.
    Partitions,
    /// The newest audit records.
    Audit {
        /// How many (at most 1000).
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Delete keys, or every key under a prefix, at a Spanner timestamp
    /// (a late replay of an older change cannot bring them back).
    Invalidate {
        /// A key (repeat for more).
        #[arg(
            long = "key",
            required_unless_present = "prefix",
            conflicts_with = "prefix"
        )]
        keys: Vec<String>,
        /// Every key under this prefix, in steps, in the background.
        #[arg(long)]
        prefix: Option<String>,
        /// With --prefix: return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Progress of a prefix invalidation.
    Operation {
        /// Its id.
        id: u64,
    },
    /// Cancel a prefix invalidation after its current step.
    Cancel {
        /// Its id.
        id: u64,
    },
    /// Read a row again from Spanner and hand it to the plugins.
    Refresh {
        /// The table.
        #[arg(long)]
        table: String,
        /// A primary key column as NAME=VALUE (a JSON value: 42, "text",
        /// true; bare text is a string). Repeat for each key column.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
    },
    /// Resync a plugin from a snapshot of its tables.
    Resync {
        /// The plugin.
        plugin: String,
    },
    /// Replay a plugin's dead letters.
    Replay {
        /// The plugin.
        plugin: String,
    },
    /// Pause a plugin's lane (recorded, held until resumed).
    Pause {
        /// The plugin.
        plugin: String,
    },
    /// Resume a paused plugin (it is resynced).
    Resume {
        /// The plugin.
        plugin: String,
    },
}

/// Runs one admin command against the service `target` names.
pub async fn run(target: AdminTarget, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(&target)?;
    let answer = match command {
        AdminCommand::Whoami => client.get("/v1/whoami").await?,
        AdminCommand::Plugins => client.get("/v1/plugins").await?,
        AdminCommand::Partitions => client.get("/v1/partitions").await?,
        AdminCommand::Audit { count } => client.get(&format!("/v1/audit?count={count}")).await?,
        AdminCommand::Operation { id } => client.get(&format!("/v1/operations/{id}")).await?,
        AdminCommand::Cancel { id } => client.delete(&format!("/v1/operations/{id}")).await?,
        AdminCommand::Invalidate {
            keys,
            prefix,
            no_wait,
        } => {
            let following = prefix.is_some() && !no_wait;
            let body = serde_json::to_value(InvalidateRequest { keys, prefix })?;
            let answer = client.post("/v1/invalidate", &body).await?;
            match answer {
                Ok(started) if following => return client.follow(started).await,
                other => other,
            }
        }
        AdminCommand::Refresh {
            table,
            keys,
            plugin,
        } => {
            let key = keys
                .iter()
                .map(|pair| key_column(pair))
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            let body = serde_json::to_value(RefreshRequest { table, key, plugin })?;
            client.post("/v1/refresh", &body).await?
        }
        AdminCommand::Resync { plugin } => client.plugin_call(&plugin, "resync").await?,
        AdminCommand::Replay { plugin } => client.plugin_call(&plugin, "replay").await?,
        AdminCommand::Pause { plugin } => client.plugin_call(&plugin, "pause").await?,
        AdminCommand::Resume { plugin } => client.plugin_call(&plugin, "resume").await?,
    };
    Ok(print(answer))
}

/// `NAME=VALUE`, the value read as JSON when it is JSON, else as text.
fn key_column(pair: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let (name, value) = pair
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--key {pair:?}: expected NAME=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::json!(value));
    Ok((name.to_owned(), value))
}

/// Prints an answer: the JSON of a success, the error of a refusal.
fn print(answer: Result<serde_json::Value, String>) -> ExitCode {
    match answer {
        Ok(body) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            ExitCode::FAILURE
        }
    }
}

/// The admin server's address: `url`, else the config's `admin.listen`
/// (`https://` when it has `[admin.tls]`), its port 0 replaced by the port
/// the service wrote to `admin.address_file`.
pub fn admin_address(config: Option<&Path>, url: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let config = config.ok_or_else(|| {
        anyhow::anyhow!("give --config (the service's file) or --url (its admin address)")
    })?;
    let admin = Config::load(config)?.admin;
    let scheme = if admin.tls.is_some() { "https" } else { "http" };
    let listen = admin.listen.ok_or_else(|| {
        anyhow::anyhow!(
            "admin.listen is unset in {}: the service serves no admin server; give --url",
            config.display()
        )
    })?;
    // The host part, when the port is 0 (however written: `:0`, `:00`).
    let picked_port_host = listen
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>() == Ok(0))
        .map(|(host, _)| host);
    if let (Some(host), Some(file)) = (picked_port_host, &admin.address_file) {
        // The host as configured (a certificate may name it), the port as
        // bound.
        let bound = redis_spanner::admin_address::read(file)?;
        let host = match host {
            "0.0.0.0" => "127.0.0.1",
            "[::]" => "[::1]",
            named => named,
        };
        return Ok(format!("{scheme}://{host}:{}", bound.port()));
    }
    anyhow::ensure!(
        picked_port_host.is_none(),
        "admin.listen = {listen:?} in {} lets the service pick a free port, which this \
         command cannot know: give --url http://HOST:PORT (the port is in the service's \
         start-up log), or set admin.address_file",
        config.display()
    );
    Ok(format!("{scheme}://{listen}"))
}

/// An HTTP client with the caller's token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One call's answer: the body of a success, or the error the service gave.
type Answer = Result<serde_json::Value, String>;

impl Client {
    fn new(target: &AdminTarget) -> anyhow::Result<Self> {
        let base = admin_address(target.config.as_deref(), target.url.clone())?;
        let token = match (&target.token_file, &target.token) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read --token-file {}: {e}", file.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(token)) => Some(token.trim().to_owned()),
            (None, None) if target.client_cert.is_some() => None,
            (None, None) => anyhow::bail!(
                "no token: give --token-file FILE or set REDIS_SPANNER_ADMIN_TOKEN (a token from the issuer the service trusts), or --client-cert and --client-key"
            ),
        };
        let read = |flag: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read --{flag} {}: {e}", path.display()))
        };
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(120));
        if let Some(ca) = &target.ca_file {
            let pem = read("ca-file", ca)?;
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("--ca-file {}: not a PEM certificate: {e}", ca.display())
                })?);
        }
        if let (Some(cert), Some(key)) = (&target.client_cert, &target.client_key) {
            let mut pem = read("client-cert", cert)?;
            pem.extend(read("client-key", key)?);
            http = http.identity(reqwest::Identity::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "--client-cert {} and --client-key {}: not a PEM certificate and key: {e}",
                    cert.display(),
                    key.display()
                )
            })?);
        }
        let http = http.build()?;
        Ok(Self { http, base, token })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn plugin_call(&self, plugin: &str, action: &str) -> anyhow::Result<Answer> {
        self.post(
            &format!("/v1/plugins/{plugin}/{action}"),
            &serde_json::json!({}),
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the service at {}: {e}", self.base))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| {
            anyhow::anyhow!(
                "{} answered {status} with a body that is not JSON: {e}",
                self.base
            )
        })?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        let error = body
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        Ok(Err(format!("{status}: {error}")))
    }

    /// Follows a prefix invalidation, printing its progress, until it ends.
    async fn follow(&self, started: serde_json::Value) -> anyhow::Result<ExitCode> {
        let mut status: OperationStatus = serde_json::from_value(started)?;
        eprintln!(
            "operation {}: deleting every key under {:?} at {} (cancel: redis-spanner admin cancel {})",
            status.id, status.prefix, status.version_timestamp, status.id
        );
        loop {
            if status.ended() {
                let failed = status.state != "done";
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.get(&format!("/v1/operations/{}", status.id)).await? {
                Ok(body) => status = serde_json::from_value(body)?,
                Err(refusal) => return Ok(print(Err(refusal))),
            }
            eprintln!(
                "{}: {} keys looked at, {} deleted, {} newer kept",
                status.state, status.scanned, status.deleted, status.newer
            );
        }
    }
}
