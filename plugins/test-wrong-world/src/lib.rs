//! A component of the wrong world, for the host's tests.
//!
//! It implements `other:thing/greeter` (see `wit/world.wit`) instead of
//! `redis-spanner:plugin/cache-plugin`, and is built with `wit-bindgen`
//! directly rather than the SDK, so it also carries no
//! `redis-spanner:api-version` section. The host must refuse to load it.

wit_bindgen::generate!({
    path: "wit",
    world: "greeter",
});

/// The component's implementation.
struct Greeter;

impl Guest for Greeter {
    fn hello() -> String {
        "hello from the wrong world".to_string()
    }
}

export!(Greeter);
