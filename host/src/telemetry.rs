//! Traces of each batch's path, exported as OpenTelemetry spans over OTLP.
//!
//! The pipeline marks its stages with `tracing` spans: a `batch` span per
//! batch of row changes a partition reads (with the first and last commit
//! timestamps, and how long after its commit the host had the first change),
//! and under it `change_stream.read`, one `plugin` span per plugin lane with
//! `plugin.call`, `grant.check`, `redis.apply` and `audit.append` in it, and
//! `checkpoint` when the partition's watermark is written. With
//! `[telemetry] otlp_endpoint` set, [`otlp_layer`] sends those spans to an
//! OTLP/HTTP collector (protobuf), so a team sees Spanner's delivery and the
//! host's stages in its own tracing stack. Unset, spans cost only the log
//! subscriber's bookkeeping.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tracing_subscriber::registry::LookupSpan;

/// The `[telemetry]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`http://collector:4318`); spans go
    /// to `<otlp_endpoint>/v1/traces`. Unset: no traces are exported.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Extra HTTP headers sent with each export (an API key, a tenant).
    #[serde(default)]
    pub otlp_headers: HashMap<String, String>,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How often finished spans are sent, in milliseconds.
    #[serde(default = "default_export_ms")]
    pub export_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_headers: HashMap::new(),
            service_name: default_service_name(),
            export_ms: default_export_ms(),
        }
    }
}

fn default_service_name() -> String {
    "redis-spanner".to_owned()
}

fn default_export_ms() -> u64 {
    1000
}

/// Spans that cannot be sent (the collector is down) beyond this many are
/// dropped, so an absent collector never grows the host's memory.
const MAX_QUEUED_SPANS: usize = 8192;

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("[telemetry] otlp_endpoint {endpoint:?}: {message}")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

/// The OTLP exporter, kept alive while spans are exported; [`TraceExport::shutdown`]
/// sends what is still queued.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Sends the spans still queued and stops exporting (blocks up to the
    /// export timeout: call it off the async runtime).
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "could not send the last spans to the OTLP collector");
        }
    }
}

/// The endpoint spans are posted to for the configured base URL.
pub fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// A log subscriber layer that turns spans into OpenTelemetry spans.
pub type OtlpLayer<S> =
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// A layer sending the spans it sees to the configured collector, and the
/// handle that flushes it; `None` when no endpoint is configured.
pub fn otlp_layer<S>(
    config: &TelemetryConfig,
) -> Result<Option<(OtlpLayer<S>, TraceExport)>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(base) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let failed = |message: String| TelemetryError {
        endpoint: base.clone(),
        message,
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(failed(
            "must be an http:// or https:// URL (OTLP over HTTP, for example http://localhost:4318)"
                .to_owned(),
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(base))
        .with_headers(config.otlp_headers.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| failed(err.to_string()))?;
    let batching = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(config.export_ms.max(10)))
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batching)
                .build(),
        )
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("redis-spanner");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, TraceExport { provider })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_to_the_base_url() {
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
    }

    #[test]
    fn an_endpoint_that_is_not_http_is_refused_by_name() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("collector:4317".to_owned()),
            ..TelemetryConfig::default()
        };
        let err = otlp_layer::<tracing_subscriber::Registry>(&config)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("collector:4317"), "{err}");
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
