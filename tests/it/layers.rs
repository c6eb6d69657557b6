//! The layering gate: production code of a top-level module may only use
//! modules of lower layers, as the "Layers" table of ARCHITECTURE.md lists them.
//! That keeps the module graph one-way (no cycles) and the table true.
//!
//! It reads `use crate::…` paths (and any other `crate::x` path) in `src/`,
//! skipping comments and test-only code (`#[cfg(test)]` modules, inline or in
//! their own file): tests may reach up to build what they check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Module name → layer number, from ARCHITECTURE.md's "## Layers" table: rows
/// `| 3 | `stripe`, `auth` | … |`.
fn layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("ARCHITECTURE.md has a '## Layers' section");
    let mut layers = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for name in cells[2].split('`').skip(1).step_by(2) {
            assert!(
                layers.insert(name.to_string(), layer).is_none(),
                "{name} is listed twice in the Layers table"
            );
        }
    }
    assert!(!layers.is_empty(), "the Layers table has no rows");
    layers
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files that are `#[cfg(test)]` (or test-and-feature) modules declared as
/// `mod name;`: their whole content is test code.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read source");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // A `foo.rs` declares its children in `foo/`; `mod.rs`, `lib.rs` and
        // `main.rs` in their own directory.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = match stem {
            "mod" | "lib" | "main" => file.parent().expect("parent").to_path_buf(),
            _ => file.with_extension(""),
        };
        for pair in lines.windows(2) {
            let gated = pair[0].starts_with("#[cfg(") && pair[0].contains("test");
            let declared = pair[1]
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'));
            if let (true, Some(name)) = (gated, declared) {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// The top-level modules a file's production code names with `crate::`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut lines = text.lines().peekable();
    // Brace depth inside an inline `#[cfg(test)] mod … { … }`, while skipping it.
    let mut skipping: Option<i64> = None;
    while let Some(line) = lines.next() {
        let code = line.trim();
        if let Some(depth) = skipping.as_mut() {
            *depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            if *depth <= 0 {
                skipping = None;
            }
            continue;
        }
        if code.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|l| l.contains("mod ") && l.contains('{'))
        {
            skipping = Some(0);
            continue;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: the first segment of each item (one line).
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn modules_use_only_lower_layers() {
    let layers = layers();
    let src = root().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let tests = test_only_files(&files);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" || tests.contains(file) {
            continue;
        }
        seen.insert(top.clone());
        let Some(&layer) = layers.get(&top) else {
            problems.push(format!("module `{top}` is missing from the Layers table"));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for used in uses(&text) {
            if used == top {
                continue;
            }
            match layers.get(&used) {
                Some(&lower) if lower < layer => {}
                Some(&other) => problems.push(format!(
                    "{} (layer {layer}, `{top}`) uses `{used}` (layer {other}): only lower layers may be used",
                    relative.display()
                )),
                None => problems.push(format!(
                    "{} uses `crate::{used}`, which the Layers table does not list",
                    relative.display()
                )),
            }
        }
    }
    for listed in layers.keys() {
        if !seen.contains(listed) {
            problems.push(format!(
                "the Layers table lists `{listed}`, which is not a module in src/"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the module layering is broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths_and_skips_tests_and_comments() {
    let text = "use crate::{clock::unix_now, config};\n\
                // crate::cli in a comment\n\
                fn f() { crate::metrics::cache(\"hit\"); }\n\
                #[cfg(test)]\n\
                mod tests {\n\
                    use crate::admin;\n\
                }\n\
                fn g() { crate::store::open(); }\n";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["clock", "config", "metrics", "store"]);
}
