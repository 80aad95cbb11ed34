//! The node image must hold every program the node plugin runs. This test finds the programs in
//! the code (the mount crate's `CommandSpec::new("…"`, the nvme-cli fallback's default binary,
//! the node DaemonSet's init container command) and compares them with deploy/docker/node-tools,
//! the list scripts/test-ops checks the built image against and runs. A new exec without a
//! matching line (or a stale line) fails here.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The string literal right after each `marker` (whitespace and newlines allowed between).
fn literals_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = text[i + marker.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

fn programs_in_code() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let src = repo().join("crates/mount/src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Only production code: the unit tests below `#[cfg(test)]` run fakes.
            let code = text.split("#[cfg(test)]").next().unwrap();
            found.extend(literals_after(code, "CommandSpec::new("));
        }
    }
    assert!(found.len() >= 5, "too few mount programs found: {found:?}");
    // nvme-cli fallback: the binary the node uses unless --nvme-cli says otherwise.
    let args = read("crates/rds-csi/src/args.rs");
    let nvme = args
        .split("env = \"RDS_CSI_NVME_CLI\"")
        .nth(1)
        .and_then(|t| literals_after(t, "default_value =").into_iter().next())
        .expect("RDS_CSI_NVME_CLI default in args.rs");
    found.insert(nvme);
    // The init container's command.
    let node = read("deploy/kubernetes/base/node.yaml");
    found.extend(literals_after(&node, "command: ["));
    found
}

fn programs_listed() -> BTreeSet<String> {
    read("deploy/docker/node-tools")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_node_image_list_names_exactly_the_programs_the_code_runs() {
    let code = programs_in_code();
    let listed = programs_listed();
    assert!(code.contains("mkfs.ext4") && code.contains("nvme") && code.contains("modprobe"));
    assert_eq!(
        code, listed,
        "programs the code runs (left) and deploy/docker/node-tools (right) differ"
    );
}

#[test]
fn literals_are_found_across_line_breaks() {
    let text = "CommandSpec::new(\n    \"mkfs.ext4\",\n x) CommandSpec::new(\"blkid\", y) CommandSpec::new(prog)";
    assert_eq!(
        literals_after(text, "CommandSpec::new("),
        ["mkfs.ext4", "blkid"]
    );
}
