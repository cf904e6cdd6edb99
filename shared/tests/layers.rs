//! The library's top-level modules import one way only: no module reaches, through any
//! chain of `crate::` paths, back to itself (edges → handlers → domain → ports). Read from
//! the sources, so a new circle fails here and names every module on it.
//!
//! A module is a top-level file or folder of `shared/src` (`handlers/order.rs` belongs to
//! `handlers`); paths within one module are its own business. Unit tests (`*_tests.rs`, and
//! a trailing `#[cfg(test)] mod tests`) are left out: they are not linked into a binary and
//! may reach for anything to set up their story. Comments are left out too, doc links
//! included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `handlers/order.rs` → `handlers`; `state.rs` → `state`; `lib.rs` → none.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.iter().next()?;
    let name = first.to_string_lossy().trim_end_matches(".rs").to_string();
    (name != "lib").then_some(name)
}

/// The code without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path, `use crate::{a, b::c}` trees included.
fn crate_modules(code: &str) -> BTreeSet<String> {
    fn ident(s: &str) -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if preceded {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(group[start..i].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(group[start..i].trim_start()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        if file.to_string_lossy().ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        let edges = graph.entry(from.clone()).or_default();
        for to in crate_modules(&code(&text)) {
            if to != from && modules.contains(&to) {
                edges.insert(to);
            }
        }
    }
    graph
}

/// Every knot of circles, once: each strongly connected component with more than one
/// module, as one closed path through it and all the modules it ties together.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(Vec<String>, Vec<String>)> {
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reaches(m).contains(m) {
            continue;
        }
        let component: BTreeSet<String> = reaches(m)
            .into_iter()
            .filter(|other| reaches(other).contains(m))
            .collect();
        // A shortest path from m back to itself, for the message.
        let mut previous: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([m.clone()]);
        'search: while let Some(at) = queue.pop_front() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == m {
                    previous.insert(format!("{m}#end"), at.clone());
                    break 'search;
                }
                if component.contains(next) && !previous.contains_key(next) {
                    previous.insert(next.clone(), at.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        let mut path = vec![m.clone()];
        let mut at = previous[&format!("{m}#end")].clone();
        while &at != m {
            path.push(at.clone());
            at = previous[&at].clone();
        }
        path.push(m.clone());
        path.reverse();
        let members: Vec<String> = component.iter().cloned().collect();
        out.push((path, members));
        done.extend(component);
    }
    out
}

#[test]
fn shared_src_has_no_import_circle() {
    let graph = graph();
    assert!(
        graph.len() > 20 && graph["runtime"].contains("handlers"),
        "the sources were read: {graph:?}"
    );
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "import circles between shared/src's modules (each arrow a `crate::` path in code):\n{}",
        found
            .iter()
            .map(|(path, all)| format!(
                "  {} (tied together: {})",
                path.join(" → "),
                all.join(", ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_reader_sees_use_trees_and_skips_comments() {
    let text = "use crate::{a::X, b::{c, d}, e};\n/// [`crate::f`]\n// crate::g\nlet x = crate::h::y(); $crate::i\n#[cfg(test)]\nmod tests { use crate::j; }";
    let found: Vec<String> = crate_modules(&code(text)).into_iter().collect();
    assert_eq!(found, ["a", "b", "e", "h"]);
}
