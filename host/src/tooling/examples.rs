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
            Language::Rust => "build it with ./scripts/setup".into(),
            _ => format!(
                "install its build tool with ./scripts/setup, then: redis-spanner plugin build \
                 {} --out {}",
                self.source, self.component
            ),
        }
    }

    /// Builds the component under `root` (the repository root); returns
    /// its path. Rust examples are built by cargo (`scripts/setup`, the
    /// tests' build script), not here: their path is returned if it exists.
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

    /// Like [`Example::build`], but only when the component is missing.
    pub fn ensure_built(&self, root: &Path) -> anyhow::Result<PathBuf> {
        let component = root.join(self.component);
        if component.is_file() {
            return Ok(component);
        }
        self.build(root)
    }
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
