//! The example `users-cache` plugin in each language: where its source is,
//! where its component is built, and how to build it.

use super::builder::{self, Tools};
use super::scaffold::Language;
use std::path::{Path, PathBuf};

/// One example plugin.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Its language.
    pub language: Language,
    /// Its source folder, relative to the repository root.
    pub source: &'static str,
    /// Its component, relative to the repository root.
    pub component: &'static str,
}

/// The example plugins; each does exactly what the others do.
pub const EXAMPLES: [Example; 3] = [
    Example {
        language: Language::Rust,
        source: "plugins/users-cache",
        component: "target/plugins/wasm32-wasip2/release/users_cache.wasm",
    },
    Example {
        language: Language::Python,
        source: "plugins/users-cache-py",
        component: "target/plugins/python/users-cache-py.wasm",
    },
    Example {
        language: Language::Js,
        source: "plugins/users-cache-js",
        component: "target/plugins/js/users-cache-js.wasm",
    },
];

impl Example {
    /// The example in `language`.
    pub fn of(language: Language) -> Example {
        EXAMPLES
            .into_iter()
            .find(|e| e.language == language)
            .expect("one example per language")
    }

    /// The component's path (relative to the current folder, which should be
    /// the repository root).
    pub fn output(&self) -> PathBuf {
        PathBuf::from(self.component)
    }

    /// The command that builds it.
    pub fn build_hint(&self) -> String {
        match self.language {
            Language::Rust => format!("build it with: {}", RUST_EXAMPLES_BUILD.join(" ")),
            _ => format!(
                "install its build tool with ./scripts/setup, then: redis-spanner plugin build \
                 {} --out {}",
                self.source, self.component
            ),
        }
    }

    /// Builds the component under `root` (the repository root); returns
    /// its path. A Rust example is built with the whole `plugins`
    /// workspace by cargo, which rebuilds only what changed.
    pub fn build(&self, root: &Path) -> anyhow::Result<PathBuf> {
        let component = root.join(self.component);
        anyhow::ensure!(
            root.join(self.source).is_dir(),
            "the example {} is not under {}: run from the repository root, or pass --plugin \
             FILE.wasm",
            self.source,
            root.display()
        );
        if self.language == Language::Rust {
            build_rust_examples(root)?;
            anyhow::ensure!(
                component.is_file(),
                "{} is not built; {}",
                component.display(),
                self.build_hint()
            );
            return Ok(component);
        }
        builder::build(&root.join(self.source), Some(&component), &repo_tools(root))?;
        Ok(component)
    }

    /// Like [`Example::build`], but a Python or JavaScript component only
    /// when it is missing (their builds take seconds; cargo's takes no
    /// time when nothing changed).
    pub fn ensure_built(&self, root: &Path) -> anyhow::Result<PathBuf> {
        let component = root.join(self.component);
        if component.is_file() && self.language != Language::Rust {
            return Ok(component);
        }
        self.build(root)
    }
}

/// The command that builds the Rust plugins of the repository (run from
/// its root): the same one the tests' build script runs.
pub const RUST_EXAMPLES_BUILD: [&str; 9] = [
    "cargo",
    "build",
    "--release",
    "--target",
    "wasm32-wasip2",
    "--manifest-path",
    "plugins/Cargo.toml",
    "--target-dir",
    "target/plugins",
];

/// Builds the repository's Rust plugins with [`RUST_EXAMPLES_BUILD`].
fn build_rust_examples(root: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the Rust example plugins (cargo, wasm32-wasip2)");
    let status = std::process::Command::new(cargo)
        .args(&RUST_EXAMPLES_BUILD[1..])
        .current_dir(root)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run cargo to build the Rust example plugins: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "building the Rust example plugins failed ({status}); is the wasm32-wasip2 target \
         installed? (rustup target add wasm32-wasip2, or ./scripts/setup)"
    );
    Ok(())
}

/// The build tools `scripts/setup` installs in the repository (a Python
/// virtual environment under `target/tools`, the JavaScript example's
/// `node_modules`), where present.
pub fn repo_tools(root: &Path) -> Tools {
    let existing = |path: PathBuf| path.is_file().then_some(path);
    Tools {
        componentize_py: existing(root.join(PYTHON_TOOLS).join("bin/componentize-py")),
        componentize_js: existing(
            root.join(Example::of(Language::Js).source)
                .join("node_modules/.bin/componentize-js"),
        ),
    }
}

/// The Python virtual environment `scripts/setup` makes for componentize-py.
pub const PYTHON_TOOLS: &str = "target/tools/python";
