//! The documentation's relative links lead somewhere: every `](path)` in
//! the README, ARCHITECTURE.md and docs/ names a file or folder of the
//! repository.

use std::path::Path;

/// The relative link targets of a Markdown text, without `#anchors`.
fn relative_links(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| target.split('#').next().unwrap_or(""))
        .filter(|target| !target.is_empty() && !target.contains("://"))
        .collect()
}

#[test]
fn every_relative_link_names_a_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs folder") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("readable page");
        let base = page.parent().expect("in a folder");
        for target in relative_links(&text) {
            if !base.join(target).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn links_are_read_without_anchors_and_urls() {
    let text = "[a](docs/A.md#x) [b](https://x.y/z) [c](#here) [d](../e)";
    assert_eq!(relative_links(text), ["docs/A.md", "../e"]);
}
