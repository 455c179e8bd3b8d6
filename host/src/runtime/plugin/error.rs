//! What a plugin could not do, each naming the plugin (or its file) and what
//! to do about it.

use super::*;

/// Something a plugin could not do, naming the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read or is not a WebAssembly component.
    #[error("plugin {path}: cannot load: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Signing is required and the plugin's signature is missing or wrong.
    #[error("plugin {path}: refused: {source}")]
    Signature {
        /// The file.
        path: PathBuf,
        /// What is wrong with the signature.
        source: crate::runtime::signing::SigningError,
    },
    /// The plugin was built against an API version this host does not speak.
    #[error("plugin {path}: {error}")]
    ApiVersion {
        /// The file.
        path: PathBuf,
        /// Found and supported versions.
        error: crate::contract::VersionError,
    },
    /// The manifest next to the plugin is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest claims a name other than the one the operator gave the
    /// plugin (its file name).
    #[error(
        "plugin {path}: refused: its manifest names it {claimed:?}, but its file makes it \
         {name:?}; a plugin's name (and with it its grants, Redis user, crypto keys and audit \
         label) comes from its file name: rename the file to {claimed}.wasm or remove `name` \
         from the manifest"
    )]
    Identity {
        /// The file.
        path: PathBuf,
        /// The name the file gives it.
        name: String,
        /// The name its manifest claims.
        claimed: String,
    },
    /// The component does not implement the `cache-plugin` world.
    #[error(
        "plugin {path}: does not implement world redis-spanner:plugin/cache-plugin@0.4.0, \
         @0.3.0, @0.2.0 or @0.1.0 (build it with an SDK: the Rust, Python and JavaScript \
         SDKs implement wit/plugin@0.4.0): {message}"
    )]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// What the linker said.
        message: String,
    },
    /// `init` returned an error or trapped.
    #[error("plugin {plugin}: init failed: {message}")]
    Init {
        /// The plugin's name and version.
        plugin: String,
        /// Its error or the trap.
        message: String,
    },
    /// `on-changes` or `on-cache-events` returned an error.
    #[error("plugin {plugin}: returned an error: {message}")]
    Rejected {
        /// The plugin's name and version.
        plugin: String,
        /// Its error.
        message: String,
    },
    /// A call trapped or hit a limit; the instance was discarded.
    #[error("plugin {plugin}: trapped: {message}")]
    Trap {
        /// The plugin's name and version.
        plugin: String,
        /// The trap, or the limit that was hit.
        message: String,
    },
    /// A call ran past its wall-clock deadline and was stopped; the instance
    /// was discarded.
    #[error("plugin {plugin}: {message}")]
    TimedOut {
        /// The plugin's name and version.
        plugin: String,
        /// Which deadline.
        message: String,
    },
    /// The plan is larger than the plugin's limits allow.
    #[error("plugin {plugin}: plan too large: {message}")]
    PlanTooLarge {
        /// The plugin's name and version.
        plugin: String,
        /// Which limit and by how much.
        message: String,
    },
}
