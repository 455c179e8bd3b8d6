//! One attempt at starting the gateway on a pair of ports: the wrapper script
//! that passes our flags to `emulator_main`, and the probes that say it is up.

use super::*;

/// One attempt at starting the gateway on a given pair of ports.
pub(super) struct Launch<'a> {
    /// `gateway_main`.
    pub(super) gateway: &'a Path,
    /// The wrapper script given as `--grpc_binary`.
    pub(super) wrapper: &'a Path,
    /// Port for `emulator_main`'s gRPC server.
    pub(super) grpc_port: u16,
    /// Port for the gateway's REST server.
    pub(super) http_port: u16,
    /// Where output goes.
    pub(super) log_path: &'a Path,
    /// Timeouts and gateway flags.
    pub(super) options: &'a EmulatorOptions,
}

impl Launch<'_> {
    /// Describes the server for error messages.
    pub(super) fn describe(&self) -> String {
        format!(
            "the Spanner emulator ({}, gRPC 127.0.0.1:{}, REST 127.0.0.1:{})",
            self.gateway.display(),
            self.grpc_port,
            self.http_port
        )
    }

    /// Starts the gateway and waits until both ports answer.
    pub(super) async fn run(&self) -> Result<Processes, LocalError> {
        let (stdout, log_start) = crate::devtools::local::open_log(self.log_path)?;
        let stderr = crate::devtools::local::clone_log(&stdout, self.log_path)?;
        let gateway = Command::new(self.gateway)
            .args(["--hostname", "127.0.0.1"])
            .arg(format!("--grpc_port={}", self.grpc_port))
            .arg(format!("--http_port={}", self.http_port))
            .arg("--grpc_binary")
            .arg(self.wrapper)
            .args(self.options.gateway_flags())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|error| LocalError::Spawn {
                program: self.gateway.to_owned(),
                error,
            })?;
        let mut processes = Processes {
            gateway,
            killed: false,
            gateway_reaped: false,
            emulator_pid: None,
            grpc_port: self.grpc_port,
        };

        let started = Instant::now();
        loop {
            match processes.gateway.try_wait() {
                Ok(Some(status)) => {
                    processes.gateway_reaped = true;
                    // Kills whatever the gateway left running.
                    drop(processes);
                    return Err(LocalError::ExitedEarly {
                        server: self.describe(),
                        status: status.to_string(),
                        log: self.log_path.to_owned(),
                        tail: crate::devtools::local::log_tail(self.log_path, log_start),
                    });
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "could not poll gateway_main"),
            }
            if ports::accepts_connections(self.grpc_port).await
                && http_answers(self.http_port).await
            {
                processes.emulator_pid = find_emulator(processes.gateway.id());
                // Another emulator on the same port (SO_REUSEPORT) answers
                // too: ready means our own emulator listens.
                let ours = processes
                    .emulator_pid
                    .is_some_and(|pid| ports::process_listens_on(pid, self.grpc_port));
                if ours {
                    if ports::listening_sockets(self.grpc_port) > 1 {
                        drop(processes);
                        return Err(LocalError::PortShared {
                            server: self.describe(),
                            port: self.grpc_port,
                            log: self.log_path.to_owned(),
                            tail: crate::devtools::local::log_tail(self.log_path, log_start),
                        });
                    }
                    return Ok(processes);
                }
            }
            if started.elapsed() >= self.options.start_timeout {
                drop(processes);
                return Err(LocalError::NotReady {
                    server: self.describe(),
                    waited: self.options.start_timeout,
                    log: self.log_path.to_owned(),
                    tail: crate::devtools::local::log_tail(self.log_path, log_start),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// True when the REST port answers an HTTP request with any status: the
/// gateway answers 200 for an unknown project's instance list, and 500 for
/// some missing resources.
pub(super) async fn http_answers(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        let request = format!(
            "GET /v1/projects/redis-spanner-probe/instances HTTP/1.1\r\n\
             Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        let mut len = 0;
        while len < head.len() {
            let n = stream.read(&mut head[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        std::io::Result::Ok(head[..len].starts_with(b"HTTP/1."))
    };
    matches!(
        tokio::time::timeout(HTTP_PROBE_TIMEOUT, probe).await,
        Ok(Ok(true))
    )
}

/// Writes the `--grpc_binary` wrapper: a shell script that `exec`s
/// `emulator_main` with the gateway's arguments and then `flags`.
pub(super) fn write_wrapper(
    path: &Path,
    emulator_main: &Path,
    flags: &[String],
) -> Result<(), LocalError> {
    let mut script = String::from(
        "#!/bin/sh\n# Runs emulator_main with extra flags; exec keeps the process id.\nexec ",
    );
    script.push_str(&shell_quote(&emulator_main.to_string_lossy()));
    script.push_str(" \"$@\"");
    for flag in flags {
        let _ = write!(script, " {}", shell_quote(flag));
    }
    script.push('\n');

    let io_error = |error| LocalError::Io {
        action: "write the emulator wrapper script",
        path: path.to_owned(),
        error,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)
        .map_err(io_error)?;
    file.write_all(script.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// Quotes `text` for `sh` with single quotes.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
