//! Tests of reading, checking and stamping a component's API version.

use super::{
    SECTION, SUPPORTED_API_VERSIONS, VersionError, check_compatible, read_api_version,
    stamp_api_version,
};

#[test]
fn stamping_adds_a_readable_section_once() {
    // The smallest component: its preamble.
    let mut component = b"\0asm\x0d\x00\x01\x00".to_vec();
    assert_eq!(read_api_version(&component), Ok(None));
    assert_eq!(stamp_api_version(&mut component, "0.1.0"), Ok(true));
    assert_eq!(read_api_version(&component), Ok(Some("0.1.0".into())));
    let stamped = component.clone();
    assert_eq!(stamp_api_version(&mut component, "0.1.0"), Ok(false));
    assert_eq!(component, stamped);
}

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
        assert!(matches!(error, VersionError::NotWasm(_)), "{error:?}");
        assert!(
            error.to_string().contains("not a valid WebAssembly binary"),
            "{error}"
        );
    }
}

#[test]
fn a_truncated_binary_is_an_error() {
    let bytes = sdk_like_component(b"0.1.0");
    // Cut inside the nested module, before the version section ends.
    let error = read_api_version(&bytes[..bytes.len() - 3]).expect_err("truncated parsed");
    assert!(
        error.to_string().contains("not a valid WebAssembly binary"),
        "{error}"
    );
}

#[test]
fn a_version_that_is_not_text_is_an_error() {
    let error = read_api_version(&sdk_like_component(b"\xff\xfe")).expect_err("accepted");
    assert!(matches!(error, VersionError::NotText { .. }), "{error:?}");
    let error = error.to_string();
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
        assert!(
            matches!(error, VersionError::Unsupported { .. }),
            "{error:?}"
        );
        let error = error.to_string();
        assert!(error.contains(found), "{error}");
        assert!(error.contains("0.1.0 (any 0.1.x)"), "{error}");
        assert!(error.contains("0.3.0 (any 0.3.x)"), "{error}");
        assert!(error.contains("rebuild the plugin"), "{error}");
        assert!(error.contains("redis-spanner-sdk"), "{error}");
    }
    let error = check_compatible("0.1.0", &[]).expect_err("nothing is supported");
    assert_eq!(
        error.to_string(),
        "plugin was built against API version 0.1.0, but this host supports API version \
         none; rebuild the plugin against a redis-spanner-sdk release that implements one \
         of the supported API versions"
    );
}

#[test]
fn a_malformed_version_is_refused() {
    for found in [
        "", "0.1", "0.1.x", "v0.1.0", "0.+1.0", "0..0", " 0.1.0", "0.1.0\n",
    ] {
        let error = check_compatible(found, &["0.1.0"]).expect_err(found);
        assert!(matches!(error, VersionError::Malformed { .. }), "{error:?}");
        let error = error.to_string();
        assert!(error.contains("not a MAJOR.MINOR.PATCH version"), "{error}");
        assert!(error.contains("rebuild the plugin"), "{error}");
    }
}
