//! Where log lines go and how they look: to stderr, plain text (coloured
//! only on a terminal, and never with `NO_COLOR` set) or one JSON object
//! per line for log shippers. `RUST_LOG` picks what is logged. Once the
//! configuration is read, [`Logging::export_traces`] adds the OTLP span
//! exporter of `[telemetry]` (see `redis_spanner::telemetry`).

use redis_spanner::telemetry::{TelemetryConfig, TelemetryError, TraceExport};
use std::io::IsTerminal as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry, reload};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `spans`).
    Json,
}

/// The span exporter's place in the subscriber: empty until traces are on.
type TraceSlot = Option<Box<dyn Layer<Registry> + Send + Sync>>;

/// The installed subscriber, to which traces can be added later.
pub struct Logging {
    traces: reload::Handle<TraceSlot, Registry>,
}

/// Installs the global log subscriber.
pub fn init(format: LogFormat) -> Logging {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,redis_spanner=info".into());
    let (traces, handle) = reload::Layer::new(TraceSlot::None);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Json => lines.json().boxed(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            lines.with_ansi(colour).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(filter)
        .with(lines)
        .init();
    Logging { traces: handle }
}

impl Logging {
    /// Starts sending spans to the OTLP collector of `config`; `None` when
    /// none is configured. Shut the returned export down before exiting.
    pub fn export_traces(
        &self,
        config: &TelemetryConfig,
    ) -> Result<Option<TraceExport>, TelemetryError> {
        let Some((layer, export)) = redis_spanner::telemetry::otlp_layer::<Registry>(config)?
        else {
            return Ok(None);
        };
        if let Err(err) = self.traces.reload(Some(layer.boxed())) {
            tracing::warn!(error = %err, "could not turn on trace export");
            return Ok(None);
        }
        tracing::info!(
            endpoint = config.otlp_endpoint.as_deref().unwrap_or_default(),
            "exporting traces over OTLP"
        );
        if !tracing::enabled!(target: "redis_spanner", tracing::Level::INFO) {
            // RUST_LOG also decides which spans exist.
            eprintln!(
                "warning: traces are exported only for what RUST_LOG enables; it leaves out \
                 redis_spanner's info spans, so no batch is traced (add redis_spanner=info)"
            );
        }
        Ok(Some(export))
    }
}
