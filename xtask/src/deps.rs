//! `cargo xtask deps`: the dependency graph between the top-level modules
//! of `host/src`, and a check that it has no cycle.
//!
//! A module depends on another when any of its files names it through
//! `crate::` (in a `use`, a path or a grouped `use crate::{...}`), outside
//! comments. The host's intended direction is stated in ARCHITECTURE.md;
//! this check keeps it from rotting: a new import that closes a circle
//! fails `cargo xtask test`.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Prints the graph and fails when it has a cycle.
pub fn run() -> Result<()> {
    let graph = graph(&crate::root().join("host/src"))?;
    for (module, deps) in &graph {
        let deps: Vec<_> = deps.iter().map(String::as_str).collect();
        println!("{module} -> {}", deps.join(", "));
    }
    if let Some(cycle) = find_cycle(&graph) {
        bail!(
            "host/src has a circular import between top-level modules: {}",
            cycle.join(" -> ")
        );
    }
    println!("xtask: no circular imports between the top-level modules of host/src");
    Ok(())
}

/// The top-level modules of `src` and what each names through `crate::`.
fn graph(src: &Path) -> Result<Graph> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if (path.is_dir() || path.extension().is_some_and(|e| e == "rs"))
            && !matches!(name, "lib" | "main")
        {
            modules.insert(name.to_string());
        }
    }
    // Items the crate root re-exports (`pub use server::Server;`) count
    // as their module: `crate::Server` depends on `server`.
    let lib = std::fs::read_to_string(src.join("lib.rs")).context("reading host/src/lib.rs")?;
    let mut reexports = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = ident(rest);
        let items = rest[module.len()..].trim_start_matches("::");
        let items = items
            .trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',') {
            reexports.insert(ident(item.trim()), module.clone());
        }
    }
    let mut graph = Graph::new();
    for module in &modules {
        let mut deps = BTreeSet::new();
        let file = src.join(format!("{module}.rs"));
        let dir = src.join(module);
        let mut files = Vec::new();
        if file.is_file() {
            files.push(file);
        }
        collect_rs(&dir, &mut files)?;
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            for name in crate_paths(&text) {
                let name = reexports.get(&name).cloned().unwrap_or(name);
                if &name != module && modules.contains(&name) {
                    deps.insert(name);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    Ok(graph)
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The first path segment after each `crate::` in code (comments skipped),
/// including each item of a grouped `use crate::{a, b::c}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `crate::` must not be the tail of a longer word (`my_crate::`).
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            if before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.push(ident(item.trim_start()));
                }
            } else {
                out.push(ident(rest));
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle in `graph`, as the modules along it (first repeated at the end).
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
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_found_in_uses_groups_and_expressions_but_not_comments() {
        let text = "use crate::config::X;\nuse crate::{store::Y, runtime};\nlet a = crate::push::f(); // crate::api\nmy_crate::nope();";
        assert_eq!(
            crate_paths(text),
            ["config", "store", "runtime", "push"].map(String::from)
        );
    }

    #[test]
    fn a_cycle_is_found_and_a_dag_passes() {
        let mut g = Graph::new();
        g.insert("a".into(), ["b".to_string()].into());
        g.insert("b".into(), ["c".to_string()].into());
        g.insert("c".into(), BTreeSet::new());
        assert_eq!(find_cycle(&g), None);
        g.get_mut("c").unwrap().insert("a".into());
        assert_eq!(
            find_cycle(&g),
            Some(["a", "b", "c", "a"].map(String::from).to_vec())
        );
    }
}
