//! The current key set and when to fetch it again.
//!
//! Verifies read the set without locking ([`ArcSwap`]). A token whose key
//! is not in the set makes the store fetch the set again, but at most once
//! per [`MIN_REFETCH_INTERVAL`]: a caller sending random key ids must not
//! make this host hammer the issuer. Fetches go one at a time behind a
//! mutex, so verifies that miss together share one fetch, and each runs on
//! a task of its own, so a caller that goes away mid-fetch does not cut it
//! short. A failed fetch keeps the old set.

use super::errors::JwksError;
use super::fetch::KeySource;
use super::jwks::KeySet;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two fetches caused by unknown keys.
pub(super) const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// When the set was last fetched, and how that went.
#[derive(Default)]
pub(super) struct FetchState {
    /// When the last fetch started.
    pub(super) last_attempt: Option<Instant>,
    /// Whether it failed.
    pub(super) last_failed: bool,
}

/// The issuer's current key set, and where it comes from.
pub(super) struct KeyStore {
    source: KeySource,
    /// Shown in logs: the URL or the file.
    origin: String,
    current: ArcSwap<KeySet>,
    pub(super) fetch: tokio::sync::Mutex<FetchState>,
}

impl KeyStore {
    /// A store holding `keys` (empty until the first fetch for a URL),
    /// fetched at `fetched` if it was.
    pub(super) fn new(
        source: KeySource,
        origin: String,
        keys: KeySet,
        fetched: Option<Instant>,
    ) -> Self {
        Self {
            source,
            origin,
            current: ArcSwap::from_pointee(keys),
            fetch: tokio::sync::Mutex::new(FetchState {
                last_attempt: fetched,
                last_failed: false,
            }),
        }
    }

    /// The current key set.
    pub(super) fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Fetches the set again now (the timer's refresh).
    pub(super) async fn refresh(&self) -> Result<(), JwksError> {
        let mut state = self.fetch.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// After a token named a key the set does not hold: fetches the set
    /// again unless that was tried within [`MIN_REFETCH_INTERVAL`].
    /// Returns whether the keys are unavailable (never loaded, or the last
    /// fetch failed).
    pub(super) async fn refetch_for_unknown_key(self: &Arc<Self>) -> bool {
        let store = Arc::clone(self);
        let fetch = tokio::spawn(async move {
            let mut state = store.fetch.lock().await;
            let recent = state
                .last_attempt
                .is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL);
            if !recent {
                tracing::info!(jwks = %store.origin, "a token names a key not in the issuer's key set; fetching it again");
                // A failure is logged and reported through `last_failed`.
                let _ = store.fetch_locked(&mut state).await;
            }
            state.last_failed || store.current.load().is_empty()
        });
        fetch.await.unwrap_or(true)
    }

    /// Fetches the set, replacing the current one if that worked.
    async fn fetch_locked(&self, state: &mut FetchState) -> Result<(), JwksError> {
        state.last_attempt = Some(Instant::now());
        match self.source.load().await {
            Ok(keys) => {
                state.last_failed = false;
                tracing::debug!(jwks = %self.origin, "issuer's key set fetched");
                self.current.store(Arc::new(keys));
                Ok(())
            }
            Err(err) => {
                state.last_failed = true;
                tracing::warn!(jwks = %self.origin, error = %err, "cannot fetch the issuer's key set; keeping the keys already known");
                Err(err)
            }
        }
    }
}
