//! The SDK API version a plugin was built against, read before compiling it.
//!
//! `register_plugin!` in `redis-spanner-sdk` stores the version of the WIT
//! package it implements (e.g. `"0.3.0"`) in a custom section named [`SECTION`] of
//! the plugin's core module, and that module ends up nested inside the
//! component. [`read_api_version`] walks the component's sections with
//! `wasmparser`, without compiling or validating anything, and returns the
//! first such section it meets. [`check_compatible`] then decides whether this
//! host can load that version, so an incompatible plugin gets an error that
//! says what to do instead of a failure to link.
//!
//! A component without the section (one not built with the SDK, or with an
//! SDK older than the section) reads as `None`; what to do with it is up to
//! the caller.

use wasmparser::{Parser, Payload};

/// Name of the custom section holding the API version, as the SDK writes it.
pub const SECTION: &str = "redis-spanner:api-version";

/// API versions (versions of the `redis-spanner:plugin` WIT package) this host
/// loads; any patch release of each is accepted.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.4.0"];

/// What to do about a plugin built against an API version this host does
/// not load.
const ADVICE: &str = "rebuild the plugin against a redis-spanner-sdk release that implements \
                      one of the supported API versions";

/// A component whose API version cannot be read, or that this host does not
/// load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The bytes are not a WebAssembly binary.
    #[error("not a valid WebAssembly binary: {0}")]
    NotWasm(String),
    /// The [`SECTION`] custom section does not hold text.
    #[error("the {SECTION} custom section at byte {offset} is not UTF-8 text")]
    NotText {
        /// Where the section starts in the binary.
        offset: usize,
    },
    /// The version is not `MAJOR.MINOR.PATCH`.
    #[error(
        "plugin API version {found:?} is not a MAJOR.MINOR.PATCH version; this host supports \
         API version {}; {ADVICE}",
        supported_list(supported)
    )]
    Malformed {
        /// The version the component names.
        found: String,
        /// The versions this host loads.
        supported: Vec<String>,
    },
    /// The version's major and minor match none this host loads.
    #[error(
        "plugin was built against API version {found}, but this host supports API version {}; \
         {ADVICE}",
        supported_list(supported)
    )]
    Unsupported {
        /// The version the component names.
        found: String,
        /// The versions this host loads.
        supported: Vec<String>,
    },
}

/// `0.1.0 (any 0.1.x), 0.3.0 (any 0.3.x)`, or `none`.
fn supported_list(supported: &[String]) -> String {
    if supported.is_empty() {
        return "none".to_owned();
    }
    supported
        .iter()
        .map(|version| match major_minor(version) {
            Some((major, minor)) => format!("{version} (any {major}.{minor}.x)"),
            None => version.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most characters of an API version section kept (a plugin decides the
/// section's size).
const MAX_VERSION_CHARS: usize = 64;

/// Returns the text of the first [`SECTION`] custom section of a WebAssembly
/// binary, or `None` when it has none.
///
/// The search covers the top level and every nested core module and nested
/// component, in binary order. A core module is accepted too. Only section
/// headers are parsed, so this is cheap even for large plugins.
///
/// # Errors
///
/// When the bytes are not a WebAssembly binary (bad header, truncated or
/// malformed section headers before the section is found), or the section is
/// not UTF-8 text.
pub fn read_api_version(component_bytes: &[u8]) -> Result<Option<String>, VersionError> {
    for payload in Parser::new(0).parse_all(component_bytes) {
        let payload = payload.map_err(|e| VersionError::NotWasm(e.to_string()))?;
        if let Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            return match std::str::from_utf8(section.data()) {
                // A version is a few bytes; a longer section is kept short
                // enough to quote in a message.
                Ok(version) => Ok(Some(version.chars().take(MAX_VERSION_CHARS).collect())),
                Err(_) => Err(VersionError::NotText {
                    offset: section.range().start,
                }),
            };
        }
    }
    Ok(None)
}

/// Checks that API version `found` (from [`read_api_version`]) is one this
/// host can load: it has the same major and minor version as one of
/// `supported`, so `0.1.7` is compatible with `0.1.0` but `0.2.0` is not.
///
/// # Errors
///
/// When `found` is not a `MAJOR.MINOR.PATCH` version (a `-pre` or `+build`
/// suffix is allowed) or matches none of `supported`. The message names
/// `found` and the supported versions and says to rebuild the plugin against
/// a supported SDK.
pub fn check_compatible(found: &str, supported: &[&str]) -> Result<(), VersionError> {
    let supported_versions = || supported.iter().map(|v| (*v).to_owned()).collect();
    let Some(found_major_minor) = major_minor(found) else {
        return Err(VersionError::Malformed {
            found: found.to_owned(),
            supported: supported_versions(),
        });
    };
    if supported
        .iter()
        .filter_map(|version| major_minor(version))
        .any(|version| version == found_major_minor)
    {
        Ok(())
    } else {
        Err(VersionError::Unsupported {
            found: found.to_owned(),
            supported: supported_versions(),
        })
    }
}

/// The major and minor numbers of a `MAJOR.MINOR.PATCH[-pre][+build]`
/// version, or `None` if `version` is not one.
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.splitn(3, '.');
    let major = number(parts.next()?)?;
    let minor = number(parts.next()?)?;
    let rest = parts.next()?;
    let patch_end = rest.find(['-', '+']).unwrap_or(rest.len());
    number(&rest[..patch_end])?;
    Some((major, minor))
}

/// A non-empty run of ASCII digits as a number.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Adds a [`SECTION`] custom section holding `version` at the end of a
/// component that has none (plugins built without the Rust SDK, e.g. by
/// componentize-py or componentize-js); returns whether it added one.
pub fn stamp_api_version(
    component_bytes: &mut Vec<u8>,
    version: &str,
) -> Result<bool, VersionError> {
    if read_api_version(component_bytes)?.is_some() {
        return Ok(false);
    }
    append_custom_section(component_bytes, SECTION, version.as_bytes());
    Ok(true)
}

/// Appends a custom section `name` holding `payload` at the end of a
/// WebAssembly binary (id 0, size, name, payload).
pub fn append_custom_section(binary: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = leb128(name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    binary.push(0);
    binary.extend(leb128(body.len()));
    binary.extend(body);
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
#[path = "version_tests.rs"]
mod tests;
