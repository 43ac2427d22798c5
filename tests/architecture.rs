//! The import graph that `docs/architecture.md` draws is the one the code has: every module of
//! `src/` imports only what the document says, the graph has no cycle, and the workspace's
//! building blocks (`middleware/`, `observability/`) know nothing of `src/`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

const DOC: &str = "docs/architecture.md";
/// The line before the graph's code block in the document.
const MARKER: &str = "<!-- import graph: checked by tests/architecture.rs -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a file without comments (doc links are no imports) and without its unit tests.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => &text[..tests],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            // `//` after a ':' is a URL inside a string, not a comment.
            Some(at) if !line[..at].ends_with(':') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::` in `code`, grouped imports included.
fn imported(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.remove("");
    found
}

/// The graph of the library's top-level modules, as the code has it.
fn graph_of_the_code() -> Graph {
    let src = root().join("src");
    let mut graph = Graph::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
        // The binaries are not modules of the library.
        if ["lib", "main", "dev", "bin"].contains(&module.as_str()) {
            continue;
        }
        let imports = graph.entry(module.clone()).or_default();
        imports.extend(imported(&code(&file)).into_iter().filter(|m| *m != module));
    }
    graph
}

/// The graph as the document draws it: `module -> a, b, c` lines in the block after the marker.
fn graph_of_the_document() -> Graph {
    let doc = fs::read_to_string(root().join(DOC)).unwrap();
    let after = doc
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("{DOC} has no {MARKER:?}"))
        .1;
    let block = after
        .split("```")
        .nth(1)
        .expect("a code block after the marker");
    block
        .lines()
        .skip(1)
        .filter(|line| line.contains("->"))
        .map(|line| {
            let (module, imports) = line.split_once("->").unwrap();
            let imports = imports
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            (module.trim().to_owned(), imports)
        })
        .collect()
}

#[test]
fn the_document_draws_the_import_graph_the_code_has() {
    let code = graph_of_the_code();
    let doc = graph_of_the_document();
    let text = |g: &Graph| {
        g.iter()
            .map(|(m, i)| {
                format!(
                    "{m} -> {}",
                    i.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        text(&doc),
        text(&code),
        "{DOC} is out of date; the code's graph is:\n{}",
        text(&code)
    );
}

#[test]
fn the_import_graph_has_no_cycle() {
    let graph = graph_of_the_code();
    // Kahn's algorithm: peel off modules that import nothing left.
    let mut left = graph.clone();
    while !left.is_empty() {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, imports)| imports.iter().all(|i| !left.contains_key(i)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(
            !leaves.is_empty(),
            "a cycle among the modules {:?}",
            left.keys().collect::<Vec<_>>()
        );
        for leaf in leaves {
            left.remove(&leaf);
        }
    }
}

#[test]
fn the_building_blocks_know_nothing_of_the_service() {
    for crate_dir in ["middleware", "observability"] {
        for file in rust_files(&root().join(crate_dir).join("src")) {
            let code = code(&file);
            assert!(
                !code.contains("task_service"),
                "{} refers to the service crate",
                file.display()
            );
        }
    }
}
