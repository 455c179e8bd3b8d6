//! The import rules of ARCHITECTURE.md, checked over the source: every
//! `crate::…` path in the host's library modules (test code left out) is an
//! edge from the module it is written in to the top-level module it names.
//!
//! - Sources (`source`, `cache_events`) import neither the pipeline nor the
//!   sink: they hand work to the pipeline's intake and commit only past
//!   what it reports applied.
//! - The sink imports neither the config nor the runtime.
//! - The runtime (plugins) reaches no Redis connection and no sink.
//! - Only the commands (the service and the one-shot tools) import the
//!   whole `Config`; the parts take their own settings.
//! - Only the contract module and the runtime (whose host functions every
//!   version imports) name an older contract's bindings.
//! - No import loop between top-level modules.
//! - Nothing outside `devtools` (local servers, the demo, plugin authors'
//!   tools) imports it, test code included: the service builds without it,
//!   and tests that need local servers live in `tests/`.
//!
//! A file's code ends at its first `#[cfg(test)] mod`: test modules come
//! last. Comment lines are left out. Paths through `super::` stay inside a
//! top-level module and are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules that start things: they may import the whole config.
const COMMANDS: [&str; 6] = [
    "service",
    "backfill",
    "dead_letter_replay",
    "verify_command",
    "devtools",
    "logging",
];

/// The binary's command-line files built only with the `devtools` feature.
const DEVTOOLS_COMMANDS: [&str; 7] = [
    "bench_record_cli.rs",
    "devtools_cli.rs",
    "plugin_cli.rs",
    "bench_pipeline_cli.rs",
    "bench_startup_cli.rs",
    "bench_lag_cli.rs",
    "bench_replicas_cli.rs",
];

/// Edges between top-level modules, each with every place that makes it.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The library's source files, without `tests.rs` files.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    rust_files(dir, out);
    out.retain(|path| !path.to_string_lossy().ends_with("tests.rs"));
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`pipeline/lanes.rs` is
/// `pipeline`), `None` for the crate root.
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).expect("under the root");
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The code of a file without its test module and comment lines.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod ").next().unwrap_or("");
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`, and the paths.
fn crate_paths(code: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                let name = identifier(item.trim_start());
                if !name.is_empty() {
                    found.push((name.to_owned(), item.trim().to_owned()));
                }
            }
        } else {
            let name = identifier(rest);
            let mut path_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            // `crate::a::{B, C}`: the group belongs to the path.
            if let Some(group) = rest[path_end..].strip_prefix('{') {
                let inside: usize = top_level_items(group).iter().map(|i| i.len() + 1).sum();
                path_end = (path_end + 1 + inside).min(rest.len());
            }
            found.push((name.to_owned(), rest[..path_end].to_owned()));
        }
    }
    found
}

/// The comma-separated items of a `{…}` group (its text after the `{`), up
/// to the matching `}`; nested groups stay inside their item.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// Whether `text` holds `word` with no identifier character either side.
fn names_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The import graph of the library's source.
fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = top_module(&root, &file) else {
            continue;
        };
        if from.ends_with("_cli") || from == "architecture" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("readable source"));
        for (to, path) in crate_paths(&code) {
            if to != from {
                let place = format!("{}: crate::{path}", file.display());
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(place);
            }
        }
    }
    graph
}

/// Every edge from one of `from` to one of `to`, as a readable line.
fn edges(graph: &Graph, from: &[&str], to: &[&str]) -> Vec<String> {
    graph
        .iter()
        .filter(|(module, _)| from.contains(&module.as_str()))
        .flat_map(|(module, targets)| {
            targets
                .iter()
                .filter(|(target, _)| to.contains(&target.as_str()))
                .map(move |(target, places)| format!("{module} -> {target} ({})", places[0]))
        })
        .collect()
}

/// A loop of modules, if there is one.
fn find_loop(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for target in graph.get(module).into_iter().flat_map(|t| t.keys()) {
            if let Some(cycle) = visit(graph, target, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn sources_hand_work_to_the_pipeline_and_never_call_it() {
    let found = edges(&graph(), &["source", "cache_events"], &["pipeline", "sink"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_sink_knows_neither_the_config_nor_the_plugins() {
    let found = edges(&graph(), &["sink"], &["config", "runtime"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn plugins_never_reach_redis() {
    let found = edges(&graph(), &["runtime"], &["sink", "redis_connection"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_commands_take_the_whole_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut found = Vec::new();
    for file in files {
        let Some(module) = top_module(&root, &file) else {
            continue;
        };
        if COMMANDS.contains(&module.as_str())
            || module.ends_with("_cli")
            || module == "config"
            || module == "architecture"
        {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("readable source"));
        let whole = crate_paths(&code)
            .into_iter()
            .any(|(to, path)| to == "config" && names_word(&path, "Config"))
            || names_word(&code, "config::Config");
        if whole {
            found.push(file.display().to_string());
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_the_contract_and_the_runtime_name_older_contracts() {
    let graph = graph();
    let places = |module: &str| -> Vec<String> {
        graph
            .get(module)
            .into_iter()
            .flat_map(|targets| targets.values().flatten().cloned())
            .collect()
    };
    let older = |place: &String| place.contains("since_v0_1") || place.contains("v0_2::");
    let outside: Vec<String> = graph
        .keys()
        .filter(|module| !["contract", "runtime"].contains(&module.as_str()))
        .flat_map(|module| places(module))
        .filter(older)
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

#[test]
fn the_service_never_imports_the_developer_tools() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let found: Vec<String> = files
        .iter()
        .filter(|file| {
            top_module(&root, file)
                .is_none_or(|module| module != "devtools" && module != "architecture")
                && !DEVTOOLS_COMMANDS.iter().any(|cli| file.ends_with(cli))
        })
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .any(|line| line.contains("devtools::"))
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(found.is_empty(), "import the developer tools: {found:?}");
}

#[test]
fn no_module_imports_itself_through_others() {
    let graph = graph();
    if let Some(cycle) = find_loop(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                format!(
                    "{} -> {} ({})",
                    pair[0], pair[1], graph[&pair[0]][&pair[1]][0]
                )
            })
            .collect();
        panic!("import loop:\n{}", steps.join("\n"));
    }
}

#[test]
fn the_check_reads_grouped_and_nested_paths() {
    let code = "use crate::{a::{B, C}, c};\nfn f() { crate::d::e(\"redis://x\"); }\n\
                // crate::ignored\n#[cfg(test)]\nfn g() { crate::f::h(); }\n\
                #[cfg(test)]\nmod tests { crate::z::y(); }\n";
    let names: Vec<String> = crate_paths(&code_of(code))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["a", "c", "d", "f"]);
    assert!(names_word("config::{RedisConfig, Config}", "Config"));
    let grouped = crate_paths("use crate::config::{RedisConfig, Config as C};");
    assert!(names_word(&grouped[0].1, "Config"), "{grouped:?}");
    assert!(!names_word("config::RedisConfig", "Config"));
    let mut graph = Graph::new();
    graph
        .entry("x".into())
        .or_default()
        .insert("y".into(), vec!["p".into()]);
    assert_eq!(find_loop(&graph), None);
    graph
        .entry("y".into())
        .or_default()
        .insert("x".into(), vec!["q".into()]);
    assert_eq!(
        find_loop(&graph),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
}
