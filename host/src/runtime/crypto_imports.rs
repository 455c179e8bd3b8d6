//! The `crypto` host imports (contracts 0.2.0 to 0.4.0): `seal` and `keyed-hash` with
//! the host's keyring, restricted to the key names of the plugin's grant.
//!
//! Key bytes never enter the plugin. A call naming a key the grant does not
//! list, or made while no keyring is configured, returns an error to the
//! plugin and is remembered as a [`CryptoRefusal`] so the pipeline can audit
//! it after the call.

use super::state::PluginState;
use crate::contract::latest::redis_spanner::plugin::crypto::Host as CryptoHost;
use crate::contract::since_v0_1::v0_2::redis_spanner::plugin::crypto::Host as CryptoHostV0_2;
use crate::contract::v0_4::redis_spanner::plugin::crypto::Host as CryptoHostV0_4;
use crate::crypto::KeyringHandle;
use std::sync::Arc;

/// Most refusals kept (and audited) per call; more are only refused.
const MAX_REFUSALS_KEPT: usize = 100;
/// Longest key name kept in a refusal, in characters.
const MAX_KEY_NAME_KEPT: usize = 64;

/// What a plugin may use of the keyring.
#[derive(Clone, Default)]
pub struct CryptoAccess {
    /// The host's keyring, when one is configured.
    pub keyring: Option<Arc<KeyringHandle>>,
    /// Key names the plugin's grant lists (`crypto_keys`).
    pub granted: Arc<Vec<String>>,
}

/// A `seal` or `keyed-hash` call the host refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoRefusal {
    /// `seal` or `keyed-hash`.
    pub operation: &'static str,
    /// The key name the plugin asked for.
    pub key_name: String,
    /// Why it was refused.
    pub reason: String,
}

impl PluginState {
    /// The keyring, when `key_name` is granted and a keyring is configured;
    /// otherwise records the refusal and returns the message for the plugin.
    fn keyring_for(
        &mut self,
        operation: &'static str,
        key_name: &str,
    ) -> Result<Arc<redis_spanner_envelope::Keyring>, String> {
        let reason = if !self.crypto.granted.iter().any(|name| name == key_name) {
            let shown: String = key_name.chars().take(MAX_KEY_NAME_KEPT).collect();
            format!(
                "key {shown:?} is not granted to this plugin (granted: {:?}); add it to \
                 crypto_keys in the plugin's grant",
                self.crypto.granted
            )
        } else if let Some(keyring) = &self.crypto.keyring {
            return Ok(keyring.current());
        } else {
            "no keyring is configured on the host (add [keyring] dir = \"…\" to its config, or \
             set REDIS_SPANNER_KEY_<NAME>_V<n> variables and an empty [keyring] table)"
                .to_owned()
        };
        // Bounded: a plugin calling in a loop must not grow the host's memory.
        if self.crypto_refusals.len() < MAX_REFUSALS_KEPT {
            self.crypto_refusals.push(CryptoRefusal {
                operation,
                key_name: key_name.chars().take(MAX_KEY_NAME_KEPT).collect(),
                reason: reason.clone(),
            });
        }
        Err(format!("{operation}: {reason}"))
    }
}

impl CryptoHost for PluginState {
    fn seal(
        &mut self,
        key_name: String,
        plaintext: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let keyring = self.keyring_for("seal", &key_name)?;
        redis_spanner_envelope::seal(&keyring, &key_name, &plaintext, &aad)
            .map_err(|e| format!("seal: {e}"))
    }

    fn keyed_hash(&mut self, key_name: String, data: Vec<u8>) -> Result<String, String> {
        let keyring = self.keyring_for("keyed-hash", &key_name)?;
        redis_spanner_envelope::keyed_hash(&keyring, &key_name, &data)
            .map_err(|e| format!("keyed-hash: {e}"))
    }
}

/// Implements another contract version's `crypto` interface, which is
/// 0.3.0's under another name, by calling 0.3.0's.
macro_rules! crypto_as_v0_3 {
    ($interface:ident) => {
        impl $interface for PluginState {
            fn seal(
                &mut self,
                key_name: String,
                plaintext: Vec<u8>,
                aad: Vec<u8>,
            ) -> Result<Vec<u8>, String> {
                CryptoHost::seal(self, key_name, plaintext, aad)
            }

            fn keyed_hash(&mut self, key_name: String, data: Vec<u8>) -> Result<String, String> {
                CryptoHost::keyed_hash(self, key_name, data)
            }
        }
    };
}

crypto_as_v0_3!(CryptoHostV0_2);
crypto_as_v0_3!(CryptoHostV0_4);
