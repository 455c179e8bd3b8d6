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
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0"];

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
pub fn read_api_version(component_bytes: &[u8]) -> Result<Option<String>, String> {
    for payload in Parser::new(0).parse_all(component_bytes) {
        let payload = payload.map_err(|e| format!("not a valid WebAssembly binary: {e}"))?;
        if let Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            return match std::str::from_utf8(section.data()) {
                Ok(version) => Ok(Some(version.to_owned())),
                Err(_) => Err(format!(
                    "the {SECTION} custom section at byte {} is not UTF-8 text",
                    section.range().start
                )),
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
pub fn check_compatible(found: &str, supported: &[&str]) -> Result<(), String> {
    let supported_list = if supported.is_empty() {
        "none".to_owned()
    } else {
        supported
            .iter()
            .map(|version| match major_minor(version) {
                Some((major, minor)) => format!("{version} (any {major}.{minor}.x)"),
                None => (*version).to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let advice = "rebuild the plugin against a redis-spanner-sdk release that implements one \
                  of the supported API versions";
    let Some(found_major_minor) = major_minor(found) else {
        return Err(format!(
            "plugin API version {found:?} is not a MAJOR.MINOR.PATCH version; this host \
             supports API version {supported_list}; {advice}"
        ));
    };
    if supported
        .iter()
        .filter_map(|version| major_minor(version))
        .any(|version| version == found_major_minor)
    {
        Ok(())
    } else {
        Err(format!(
            "plugin was built against API version {found}, but this host supports API \
             version {supported_list}; {advice}"
        ))
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
pub fn stamp_api_version(component_bytes: &mut Vec<u8>, version: &str) -> Result<bool, String> {
    if read_api_version(component_bytes)?.is_some() {
        return Ok(false);
    }
    let mut payload = leb128(SECTION.len());
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(version.as_bytes());
    component_bytes.push(0); // custom section id
    component_bytes.extend(leb128(payload.len()));
    component_bytes.extend(payload);
    Ok(true)
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
mod tests {
    #[test]
    fn stamping_adds_a_readable_section_once() {
        // The smallest component: its preamble.
        let mut component = b"\0asm\x0d\x00\x01\x00".to_vec();
        assert_eq!(super::read_api_version(&component), Ok(None));
        assert_eq!(super::stamp_api_version(&mut component, "0.1.0"), Ok(true));
        assert_eq!(
            super::read_api_version(&component),
            Ok(Some("0.1.0".into()))
        );
        let stamped = component.clone();
        assert_eq!(super::stamp_api_version(&mut component, "0.1.0"), Ok(false));
        assert_eq!(component, stamped);
    }

    use super::{SECTION, SUPPORTED_API_VERSIONS, check_compatible, read_api_version};

    // Hand-assembled binaries: a header, then sections of `id, size, body`.
    // Sizes are unsigned LEB128.

    const MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    /// Custom sections have id 0 in modules and components alike.
    const CUSTOM: u8 = 0;
    /// A component's section holding a nested core module.
    const CORE_MODULE: u8 = 1;
    /// A component's section holding a nested component.
    const COMPONENT: u8 = 4;

    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn section(id: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        leb128(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    fn custom(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        leb128(name.len(), &mut body);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        section(CUSTOM, &body)
    }

    fn binary(header: [u8; 8], sections: &[Vec<u8>]) -> Vec<u8> {
        let mut out = header.to_vec();
        for section in sections {
            out.extend_from_slice(section);
        }
        out
    }

    fn module(sections: &[Vec<u8>]) -> Vec<u8> {
        binary(MODULE_HEADER, sections)
    }

    fn component(sections: &[Vec<u8>]) -> Vec<u8> {
        binary(COMPONENT_HEADER, sections)
    }

    /// A component shaped like an SDK plugin: the version sits in a core
    /// module, after other custom sections.
    fn sdk_like_component(version: &[u8]) -> Vec<u8> {
        let core = module(&[custom("producers", b"\x00"), custom(SECTION, version)]);
        component(&[custom("component-name", b"x"), section(CORE_MODULE, &core)])
    }

    #[test]
    fn reads_the_version_from_a_nested_core_module() {
        let bytes = sdk_like_component(b"0.1.0");
        assert_eq!(read_api_version(&bytes), Ok(Some("0.1.0".to_owned())));
    }

    #[test]
    fn reads_the_version_from_a_doubly_nested_component() {
        let inner = component(&[section(CORE_MODULE, &module(&[custom(SECTION, b"0.1.3")]))]);
        let outer = component(&[
            section(CORE_MODULE, &module(&[custom("name", b"")])),
            section(COMPONENT, &inner),
            custom("trailer", b"after"),
        ]);
        assert_eq!(read_api_version(&outer), Ok(Some("0.1.3".to_owned())));
    }

    #[test]
    fn reads_the_version_at_the_top_level_and_in_core_modules() {
        let bytes = component(&[custom(SECTION, b"0.1.0")]);
        assert_eq!(read_api_version(&bytes), Ok(Some("0.1.0".to_owned())));
        let bytes = module(&[custom(SECTION, b"0.1.0")]);
        assert_eq!(read_api_version(&bytes), Ok(Some("0.1.0".to_owned())));
    }

    #[test]
    fn the_first_section_wins() {
        let bytes = component(&[
            section(CORE_MODULE, &module(&[custom(SECTION, b"0.1.0")])),
            section(CORE_MODULE, &module(&[custom(SECTION, b"9.9.9")])),
        ]);
        assert_eq!(read_api_version(&bytes), Ok(Some("0.1.0".to_owned())));
    }

    #[test]
    fn a_component_without_the_section_has_no_version() {
        assert_eq!(read_api_version(&component(&[])), Ok(None));
        let bytes = component(&[
            custom("producers", b"\x00"),
            section(
                CORE_MODULE,
                &module(&[custom("redis-spanner:other", b"0.1.0")]),
            ),
        ]);
        assert_eq!(read_api_version(&bytes), Ok(None));
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [&b""[..], b"not wasm at all", &COMPONENT_HEADER[..4]] {
            let error = read_api_version(bytes).expect_err("garbage parsed");
            assert!(error.contains("not a valid WebAssembly binary"), "{error}");
        }
    }

    #[test]
    fn a_truncated_binary_is_an_error() {
        let bytes = sdk_like_component(b"0.1.0");
        // Cut inside the nested module, before the version section ends.
        let error = read_api_version(&bytes[..bytes.len() - 3]).expect_err("truncated parsed");
        assert!(error.contains("not a valid WebAssembly binary"), "{error}");
    }

    #[test]
    fn a_version_that_is_not_text_is_an_error() {
        let error = read_api_version(&sdk_like_component(b"\xff\xfe")).expect_err("accepted");
        assert!(
            error.contains(SECTION) && error.contains("UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn same_major_and_minor_is_compatible() {
        for found in ["0.1.0", "0.1.7", "0.1.12", "0.1.0-rc.1", "0.1.2+build.5"] {
            assert_eq!(check_compatible(found, &["0.1.0"]), Ok(()), "{found}");
        }
        assert_eq!(check_compatible("0.2.4", &["0.1.0", "0.2.0"]), Ok(()));
        assert_eq!(check_compatible("0.1.0", SUPPORTED_API_VERSIONS), Ok(()));
    }

    #[test]
    fn another_major_or_minor_is_refused_with_advice() {
        for found in ["0.2.0", "1.1.0", "0.0.9", "1.0.0"] {
            let error = check_compatible(found, &["0.1.0", "0.3.0"]).expect_err(found);
            assert!(error.contains(found), "{error}");
            assert!(error.contains("0.1.0 (any 0.1.x)"), "{error}");
            assert!(error.contains("0.3.0 (any 0.3.x)"), "{error}");
            assert!(error.contains("rebuild the plugin"), "{error}");
            assert!(error.contains("redis-spanner-sdk"), "{error}");
        }
        let error = check_compatible("0.1.0", &[]).expect_err("nothing is supported");
        assert!(error.contains("supports API version none"), "{error}");
    }

    #[test]
    fn a_malformed_version_is_refused() {
        for found in [
            "", "0.1", "0.1.x", "v0.1.0", "0.+1.0", "0..0", " 0.1.0", "0.1.0\n",
        ] {
            let error = check_compatible(found, &["0.1.0"]).expect_err(found);
            assert!(error.contains("not a MAJOR.MINOR.PATCH version"), "{error}");
            assert!(error.contains("rebuild the plugin"), "{error}");
        }
    }
}
