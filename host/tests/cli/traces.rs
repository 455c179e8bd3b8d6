//! With `[telemetry] otlp_endpoint` set, the binary exports each batch's
//! path as OpenTelemetry spans: checked against a small OTLP/HTTP receiver
//! started here, which decodes what it is sent.

use crate::hosts::Host;
use crate::support::{binary, service_config};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use redis_spanner_tests::{TestBed, eventually, eventually_get, plugin_dir, upsert_user};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every span the receiver was sent.
type Received = Arc<Mutex<Vec<Span>>>;

/// Starts an OTLP/HTTP receiver on a free port: `POST /v1/traces` with a
/// protobuf `ExportTraceServiceRequest`.
async fn start_receiver() -> anyhow::Result<(std::net::SocketAddr, Received)> {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let spans = request
                    .resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans);
                sink.lock().unwrap().extend(spans);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, received))
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_path_is_exported_as_spans_under_one_trace() -> anyhow::Result<()> {
    let bed = TestBed::start(&redis_spanner::devtools::demo::schema::ddl()).await?;
    let (receiver, received) = start_receiver().await?;
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir()?;
    let config = service_config(
        &bed,
        plugins.path(),
        work.path(),
        &format!("[telemetry]\notlp_endpoint = \"http://{receiver}\"\nexport_ms = 100\n"),
    );
    let log = std::fs::File::create(work.path().join("host.log"))?;
    let _host = Host(
        binary()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;
    // Rows keep coming until one is cached: the host may still be starting.
    let mut cached = None;
    for id in 7_001..7_030 {
        upsert_user(&spanner, id, "traced", None).await?;
        cached = eventually_get(&redis, &format!("users:{id}"), Duration::from_secs(2)).await;
        if cached.is_some() {
            break;
        }
    }
    assert!(
        cached.is_some(),
        "no row reached Redis; host log:\n{}",
        std::fs::read_to_string(work.path().join("host.log")).unwrap_or_default()
    );

    let stages = [
        "change_stream.read",
        "plugin",
        "plugin.call",
        "grant.check",
        "redis.apply",
        "audit.append",
        "checkpoint",
    ];
    let complete = eventually(Duration::from_secs(30), || {
        let received = received.clone();
        async move {
            let spans = received.lock().unwrap().clone();
            let batch = spans.iter().find(|s| {
                s.name == "batch"
                    && spans
                        .iter()
                        .any(|c| c.name == "redis.apply" && c.trace_id == s.trace_id)
            })?;
            let in_trace: Vec<&Span> = spans
                .iter()
                .filter(|s| s.trace_id == batch.trace_id)
                .collect();
            stages
                .iter()
                .all(|stage| in_trace.iter().any(|s| s.name == *stage))
                .then(|| (batch.clone(), spans.clone()))
        }
    })
    .await;
    let spans = received.lock().unwrap().clone();
    let Some((batch, spans)) = complete else {
        let names: std::collections::BTreeSet<&str> =
            spans.iter().map(|s| s.name.as_str()).collect();
        panic!("no batch trace holds every stage {stages:?}; span names received: {names:?}");
    };
    // The commit timestamp is an attribute of the batch, and every stage
    // hangs under it.
    let Some(Value::StringValue(committed)) = attribute(&batch, "commit_timestamp") else {
        panic!("the batch span has no commit_timestamp: {batch:?}");
    };
    assert!(committed.ends_with('Z'), "{committed}");
    let by_id: std::collections::HashMap<&[u8], &Span> = spans
        .iter()
        .filter(|s| s.trace_id == batch.trace_id)
        .map(|s| (s.span_id.as_slice(), s))
        .collect();
    for span in by_id.values() {
        let mut at = *span;
        while !at.parent_span_id.is_empty() {
            at = by_id
                .get(at.parent_span_id.as_slice())
                .unwrap_or_else(|| panic!("span {} has a parent not sent", at.name));
        }
        assert_eq!(
            at.span_id, batch.span_id,
            "{} is not under the batch",
            span.name
        );
    }
    let apply = by_id.values().find(|s| s.name == "redis.apply").unwrap();
    let parent = by_id[apply.parent_span_id.as_slice()];
    assert_eq!(
        parent.name, "plugin",
        "redis.apply sits in its plugin's span"
    );
    assert!(
        matches!(attribute(parent, "plugin"), Some(Value::StringValue(p)) if p.starts_with("users_cache")),
        "the plugin span names its plugin: {parent:?}"
    );
    Ok(())
}
