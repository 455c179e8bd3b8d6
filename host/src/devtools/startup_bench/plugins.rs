//! A startup bench's plugins and service configuration.
//!
//! The plugins are copies of one component named `bench_0`, `bench_1`, …,
//! each granted the same key prefix. Each copy ends with a custom section
//! naming it, so each is a component of its own to the compile cache (which
//! keys compiled code by the file's digest): an empty cache compiles every
//! copy, as it would N different plugins.

use super::setup::{INSTANCE, PROJECT, Servers};
use crate::contract::version::append_custom_section;
use crate::devtools::demo::schema;
use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The key prefix every copy is granted.
pub const PREFIX: &str = "users:";

/// The custom section that tells the copies apart.
const COPY_SECTION: &str = "redis-spanner-bench-copy";

/// A scratch folder (`prefix` in its name, removed when dropped) holding
/// one tagged copy of the component at `plugin` in its `plugins` folder:
/// the folder, the plugins folder and the copy's name.
///
/// # Errors
///
/// `plugin` is not a file, or the folder cannot be made.
pub fn scratch_with(
    plugin: &Path,
    prefix: &str,
) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf, Vec<String>)> {
    anyhow::ensure!(
        plugin.is_file(),
        "{}: no such plugin file",
        plugin.display()
    );
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let plugin_dir = scratch.path().join("plugins");
    let names = tagged_copies(plugin, 1, &plugin_dir)?;
    Ok((scratch, plugin_dir, names))
}

/// Writes `count` tagged copies of `plugin` into `dir` (created) and
/// returns their names.
pub fn tagged_copies(plugin: &Path, count: usize, dir: &Path) -> anyhow::Result<Vec<String>> {
    let bytes =
        std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin.display()))?;
    std::fs::create_dir_all(dir)?;
    (0..count)
        .map(|n| {
            let name = format!("bench_{n}");
            let mut copy = bytes.clone();
            append_custom_section(&mut copy, COPY_SECTION, name.as_bytes());
            std::fs::write(dir.join(format!("{name}.wasm")), copy)?;
            Ok(name)
        })
        .collect()
}

/// What one start's configuration names.
pub struct ServiceSetup<'a> {
    /// Where Redis and the emulator are.
    pub servers: &'a Servers,
    /// The database, on the bench's instance.
    pub database: &'a str,
    /// The plugin folder.
    pub plugin_dir: &'a Path,
    /// The plugins in it, each granted [`PREFIX`].
    pub names: &'a [String],
    /// The compile cache, shared by every start.
    pub cache_dir: &'a Path,
}

impl ServiceSetup<'_> {
    /// Writes the configuration of a service to `path`, its admin server
    /// on a port it picks and writes to
    /// [`crate::devtools::service_process::admin_address_file`]. Every
    /// plugin is required, so a start in which one does not load fails
    /// instead of being measured without it.
    pub fn write(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let required: Vec<String> = self.names.iter().map(|name| quoted(name)).collect();
        let mut text = format!(
            "[spanner]\nproject = {}\ninstance = {}\ndatabase = {}\nchange_stream = {}\n\
             emulator_host = {}\nemulator_rest = {}\n\n\
             [redis]\nurl = {}\n\n\
             [plugins]\ndir = {}\ncache_dir = {}\nrequired = [{}]\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\naddress_file = {}\n",
            quoted(PROJECT),
            quoted(INSTANCE),
            quoted(self.database),
            quoted(schema::STREAM),
            quoted(&self.servers.grpc),
            quoted(&self.servers.rest),
            quoted(&self.servers.redis_url),
            quoted(&self.plugin_dir.to_string_lossy()),
            quoted(&self.cache_dir.to_string_lossy()),
            required.join(", "),
            quoted(&crate::devtools::service_process::admin_address_file(path).to_string_lossy()),
        );
        for name in self.names {
            let _ = write!(
                text,
                "\n[grants.{name}]\nkey_prefixes = [{}]\n",
                quoted(PREFIX)
            );
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.to_owned())
    }
}

/// `text` as a TOML string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
