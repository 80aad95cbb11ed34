//! The driver's crates import each other one way only, as `README.md`'s architecture table
//! says, and within each crate the top-level modules do too: no cycle, so every crate can be
//! learned (and cut further) along module lines, and observability (metrics, audit) stays a
//! layer on top that implements the observer traits of the crates where events happen.
//!
//! Read from the source, not the compiler: every `crate::a…` path (and `super::a…` in a
//! top-level module's own file, and names `lib.rs` re-exports) outside `#[cfg(test)] mod`
//! blocks and `//` comment lines is an edge from the file's top-level module to `a`. The crate
//! graph is read from each crate's `[dependencies]` (not dev-dependencies).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comment lines and without `#[cfg(test)] mod … { … }` blocks.
fn production_code(source: &str) -> String {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod = trimmed.starts_with("mod ")
            && trimmed
                .find(['{', ';'])
                .is_some_and(|i| trimmed.as_bytes()[i] == b'{');
        if !is_inline_mod {
            rest = after;
            continue;
        }
        let open = after.find('{').expect("checked above");
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments named after each `prefix` (`crate::a::b` → `a`,
/// `crate::{a::b, c}` → `a`, `c`).
fn first_segments(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        out.insert(ident(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out
}

/// `name → module` for what `lib.rs` re-exports (`pub use backend::{Backend, Backends};`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = ident(path).to_string();
        let names = path[module.len()..].trim_start_matches("::");
        let names = names.trim_end_matches(';').trim_matches(['{', '}']);
        for name in names.split(',') {
            let name = name.rsplit("::").next().unwrap_or_default().trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.clone());
            }
        }
    }
    out
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let aliases = reexports(&lib);
    let top = |p: &Path| -> Option<(String, bool)> {
        let rel = p.strip_prefix(src).ok()?;
        let mut parts = rel.iter().map(|s| s.to_string_lossy().into_owned());
        let first = parts.next()?;
        let rest: Vec<String> = parts.collect();
        let name = first.trim_end_matches(".rs").to_string();
        // `super::` means the crate root only in `src/a.rs` and `src/a/mod.rs`.
        let top_file = rest.is_empty() || rest == ["mod.rs"];
        (name != "lib" && name != "main").then_some((name, top_file))
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top(f)).map(|t| t.0).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some((from, top_file)) = top(file) else {
            continue;
        };
        let source = std::fs::read_to_string(file).expect("source file");
        let code = production_code(&source);
        let mut names = first_segments(&code, "crate::");
        if top_file {
            names.extend(first_segments(&code, "super::"));
        }
        let edges = graph.entry(from.clone()).or_default();
        for name in names {
            let to = aliases.get(&name).cloned().unwrap_or(name);
            if to != from && modules.contains(&to) {
                edges.insert(to);
            }
        }
    }
    graph
}

/// One cycle of `graph`, as the path `a → b → … → a`, if there is any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// The driver's crates split by role, each with the workspace crates it may depend on.
const ROLE_CRATES: [(&str, &[&str]); 7] = [
    ("vocab", &[]),
    ("fencing", &["vocab"]),
    ("controller", &["vocab", "fencing"]),
    ("node", &["vocab"]),
    ("k8s", &["vocab", "fencing", "node"]),
    ("hotplug-guard", &["vocab"]),
    ("observability", &["vocab", "fencing", "node", "controller"]),
];

/// Crates no library may link (only the `rds-csi` binary and `sandbox` do).
const TEST_ONLY: [&str; 5] = ["rds-sim", "sandbox", "tempfile", "proptest", "rcgen"];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_path_buf()
}

/// The names under `[dependencies]` of a manifest.
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn top_level_modules_of_every_driver_crate_import_each_other_one_way_only() {
    for (name, _) in ROLE_CRATES {
        let src = crates_dir().join(name).join("src");
        let graph = module_graph(&src);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{name}: import cycle between top-level modules: {}\n{graph:#?}",
                cycle.join(" → ")
            );
        }
    }
    // The parse found the real graphs, not empty ones.
    let vocab = module_graph(&crates_dir().join("vocab/src"));
    assert!(
        vocab.get("bounds").is_some_and(|e| e.contains("rpc")),
        "{vocab:#?}"
    );
    let controller = module_graph(&crates_dir().join("controller/src"));
    assert!(
        controller
            .get("snapshots")
            .is_some_and(|e| e.contains("paging")),
        "{controller:#?}"
    );
}

#[test]
fn the_crate_graph_is_the_documented_one_and_no_library_links_test_crates() {
    let role: BTreeSet<&str> = ROLE_CRATES.iter().map(|c| c.0).collect();
    for (name, allowed) in ROLE_CRATES {
        let manifest = std::fs::read_to_string(crates_dir().join(name).join("Cargo.toml"))
            .expect("Cargo.toml");
        let deps = normal_dependencies(&manifest);
        let on_roles: BTreeSet<&str> = deps
            .iter()
            .map(String::as_str)
            .filter(|d| role.contains(d))
            .collect();
        let allowed: BTreeSet<&str> = allowed.iter().copied().collect();
        assert_eq!(on_roles, allowed, "{name}'s driver crates: {deps:?}");
    }
    let entries = std::fs::read_dir(crates_dir()).expect("crates/");
    for entry in entries {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if name == "rds-csi" || name == "sandbox" {
            continue;
        }
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let deps = normal_dependencies(&manifest);
        for bad in TEST_ONLY {
            assert!(!deps.contains(bad), "library {name} depends on {bad}");
        }
    }
}

#[test]
fn the_check_sees_cycles_through_groups_reexports_and_super() {
    let dir = tempdir();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("b")).expect("mkdir");
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).expect("write");
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
    );
    write("a.rs", "use crate::{x::Y, b::mod_b_item};\n");
    write("b/mod.rs", "mod inner;\n");
    write("b/inner.rs", "use crate::Thing;\n");
    write(
        "c.rs",
        "// use crate::a; (a comment)\n#[cfg(test)]\nmod tests { use crate::a; }\n",
    );
    let graph = module_graph(&src);
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
    write("c.rs", "fn f() { super::a::g() }\n");
    let graph = module_graph(&src);
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]),
        "{graph:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for one test run.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "driver-module-graph-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}
