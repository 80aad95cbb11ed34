//! docs/configuration.md and the deployment manifests against the binary's own `--help`, so
//! neither can drift from the flags the code really has.
//!
//! The doc documents flags in tables under headings that name the subcommands they apply to
//! (in backticks), or "every subcommand" for the global options. For each subcommand, every flag
//! `--help` prints must have a row there carrying its env variable and default, and every row
//! must name a flag that subcommand really has.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rds-csi");
const SUBCOMMANDS: &[&str] = &[
    "controller",
    "node",
    "all",
    "sim",
    "demo",
    "csi",
    "orphans",
    "hotplug-guard",
    "selftest",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let p = repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// One option as `--help` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HelpFlag {
    env: Option<String>,
    default: Option<String>,
}

fn bracketed(text: &str, key: &str, end: char) -> Option<String> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(rest[..rest.find(end)?].to_string())
}

/// Parses the options of `rds-csi <args> --help`, in clap's short (one line per option) or long
/// (description on following lines) layout. `--help` and `--version` are left out.
fn help_flags(args: &[&str]) -> BTreeMap<String, HelpFlag> {
    let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "rds-csi {args:?} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let options = text
        .split_once("\nOptions:\n")
        .unwrap_or_else(|| panic!("no Options section in rds-csi {args:?} --help:\n{text}"))
        .1;
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in options.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            let long = t
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(',').to_string())
                .unwrap_or_default();
            entries.push((long, t.to_string()));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(t);
        }
    }
    entries
        .into_iter()
        .filter(|(long, _)| !long.is_empty() && long != "--help" && long != "--version")
        .map(|(long, body)| {
            let flag = HelpFlag {
                env: bracketed(&body, "[env: ", '='),
                default: bracketed(&body, "[default: ", ']'),
            };
            (long, flag)
        })
        .collect()
}

/// A table row of docs/configuration.md that names a flag, with the subcommands its section
/// covers (`None` = the "every subcommand" section).
#[derive(Debug)]
struct DocRow {
    scope: Option<BTreeSet<String>>,
    flag: String,
    row: String,
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

fn doc_rows(doc: &str) -> Vec<DocRow> {
    let mut scope: Option<BTreeSet<String>> = Some(BTreeSet::new());
    let mut rows = Vec::new();
    for line in doc.lines() {
        if line.starts_with('#') {
            scope = if line.contains("every subcommand") {
                None
            } else {
                Some(
                    backticked(line)
                        .into_iter()
                        .filter(|w| SUBCOMMANDS.contains(&w.as_str()))
                        .collect(),
                )
            };
        } else if line.starts_with('|') {
            let first_cell = line.split('|').nth(1).unwrap_or("");
            for w in backticked(first_cell) {
                if w.starts_with("--") {
                    rows.push(DocRow {
                        scope: scope.clone(),
                        flag: w,
                        row: line.to_string(),
                    });
                }
            }
        }
    }
    rows
}

fn covers(row: &DocRow, sub: Option<&str>) -> bool {
    match (&row.scope, sub) {
        (None, None) => true,
        (Some(s), Some(sub)) => s.contains(sub),
        _ => false,
    }
}

struct Cli {
    global: BTreeMap<String, HelpFlag>,
    /// Subcommand → its own flags (global ones removed).
    subs: BTreeMap<&'static str, BTreeMap<String, HelpFlag>>,
}

fn cli() -> Cli {
    let global = help_flags(&[]);
    let subs = SUBCOMMANDS
        .iter()
        .map(|s| {
            let mut flags = help_flags(&[s]);
            flags.retain(|k, _| !global.contains_key(k));
            (*s, flags)
        })
        .collect();
    Cli { global, subs }
}

fn check_row(
    problems: &mut Vec<String>,
    rows: &[DocRow],
    sub: Option<&str>,
    flag: &str,
    h: &HelpFlag,
) {
    let place = sub.map_or("the global options".to_string(), |s| format!("`{s}`"));
    let Some(row) = rows.iter().find(|r| r.flag == flag && covers(r, sub)) else {
        problems.push(format!(
            "{flag} of {place} has no row in docs/configuration.md"
        ));
        return;
    };
    if let Some(env) = &h.env
        && !row.row.contains(&format!("`{env}`"))
    {
        problems.push(format!("row of {flag} ({place}) does not name `{env}`"));
    }
    if let Some(default) = &h.default
        && !row.row.contains(&format!("`{default}`"))
    {
        problems.push(format!(
            "row of {flag} ({place}) does not show the default `{default}`"
        ));
    }
}

#[test]
fn every_flag_in_help_is_documented_with_env_and_default() {
    let cli = cli();
    let rows = doc_rows(&read("docs/configuration.md"));
    let mut problems = Vec::new();
    for (flag, h) in &cli.global {
        check_row(&mut problems, &rows, None, flag, h);
    }
    for (sub, flags) in &cli.subs {
        for (flag, h) in flags {
            check_row(&mut problems, &rows, Some(sub), flag, h);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_documented_flag_exists() {
    let cli = cli();
    let doc = read("docs/configuration.md");
    let mut problems = Vec::new();
    for row in doc_rows(&doc) {
        match &row.scope {
            None if !cli.global.contains_key(&row.flag) => {
                problems.push(format!("{} is documented as global but is not", row.flag));
            }
            None => {}
            Some(scope) if scope.is_empty() => problems.push(format!(
                "{} is documented under a heading that names no subcommand",
                row.flag
            )),
            Some(scope) => {
                for sub in scope {
                    if !cli.subs[sub.as_str()].contains_key(&row.flag) {
                        problems.push(format!("`{sub}` has no {}", row.flag));
                    }
                }
            }
        }
    }
    // Prose mentions too: any backticked `--flag` must be a flag of some subcommand.
    let builtin = ["--help".to_string(), "--version".to_string()];
    let all: BTreeSet<&String> = cli
        .global
        .keys()
        .chain(cli.subs.values().flat_map(|f| f.keys()))
        .chain(builtin.iter())
        .collect();
    for w in backticked(&doc.replace("```", "")) {
        let w = w.split(['=', ' ']).next().unwrap_or("").to_string();
        if w.starts_with("--") && !all.contains(&w) {
            problems.push(format!("docs/configuration.md mentions unknown flag {w}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every manifest file under deploy/kubernetes (rbac excluded: it configures no rds-csi
/// process), with its path.
fn manifests() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "rbac") {
                    walk(&p, out);
                }
            } else if p
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "toml")
            {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join("deploy/kubernetes"), &mut out);
    out
}

/// The manifests configure rds-csi through environment variables; a misspelt or removed one
/// would be silently ignored by the process, so every name must be one `--help` prints.
#[test]
fn manifests_use_only_env_variables_the_binary_reads() {
    let cli = cli();
    let known: BTreeSet<String> = cli
        .global
        .values()
        .chain(cli.subs.values().flat_map(|f| f.values()))
        .filter_map(|h| h.env.clone())
        .collect();
    let files = manifests();
    assert!(
        files.len() >= 5,
        "expected the deploy/kubernetes manifests, found {}",
        files.len()
    );
    let mut unknown = Vec::new();
    for (path, text) in &files {
        let words =
            text.split(|c: char| !(c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()));
        for w in words {
            let ours = (w.starts_with("RDS_") && w.len() > 4)
                || w.starts_with("CSI_MANAGED")
                || w == "CSI_ENDPOINT"
                || w == "CSI_DRIVER_NAME";
            if ours && !known.contains(w) {
                unknown.push(format!("{}: {w}", path.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "unknown variables:\n{}",
        unknown.join("\n")
    );
}

/// The example backends file must be one the controller accepts (unknown keys are errors).
#[test]
fn example_backends_file_parses() {
    let text = read("deploy/kubernetes/overlays/multi-rds/backends.toml");
    let backends = vocab::config::parse_backends(&text).unwrap();
    assert_eq!(
        backends.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["rds2"]
    );
    // It shows two storage paths (docs/multipath.md), and they pass the backend's rules.
    let paths = backends[0].storage_addresses().unwrap();
    assert_eq!(paths.len(), 2, "{paths:?}");
}

/// Every StorageClass parameter the driver accepts (each `pub const P_…` in
/// crates/vocab/src/params.rs, read from the source so a new parameter cannot be missed) is
/// documented in the doc and in the annotated example class.
#[test]
fn storage_class_parameters_are_documented() {
    let source = read("crates/vocab/src/params.rs");
    let params: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const P_"))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_string)
        .collect();
    assert!(
        params.iter().any(|p| p == vocab::params::P_NVME_ADDRESS),
        "found no parameters in params.rs: {params:?}"
    );
    let doc = read("docs/configuration.md");
    let example = read("deploy/kubernetes/overlays/single-rds/storageclass.yaml");
    let mut missing = Vec::new();
    for p in &params {
        if !doc.contains(&format!("`{p}`")) {
            missing.push(format!("docs/configuration.md: {p}"));
        }
        if !example.contains(&format!("{p}:")) {
            missing.push(format!("storageclass.yaml: {p}"));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}
