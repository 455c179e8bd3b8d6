//! The one place that decides which contract a component implements, and
//! calls its exports in the host's model whatever the version.
//!
//! A component stamped with an API version (every SDK stamps one; the
//! builder stamps Python and JavaScript plugins) links as that version or
//! not at all. An unstamped one links as the newest version whose world it
//! implements.

use super::since_v0_1::{self, v0_1, v0_2};
use super::version::{SUPPORTED_API_VERSIONS, VersionError, check_compatible, major_minor};
use super::wire::{self, WireError};
use super::{Action, CacheAction, CacheEvent, RowChange, batch_text, latest, v0_4};
use wasmtime::component::InstancePre;
use wasmtime::{AsContextMut, Store};

/// A component linked against the contract version it implements.
pub enum LinkedPlugin<T: 'static> {
    /// Contract 0.1.0: no cache events, no crypto.
    V0_1(v0_1::CachePluginPre<T>),
    /// Contract 0.2.0: named columns, no FLOAT32.
    V0_2(v0_2::CachePluginPre<T>),
    /// Contract 0.3.0, the host's model.
    V0_3(latest::CachePluginPre<T>),
    /// Contract 0.4.0: 0.3.0 with the batch as JSON text.
    V0_4(v0_4::CachePluginPre<T>),
}

/// A live instance's exports, by contract version.
pub enum PluginExports {
    /// Contract 0.1.0.
    V0_1(v0_1::CachePlugin),
    /// Contract 0.2.0.
    V0_2(v0_2::CachePlugin),
    /// Contract 0.3.0.
    V0_3(latest::CachePlugin),
    /// Contract 0.4.0.
    V0_4(v0_4::CachePlugin),
}

/// A component that links as no contract version this host loads.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The component is stamped with a version this host does not load.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The component is stamped with a version whose world it does not
    /// implement.
    #[error("the component says it implements contract {found}, but: {error:#}")]
    NotAsStamped {
        /// The version it is stamped with.
        found: String,
        /// What the linker said.
        error: wasmtime::Error,
    },
    /// An unstamped component implements none of the supported worlds.
    #[error(
        "as 0.4.0: {as_v0_4:#}; as 0.3.0: {as_v0_3:#}; as 0.2.0: {as_v0_2:#}; as 0.1.0: {as_v0_1:#}"
    )]
    NoWorld {
        /// What the linker said of it as contract 0.4.0.
        as_v0_4: wasmtime::Error,
        /// What the linker said of it as contract 0.3.0.
        as_v0_3: wasmtime::Error,
        /// As contract 0.2.0.
        as_v0_2: wasmtime::Error,
        /// As contract 0.1.0.
        as_v0_1: wasmtime::Error,
    },
}

/// What a call returned: a trap or wasmtime error outside, the plugin's own
/// error inside.
pub type CallResult<R> = wasmtime::Result<Result<R, String>>;

impl<T: Send + 'static> LinkedPlugin<T> {
    /// Links `pre` as the version `stamped` names (the component's API
    /// version section), or, without one, as the newest version it
    /// implements.
    ///
    /// # Errors
    ///
    /// A stamped version this host does not load, or a component whose
    /// exports match no supported world; the message names the versions
    /// tried and what was missing.
    pub fn link(pre: InstancePre<T>, stamped: Option<&str>) -> Result<Self, LinkError> {
        if let Some(found) = stamped {
            check_compatible(found, SUPPORTED_API_VERSIONS)?;
            let link = match major_minor(found) {
                Some((0, 1)) => v0_1::CachePluginPre::new(pre).map(Self::V0_1),
                Some((0, 2)) => v0_2::CachePluginPre::new(pre).map(Self::V0_2),
                Some((0, 3)) => latest::CachePluginPre::new(pre).map(Self::V0_3),
                Some((0, 4)) => v0_4::CachePluginPre::new(pre).map(Self::V0_4),
                // A supported version without a world here: refused, not linked
                // as another.
                _ => {
                    return Err(LinkError::Version(VersionError::Unsupported {
                        found: found.to_owned(),
                        supported: Vec::new(),
                    }));
                }
            };
            return link.map_err(|error| LinkError::NotAsStamped {
                found: found.to_owned(),
                error,
            });
        }
        let as_v0_4 = match v0_4::CachePluginPre::new(pre.clone()) {
            Ok(linked) => return Ok(Self::V0_4(linked)),
            Err(e) => e,
        };
        let as_v0_3 = match latest::CachePluginPre::new(pre.clone()) {
            Ok(linked) => return Ok(Self::V0_3(linked)),
            Err(e) => e,
        };
        let as_v0_2 = match v0_2::CachePluginPre::new(pre.clone()) {
            Ok(linked) => return Ok(Self::V0_2(linked)),
            Err(e) => e,
        };
        v0_1::CachePluginPre::new(pre)
            .map(Self::V0_1)
            .map_err(|as_v0_1| LinkError::NoWorld {
                as_v0_4,
                as_v0_3,
                as_v0_2,
                as_v0_1,
            })
    }

    /// The contract version linked.
    pub fn api_version(&self) -> &'static str {
        match self {
            Self::V0_1(_) => "0.1.0",
            Self::V0_2(_) => "0.2.0",
            Self::V0_3(_) => latest::VERSION,
            Self::V0_4(_) => v0_4::VERSION,
        }
    }

    /// Whether the version has `on-cache-events` (0.2.0 and later).
    pub fn handles_cache_events(&self) -> bool {
        !matches!(self, Self::V0_1(_))
    }

    /// Instantiates the component and runs `init`: an error outside is a
    /// failed instantiation, one in the returned result a trap in `init`.
    pub async fn instantiate_and_init(
        &self,
        mut store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<(PluginExports, CallResult<()>)> {
        Ok(match self {
            Self::V0_1(pre) => {
                let exports = pre.instantiate_async(&mut store).await?;
                let init = exports.call_init(&mut store).await;
                (PluginExports::V0_1(exports), init)
            }
            Self::V0_2(pre) => {
                let exports = pre.instantiate_async(&mut store).await?;
                let init = exports.call_init(&mut store).await;
                (PluginExports::V0_2(exports), init)
            }
            Self::V0_3(pre) => {
                let exports = pre.instantiate_async(&mut store).await?;
                let init = exports.call_init(&mut store).await;
                (PluginExports::V0_3(exports), init)
            }
            Self::V0_4(pre) => {
                let exports = pre.instantiate_async(&mut store).await?;
                let init = exports.call_init(&mut store).await;
                (PluginExports::V0_4(exports), init)
            }
        })
    }
}

impl PluginExports {
    /// Calls `on-changes` with `batch` in the instance's contract shape and
    /// returns the plan in the host's model.
    ///
    /// # Errors
    ///
    /// Outside: a trap. Inside: the plugin's error, or a batch that cannot
    /// take the compact shape ([`WireError`]).
    pub async fn on_changes<T: Send>(
        &self,
        store: &mut Store<T>,
        batch: &[RowChange],
    ) -> CallResult<Vec<Action>> {
        match self {
            Self::V0_4(exports) => {
                let text = match wire::layout(batch) {
                    Ok(layout) => batch_text::encode(&layout),
                    Err(e) => return Ok(Err(describe_wire(e))),
                };
                exports.call_on_changes(store, &text).await
            }
            Self::V0_3(exports) => {
                let encoded = match wire::encode(batch) {
                    Ok(encoded) => encoded,
                    Err(e) => return Ok(Err(describe_wire(e))),
                };
                exports.call_on_changes(store, &encoded).await
            }
            Self::V0_2(exports) => Ok(exports
                .call_on_changes(store, &since_v0_1::changes_down(batch))
                .await?
                .map(since_v0_1::actions_up)),
            Self::V0_1(exports) => Ok(exports
                .call_on_changes(store, &since_v0_1::changes_down(batch))
                .await?
                .map(since_v0_1::actions_up)),
        }
    }

    /// Calls `on-cache-events`; a 0.1.0 plugin has none and answers nothing.
    ///
    /// # Errors
    ///
    /// Outside: a trap. Inside: the plugin's error.
    pub async fn on_cache_events<T: Send>(
        &self,
        store: &mut Store<T>,
        batch: &[CacheEvent],
    ) -> CallResult<Vec<CacheAction>> {
        match self {
            Self::V0_4(exports) => exports.call_on_cache_events(store, batch).await,
            Self::V0_3(exports) => exports.call_on_cache_events(store, batch).await,
            Self::V0_2(exports) => Ok(exports
                .call_on_cache_events(store, &since_v0_1::cache_events_down(batch))
                .await?
                .map(since_v0_1::cache_actions_up)),
            Self::V0_1(_) => Ok(Ok(Vec::new())),
        }
    }
}

fn describe_wire(error: WireError) -> String {
    format!("the host could not send the batch: {error}")
}
