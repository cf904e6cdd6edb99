//! The simulator's own code stays in shape: its modules import one way only (no module
//! reaches, through any chain of `crate::` paths, back to itself), and no file grows past
//! about 400 lines. Read from the sources, so a new circle fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 400;

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

/// `bill/endpoint.rs` → `bill::endpoint`; `bill/mod.rs` → `bill`; `lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts.join("::")
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

fn skip_ws(s: &[u8], i: &mut usize) {
    while *i < s.len() && s[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn ident(s: &[u8], i: &mut usize) -> String {
    let start = *i;
    while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
        *i += 1;
    }
    String::from_utf8_lossy(&s[start..*i]).into_owned()
}

/// Reads a path or use tree after `crate::`: `a::b`, `a::{b, c::{d, e}}`, `a::*`.
fn tree(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    skip_ws(s, i);
    match s.get(*i) {
        Some(b'{') => {
            *i += 1;
            loop {
                skip_ws(s, i);
                match s.get(*i) {
                    None => return,
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    Some(b',') => *i += 1,
                    Some(_) => {
                        let before = *i;
                        tree(s, i, prefix.clone(), out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                }
            }
        }
        Some(b'*') => {
            *i += 1;
            out.push(prefix);
        }
        _ => {
            let name = ident(s, i);
            if name.is_empty() {
                return;
            }
            if name == "self" {
                out.push(prefix);
                return;
            }
            let mut path = prefix;
            path.push(name);
            if s.get(*i..*i + 2) == Some(b"::") {
                *i += 2;
                tree(s, i, path, out);
            } else {
                out.push(path);
            }
        }
    }
}

fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let mut i = from + at + "crate::".len();
        let preceded = from + at > 0 && {
            let b = s[from + at - 1];
            b.is_ascii_alphanumeric() || b == b'_'
        };
        if !preceded {
            tree(s, &mut i, Vec::new(), &mut out);
        }
        from = i.max(from + at + 1);
    }
    out
}

/// The module (of those that have a file) that a path names: its longest such prefix.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut c = stack[pos..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

struct Crate {
    /// file module → the modules it names.
    files: BTreeMap<String, BTreeSet<String>>,
    lines: BTreeMap<String, usize>,
}

fn read_crate() -> Crate {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(&src, f))
        .filter(|m| !m.is_empty())
        .collect();
    let mut graph = BTreeMap::new();
    let mut lines = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("a source file");
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        lines.insert(rel, text.lines().count());
        let me = module_of(&src, f);
        // lib.rs and main.rs only declare and re-export; the binary is another crate.
        if me.is_empty() {
            continue;
        }
        let names: BTreeSet<String> = crate_paths(&code(&text))
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|m| *m != me)
            .collect();
        graph.insert(me, names);
    }
    Crate {
        files: graph,
        lines,
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let c = read_crate();
    assert!(c.files.len() > 20, "read the sources: {:?}", c.files.keys());
    if let Some(circle) = cycle(&c.files) {
        panic!("an import circle between files: {}", circle.join(" → "));
    }
    // Between top-level modules too: `bill` as a whole must not reach back to itself.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, names) in &c.files {
        let from = file.split("::").next().unwrap().to_string();
        let entry = top.entry(from.clone()).or_default();
        for n in names {
            let to = n.split("::").next().unwrap().to_string();
            if to != from {
                entry.insert(to);
            }
        }
    }
    if let Some(circle) = cycle(&top) {
        panic!("an import circle between modules: {}", circle.join(" → "));
    }
    // The trade bill knows neither the server nor the simulator (issue 20 lands there).
    for (file, names) in &c.files {
        if file.starts_with("bill") {
            for banned in ["sim", "server", "state", "control", "api"] {
                assert!(!names.contains(banned), "{file} imports {banned}");
            }
        }
    }
}

#[test]
fn the_checker_finds_a_circle() {
    let paths =
        crate_paths("use crate::{a::{b, c::D}, e};\nfn f() { crate::g::h(); xcrate::z(); }");
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["a::b", "a::c::D", "e", "g::h"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.insert("c".to_string(), BTreeSet::new());
    assert!(cycle(&g).is_none());
}

#[test]
fn no_file_passes_about_400_lines() {
    let c = read_crate();
    let long: Vec<_> = c.lines.iter().filter(|(_, n)| **n > MAX_LINES).collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
