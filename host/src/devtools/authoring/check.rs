//! `redis-spanner plugin check`: what a component is and whether this host
//! would load it: world, SDK API version, imports, size, compile and init time.

use super::run::compile_cache_dir;
use crate::contract::version::{SUPPORTED_API_VERSIONS, check_compatible, read_api_version};
use crate::runtime::cache::{compile, prune_except};
use crate::runtime::signing::digest_hex;
use crate::runtime::{LoadOptions, Plugin, PluginEngine};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What `check` found; `ok` is false when the host would refuse the plugin.
#[derive(Debug)]
pub struct CheckReport {
    /// One line per finding, for people.
    pub text: String,
    /// Whether the plugin loads and initialises in this host.
    pub ok: bool,
}

/// Inspects the component at `path`.
pub async fn check(path: &Path) -> anyhow::Result<CheckReport> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read plugin {}: {e}", path.display()))?;
    let mut text = String::new();
    let mut ok = true;
    writeln!(text, "plugin    {}", path.display())?;
    writeln!(
        text,
        "size      {} bytes ({:.1} MiB)",
        bytes.len(),
        mib(bytes.len())
    )?;
    if crate::runtime::plugin::is_core_module(&bytes) {
        writeln!(
            text,
            "kind      REFUSED: {}",
            crate::runtime::plugin::CORE_MODULE
        )?;
        return Ok(CheckReport { text, ok: false });
    }
    match read_api_version(&bytes) {
        Ok(Some(found)) => match check_compatible(&found, SUPPORTED_API_VERSIONS) {
            Ok(()) => writeln!(text, "api       {found} (supported)")?,
            Err(message) => {
                ok = false;
                writeln!(text, "api       REFUSED: {message}")?
            }
        },
        Ok(None) => writeln!(
            text,
            "api       no redis-spanner:api-version section (not built with the Rust SDK); checked by world only"
        )?,
        Err(message) => {
            writeln!(text, "api       REFUSED: {message}")?;
            return Ok(CheckReport { text, ok: false });
        }
    }
    let engine = PluginEngine::new()?;
    // Through the same compile cache as `plugin test`: a build tested
    // before is not compiled again.
    let cache_dir = compile_cache_dir(path);
    let digest = digest_hex(&bytes);
    let bytes = Arc::new(bytes);
    let started = Instant::now();
    let compiled = compile(&engine, bytes.clone(), &digest, Some(&cache_dir)).await;
    let first_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (component, was_cached) = match compiled {
        Ok(compiled) => (compiled.component, compiled.from_cache),
        Err(err) => {
            writeln!(
                text,
                "compile   REFUSED: not a valid WebAssembly component: {err:#}"
            )?;
            return Ok(CheckReport { text, ok: false });
        }
    };
    if was_cached {
        writeln!(
            text,
            "compile   already compiled: from the compile cache {first_ms:.1} ms ({})",
            cache_dir.display()
        )?;
    } else {
        let started = Instant::now();
        let cached = compile(&engine, bytes, &digest, Some(&cache_dir)).await;
        let cached_ms = started.elapsed().as_secs_f64() * 1000.0;
        match cached {
            Ok(cached) if cached.from_cache => writeln!(
                text,
                "compile   {first_ms:.0} ms; from the compile cache {cached_ms:.1} ms"
            )?,
            _ => writeln!(
                text,
                "compile   {first_ms:.0} ms; the compile cache did not serve it (compiled again)"
            )?,
        }
    }
    let ty = component.component_type();
    for (name, _) in ty.imports(&engine.engine) {
        writeln!(text, "import    {name}")?;
    }
    for (name, _) in ty.exports(&engine.engine) {
        writeln!(text, "export    {name}")?;
    }
    let options = LoadOptions {
        cache_dir: Some(cache_dir.clone()),
        ..LoadOptions::default()
    };
    let started = Instant::now();
    match Plugin::load(&engine, path, &options).await {
        Ok(plugin) => {
            writeln!(
                text,
                "world     redis-spanner:plugin/cache-plugin@{}\ninit      ok in {:.0} ms as {}",
                plugin.api_version(),
                started.elapsed().as_secs_f64() * 1000.0,
                plugin.label()
            )?;
            prune_except(&cache_dir, &digest);
        }
        Err(err) => {
            ok = false;
            writeln!(text, "load      REFUSED: {err}")?
        }
    }
    Ok(CheckReport { text, ok })
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
