//! The shape of the crate a reader relies on, checked on its source: the top-level modules of
//! `src/` import each other without a circle, so each can be read knowing only those below
//! it; and no file of `src/` is longer than a reader takes in at one sitting (600 lines). A
//! module's imports are the `crate::<module>` paths in its files' code (comments left out),
//! whether in `use` lines or written in place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module -> (module it names -> where, as `file:line`).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/x.rs` and `src/x/` (but the crate roots).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .expect("src/")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".rs") {
                Some(stem) if stem != "lib" && stem != "main" => Some(stem.to_string()),
                Some(_) => None,
                None => e.path().is_dir().then_some(name),
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a line of code names after `crate::`: one, or each of a `crate::{a, b::c}`
/// group's first segments (a group that goes on past the line is read to its end there).
fn named_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            let mut word = String::new();
            for c in group.chars() {
                if item_start && (c.is_alphanumeric() || c == '_') {
                    word.push(c);
                    continue;
                }
                if !word.is_empty() {
                    found.push(std::mem::take(&mut word));
                    item_start = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    _ => {}
                }
            }
            if !word.is_empty() {
                found.push(word);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn import_graph() -> Graph {
    let src = src();
    let modules = top_level_modules(&src);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let first = relative.components().next().expect("a component");
        let first = first.as_os_str().to_string_lossy();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if !modules.contains(&module) {
            continue; // lib.rs and main.rs sit above every module
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for named in named_modules(code) {
                if named != module && modules.contains(&named) {
                    graph
                        .entry(module.clone())
                        .or_default()
                        .entry(named)
                        .or_default()
                        .push(format!("src/{}:{}", relative.display(), n + 1));
                }
            }
        }
    }
    graph
}

/// A circle of imports, as the modules along it (the first again at the end), if any.
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let graph = import_graph();
    if let Some(circle) = find_circle(&graph) {
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| format!("  {} -> {}: {}", w[0], w[1], graph[&w[0]][&w[1]].join(", ")))
            .collect();
        panic!(
            "an import circle between top-level modules of src/:\n{}",
            steps.join("\n")
        );
    }
}

/// The longest a file of `src/` may be, its tests included.
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_is_longer_than_one_sitting() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 50, "the source files were not found");
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f)
                .expect("a source file")
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("  {} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by job):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_graph_sees_the_imports_that_are_there() {
    // The service starts the HTTP layer, which reads the store: if these were not seen, the
    // check above would pass on an empty graph.
    let graph = import_graph();
    for (from, to) in [("service", "http"), ("http", "store"), ("step", "engine")] {
        assert!(
            graph.get(from).is_some_and(|m| m.contains_key(to)),
            "{from} -> {to} not found in {graph:?}"
        );
    }
}

#[test]
fn a_circle_is_found_and_a_tree_is_not() {
    let graph_of = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string())
                .or_default()
                .insert(b.to_string(), vec![]);
        }
        g
    };
    let circle = find_circle(&graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]));
    assert_eq!(
        circle.as_deref(),
        Some(&["a", "b", "c", "a"].map(String::from)[..])
    );
    assert_eq!(
        find_circle(&graph_of(&[("a", "b"), ("a", "c"), ("b", "c")])),
        None
    );
    assert_eq!(
        named_modules("use crate::{store::{Store, X}, engine, self_check as c};"),
        ["store", "engine", "self_check"]
    );
    assert_eq!(
        named_modules("let x = crate::money::parse(crate::event::y);"),
        ["money", "event"]
    );
}
