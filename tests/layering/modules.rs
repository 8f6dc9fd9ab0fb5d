//! The modules of `node`, checked: `core` imports nothing of the shell, `mesh` nothing of
//! `daemon`, and no two modules import each other, directly or around a circle.
//!
//! The check reads the sources of `node/src`, one module per file (`a/mod.rs` is `a`, `a/b.rs`
//! is `a::b`; inline modules such as `mod tests { .. }` belong to their file). It lexes each
//! file, leaving out comments, strings and character literals, and takes as imports:
//!
//! - each path of a `use` declaration that starts with `crate`, `super` or `self`, or with the
//!   name of a child module or of something the module imported itself;
//! - each path elsewhere that starts with `crate::`, `super::` or `self::`.
//!
//! Each import is resolved to the module that defines what it names, through the `use`
//! declarations of the modules on the way: `crate::daemon::Home` is `daemon::home`, where
//! `daemon/mod.rs` re-exports it from. So a `mod.rs` that re-exports its children is not in a
//! circle with them, and `mod` declarations are not imports. Paths that macros build, and
//! names brought in by a glob, are not followed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// What each layer (a top-level module of `node`) must not import.
const RULES: &[(&str, &[&str])] = &[
    // The sans-IO core compiles without the `shell` feature, which all of these need.
    ("core", &["daemon", "exec", "frontend", "mesh", "stat"]),
    // The mesh is the network layer below the daemon: it is handed paths and settings.
    ("mesh", &["daemon"]),
];

/// Violations of these rules that are allowed for now. Empty: a new violation is a seam to
/// add, not an entry here. The test also fails on an entry that no longer occurs.
const KNOWN: &[&str] = &[];

/// A module's path below the crate root; empty for the root (`lib.rs`).
type ModPath = Vec<String>;

/// An import: the module that imports, and the module it imports from.
type Edge = (ModPath, ModPath);

/// A place in the sources: file and line.
type Site = (String, usize);

/// Each module and the modules it imports.
type ModGraph = BTreeMap<ModPath, BTreeSet<ModPath>>;

/// A module as `a::b`, the root as `crate`.
fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// The module that `file` (relative to the crate's `src/`, with `/`) holds.
fn module_of(file: &str) -> ModPath {
    if file == "lib.rs" {
        return ModPath::new();
    }
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut module: ModPath = stem.split('/').map(str::to_owned).collect();
    if module.last().map(String::as_str) == Some("mod") {
        module.pop();
    }
    module
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The identifiers, `::` and punctuation of `source`, without comments, strings, character
/// literals, lifetimes and numbers.
fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips to just past the `"` that closes a string opened before `i`.
    let skip_string = |i: &mut usize, line: &mut usize| {
        while *i < chars.len() {
            match chars[*i] {
                '\\' => *i += 2,
                '"' => {
                    *i += 1;
                    return;
                }
                c => {
                    if c == '\n' {
                        *line += 1;
                    }
                    *i += 1;
                }
            }
        }
    };
    // Skips a raw string whose `r` is at `i`: `r#*"…"#*`.
    let skip_raw_string = |i: &mut usize, line: &mut usize| {
        *i += 1;
        let mut hashes = 0;
        while chars.get(*i) == Some(&'#') {
            hashes += 1;
            *i += 1;
        }
        *i += 1; // the opening quote
        while *i < chars.len() {
            if chars[*i] == '"' && (1..=hashes).all(|k| chars.get(*i + k) == Some(&'#')) {
                *i += 1 + hashes;
                return;
            }
            if chars[*i] == '\n' {
                *line += 1;
            }
            *i += 1;
        }
    };
    let is_raw_string_at = |i: usize| {
        chars.get(i) == Some(&'r') && {
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => {
                i += 1;
                skip_string(&mut i, &mut line);
            }
            // Byte and C strings, raw or not.
            'b' | 'c' if next == Some('"') => {
                i += 2;
                skip_string(&mut i, &mut line);
            }
            'b' | 'c' if is_raw_string_at(i + 1) => {
                i += 1;
                skip_raw_string(&mut i, &mut line);
            }
            'r' if is_raw_string_at(i) => skip_raw_string(&mut i, &mut line),
            '\'' => {
                // A character literal (`'a'`, `'\n'`, `'\u{1F600}'`) or a lifetime (`'a`).
                if next == Some('\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                // A raw identifier `r#name` is the identifier `name`.
                if c == 'r' && next == Some('#') {
                    i += 2;
                }
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Ident(chars[start..i].iter().collect()),
                    line,
                });
            }
            ':' if next == Some(':') => {
                tokens.push(Token {
                    tok: Tok::PathSep,
                    line,
                });
                i += 2;
            }
            c => {
                tokens.push(Token {
                    tok: Tok::Punct(c),
                    line,
                });
                i += 1;
            }
        }
    }
    tokens
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One path a file names, as written, with where it stands.
#[derive(Debug, Clone)]
struct PathUse {
    /// The segments; a glob ends in `*`, and a path from `use ::x` starts with `::`.
    path: Vec<String>,
    /// How many inline modules of the file it stands in (`super` leaves one first).
    inline_depth: usize,
    /// Whether it is a `use` declaration (or else a path in the code).
    in_use: bool,
    line: usize,
}

/// What one file says about its imports.
#[derive(Debug, Default)]
struct Parsed {
    paths: Vec<PathUse>,
    /// The names the file's top level brings in with `use`, and the paths they stand for.
    names: BTreeMap<String, Vec<String>>,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(name)) => Some(name),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).map(|t| &t.tok) == Some(tok)
}

/// Parses one use tree starting at `i`, below `prefix`; pushes each leaf (its path and the name
/// it binds, if any) to `out` and returns where the tree ends.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let mut path = prefix;
    if path.is_empty() && is(tokens, i, &Tok::PathSep) {
        path.push("::".to_owned());
        i += 1;
    }
    loop {
        match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                i += 1;
                if is(tokens, i, &Tok::PathSep) {
                    i += 1;
                    continue;
                }
                // `a::b::{self}` names `a::b`.
                if path.len() > 1 && path.last().map(String::as_str) == Some("self") {
                    path.pop();
                }
                let mut bound = path.last().cloned();
                if ident(tokens, i) == Some("as") {
                    bound = ident(tokens, i + 1)
                        .filter(|alias| *alias != "_")
                        .map(str::to_owned);
                    i += 2;
                }
                out.push((path, bound));
                return i;
            }
            Some(Tok::Punct('*')) => {
                path.push("*".to_owned());
                out.push((path, None));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while i < tokens.len() && !is(tokens, i, &Tok::Punct('}')) {
                    let end = use_tree(tokens, i, path.clone(), out);
                    // A malformed tree: step over what stopped it.
                    i = if end == i { i + 1 } else { end };
                    if is(tokens, i, &Tok::Punct(',')) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => return i,
        }
    }
}

/// The `use` declarations and the `crate::`, `super::` and `self::` paths of one file.
fn parse(source: &str) -> Parsed {
    let tokens = lex(source);
    let mut parsed = Parsed::default();
    // One entry per open brace: whether it opened an inline module.
    let mut braces: Vec<bool> = Vec::new();
    let mut next_brace_is_mod = false;
    let mut i = 0;
    while i < tokens.len() {
        let inline_depth = braces.iter().filter(|&&m| m).count();
        let line = tokens[i].line;
        // After `::`, `$` (as in a macro's `$crate`) or `.`, a word does not start a path.
        let not_a_start = i > 0
            && matches!(
                tokens[i - 1].tok,
                Tok::PathSep | Tok::Punct('$') | Tok::Punct('.')
            );
        match &tokens[i].tok {
            Tok::Punct('{') => {
                braces.push(next_brace_is_mod);
                next_brace_is_mod = false;
                i += 1;
            }
            Tok::Punct('}') => {
                braces.pop();
                i += 1;
            }
            Tok::Ident(word) if word == "mod" && !not_a_start => {
                if ident(&tokens, i + 1).is_some() && is(&tokens, i + 2, &Tok::Punct('{')) {
                    next_brace_is_mod = true;
                }
                i += 1;
            }
            Tok::Ident(word) if word == "use" && !not_a_start => {
                let mut leaves = Vec::new();
                i = use_tree(&tokens, i + 1, Vec::new(), &mut leaves);
                for (path, bound) in leaves {
                    if braces.is_empty()
                        && let Some(name) = bound
                    {
                        parsed.names.insert(name, path.clone());
                    }
                    parsed.paths.push(PathUse {
                        path,
                        inline_depth,
                        in_use: true,
                        line,
                    });
                }
            }
            Tok::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self")
                    && is(&tokens, i + 1, &Tok::PathSep)
                    && !not_a_start
                    // `pub(in crate::a)` is a visibility, not an import.
                    && !(i > 0 && ident(&tokens, i - 1) == Some("in")) =>
            {
                let mut path = vec![word.clone()];
                i += 1;
                while is(&tokens, i, &Tok::PathSep) {
                    match ident(&tokens, i + 1) {
                        Some(name) => {
                            path.push(name.to_owned());
                            i += 2;
                        }
                        None => break,
                    }
                }
                parsed.paths.push(PathUse {
                    path,
                    inline_depth,
                    in_use: false,
                    line,
                });
            }
            _ => i += 1,
        }
    }
    parsed
}

// ---------------------------------------------------------------------------------------------
// Resolving

/// The modules of a crate, parsed.
struct Crate {
    files: BTreeMap<ModPath, (String, Parsed)>,
}

impl Crate {
    /// `sources`: (path relative to `src/`, text) of every file of the crate; reports name
    /// the files with `prefix` before that path.
    fn new(prefix: &str, sources: &[(String, String)]) -> Crate {
        let files = sources
            .iter()
            .map(|(file, text)| (module_of(file), (format!("{prefix}{file}"), parse(text))))
            .collect();
        Crate { files }
    }

    fn child(&self, module: &[String], name: &str) -> Option<ModPath> {
        let mut child = module.to_vec();
        child.push(name.to_owned());
        self.files.contains_key(&child).then_some(child)
    }

    fn name(&self, module: &[String], name: &str) -> Option<&Vec<String>> {
        self.files
            .get(module)
            .and_then(|(_, parsed)| parsed.names.get(name))
    }

    /// The module that defines what `path`, written in `module` inside `inline_depth` inline
    /// modules, names; `None` for another crate, or for something of the same file.
    fn resolve(
        &self,
        module: &[String],
        inline_depth: usize,
        path: &[String],
        budget: usize,
    ) -> Option<ModPath> {
        let budget = budget.checked_sub(1)?;
        let mut current = module.to_vec();
        let mut depth = inline_depth;
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                current.clear();
                depth = 0;
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    if depth > 0 {
                        depth -= 1;
                    } else {
                        current.pop()?;
                    }
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                // A bare first segment: a child module, a name this module imported, or
                // another crate (or something of an inline module, which is the same file).
                if depth > 0 {
                    return None;
                }
                if self.child(&current, first).is_none() {
                    let target = self.name(&current, first)?;
                    if target.first().map(String::as_str) == Some(first) {
                        return None; // `use first::..` of another crate
                    }
                    let mut path = target.clone();
                    path.extend_from_slice(&rest[1..]);
                    return self.resolve(&current, 0, &path, budget);
                }
            }
            None => return None,
        }
        if depth > 0 {
            return None;
        }
        for (k, segment) in rest.iter().enumerate() {
            if segment == "*" {
                break;
            }
            if let Some(child) = self.child(&current, segment) {
                current = child;
                continue;
            }
            if let Some(target) = self.name(&current, segment) {
                let mut path = target.clone();
                path.extend_from_slice(&rest[k + 1..]);
                // Imported from another crate: what it names is not in this one.
                return self.resolve(&current, 0, &path, budget);
            }
            break; // an item of `current`
        }
        Some(current)
    }

    /// Each import between two modules, with every place that makes it: `file:line: `path``,
    /// the paths of one line together.
    fn edges(&self) -> BTreeMap<Edge, Vec<String>> {
        let mut sites: BTreeMap<Edge, BTreeMap<Site, Vec<String>>> = BTreeMap::new();
        for (module, (file, parsed)) in &self.files {
            for path_use in &parsed.paths {
                let Some(target) = self.resolve(module, path_use.inline_depth, &path_use.path, 16)
                else {
                    continue;
                };
                if target == *module {
                    continue;
                }
                let written = path_use.path.join("::");
                let written = if path_use.in_use {
                    format!("`use {written}`")
                } else {
                    format!("`{written}`")
                };
                sites
                    .entry((module.clone(), target))
                    .or_default()
                    .entry((file.clone(), path_use.line))
                    .or_default()
                    .push(written);
            }
        }
        sites
            .into_iter()
            .map(|(edge, lines)| {
                let lines = lines
                    .into_iter()
                    .map(|((file, line), written)| format!("{file}:{line}: {}", written.join(", ")))
                    .collect();
                (edge, lines)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

/// One broken rule: a stable key (what [`KNOWN`] lists) and where it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    key: String,
    detail: Vec<String>,
}

impl Violation {
    fn report(&self) -> String {
        let mut text = self.key.clone();
        for line in &self.detail {
            text.push_str("\n    ");
            text.push_str(line);
        }
        text
    }
}

/// The strongly connected components of `graph`, as a component number per module.
fn components(graph: &ModGraph) -> BTreeMap<ModPath, usize> {
    // Tarjan's algorithm; a crate's modules are few enough for recursion.
    struct Walk<'g> {
        graph: &'g ModGraph,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        component: BTreeMap<ModPath, usize>,
        n_components: usize,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g ModPath) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    self.component.insert(member.clone(), self.n_components);
                    if member == node {
                        break;
                    }
                }
                self.n_components += 1;
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        component: BTreeMap::new(),
        n_components: 0,
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.component
}

/// The shortest way from `from` to `to` in `graph`, both ends included.
fn shortest_path(graph: &ModGraph, from: &ModPath, to: &ModPath) -> Vec<ModPath> {
    let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut todo = VecDeque::from([from]);
    while let Some(node) = todo.pop_front() {
        if node == to {
            let mut path = vec![to.clone()];
            let mut at = to;
            while at != from {
                at = came_from[at];
                path.push(at.clone());
            }
            path.reverse();
            return path;
        }
        for next in graph.get(node).into_iter().flatten() {
            if next != from && !came_from.contains_key(next) {
                came_from.insert(next, node);
                todo.push_back(next);
            }
        }
    }
    Vec::new()
}

/// Every violation of [`RULES`] and every import that lies on a circle, in a stable order.
fn violations(krate: &Crate) -> Vec<Violation> {
    let edges = krate.edges();
    let mut found = Vec::new();
    for ((from, to), sites) in &edges {
        let (Some(layer), Some(target)) = (from.first(), to.first()) else {
            continue;
        };
        for (ruled, forbidden) in RULES {
            if layer == ruled && forbidden.contains(&target.as_str()) {
                found.push(Violation {
                    key: format!(
                        "`{ruled}` must not import from `{target}`: `{}` imports `{}`",
                        show(from),
                        show(to)
                    ),
                    detail: sites.clone(),
                });
            }
        }
    }
    let mut graph: ModGraph = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
        graph.entry(to.clone()).or_default();
    }
    let component = components(&graph);
    for ((from, to), sites) in &edges {
        if component[from] != component[to] {
            continue;
        }
        let back = shortest_path(&graph, to, from);
        let circle: Vec<String> = std::iter::once(from)
            .chain(&back)
            .map(|module| show(module))
            .collect();
        let mut detail = vec![format!("circle: {}", circle.join(" -> "))];
        detail.extend(sites.iter().cloned());
        found.push(Violation {
            key: format!("import circle: `{}` imports `{}`", show(from), show(to)),
            detail,
        });
    }
    found
}

/// What differs from `known`: violations not listed there, and listed keys not found.
fn compare(found: &[Violation], known: &[&str]) -> Result<(), String> {
    let new: Vec<String> = found
        .iter()
        .filter(|v| !known.contains(&v.key.as_str()))
        .map(Violation::report)
        .collect();
    let gone: Vec<&str> = known
        .iter()
        .copied()
        .filter(|key| !found.iter().any(|v| v.key == *key))
        .collect();
    let mut message = String::new();
    if !new.is_empty() {
        message.push_str(&format!(
            "module layering violations in `node/src` (fix them; do not add them to `KNOWN`):\n{}\n",
            new.join("\n")
        ));
    }
    if !gone.is_empty() {
        message.push_str(&format!(
            "violations listed in `KNOWN` (tests/layering/modules.rs) that no longer occur; \
             delete them from the list:\n{}\n",
            gone.join("\n")
        ));
    }
    if message.is_empty() {
        Ok(())
    } else {
        Err(message)
    }
}

/// Every `.rs` file below `dir`, as (path relative to `dir` with `/`, text).
fn read_sources(dir: &Path) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let entries = std::fs::read_dir(&at)
            .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", at.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
                let relative = path
                    .strip_prefix(dir)
                    .expect("below the source directory")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                sources.push((relative, text));
            }
        }
    }
    sources.sort();
    sources
}

#[test]
fn node_modules_respect_their_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let sources = read_sources(&src);
    assert!(
        sources.iter().any(|(file, _)| file == "core/mod.rs"),
        "`{}` holds no `core/mod.rs`",
        src.display()
    );
    let krate = Crate::new("node/src/", &sources);
    if let Err(message) = compare(&violations(&krate), KNOWN) {
        panic!("{message}");
    }
}

/// A made-up crate with one violation of each kind, and the things that must not count.
fn made_up_crate() -> Crate {
    let files = [
        (
            "lib.rs",
            "pub mod core;\npub mod daemon;\npub mod mesh;\n// crate::mesh::Mesh in a comment\n",
        ),
        (
            "core/mod.rs",
            "mod a;\nmod b;\nmod c;\npub use a::Alpha;\npub use b::{self as bee, Beta as B};\n",
        ),
        (
            "core/a.rs",
            "use super::B;\n\
             pub struct Alpha;\n\
             fn f() -> &'static str { \"crate::daemon::Home\" }\n\
             #[cfg(test)]\n\
             mod tests {\n    use super::*;\n    use crate::core::Alpha;\n}\n",
        ),
        (
            "core/b.rs",
            "pub(crate) struct Beta;\n\
             pub(crate) fn g() {\n    super::c::run();\n}\n\
             /* crate::mesh::Mesh in a /* nested */ block comment */\n",
        ),
        (
            "core/c.rs",
            "use crate::core::Alpha;\n\
             pub(crate) fn run() {\n\
             \x20   let _quote = '\"';\n\
             \x20   let _raw = r#\"crate::mesh::Mesh\"#;\n\
             \x20   let _home = crate::daemon::home::Home::new();\n\
             }\n",
        ),
        (
            "daemon/mod.rs",
            "mod home;\nmod server;\npub use home::Home;\n",
        ),
        (
            "daemon/home.rs",
            "pub struct Home;\nimpl Home {\n    pub fn new() -> Home {\n        Home\n    }\n}\n",
        ),
        ("daemon/server.rs", "use super::Home;\n"),
        ("mesh/mod.rs", "pub mod team;\n"),
        (
            "mesh/team.rs",
            "use std::path::Path;\nuse crate::daemon::Home;\npub(in crate::mesh) fn x() {}\n",
        ),
    ];
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(file, text)| (file.to_string(), text.to_string()))
        .collect();
    Crate::new("src/", &sources)
}

#[test]
fn the_checker_finds_circles_and_broken_rules() {
    let reports: Vec<String> = violations(&made_up_crate())
        .iter()
        .map(Violation::report)
        .collect();
    assert_eq!(
        reports,
        [
            "`core` must not import from `daemon`: `core::c` imports `daemon::home`\n    \
             src/core/c.rs:5: `crate::daemon::home::Home::new`",
            "`mesh` must not import from `daemon`: `mesh::team` imports `daemon::home`\n    \
             src/mesh/team.rs:2: `use crate::daemon::Home`",
            "import circle: `core::a` imports `core::b`\n    \
             circle: core::a -> core::b -> core::c -> core::a\n    \
             src/core/a.rs:1: `use super::B`",
            "import circle: `core::b` imports `core::c`\n    \
             circle: core::b -> core::c -> core::a -> core::b\n    \
             src/core/b.rs:3: `super::c::run`",
            "import circle: `core::c` imports `core::a`\n    \
             circle: core::c -> core::a -> core::b -> core::c\n    \
             src/core/c.rs:1: `use crate::core::Alpha`",
        ]
    );
}

#[test]
fn imports_resolve_through_re_exports() {
    let edges: Vec<String> = made_up_crate()
        .edges()
        .keys()
        .map(|(from, to)| format!("{} -> {}", show(from), show(to)))
        .collect();
    // No edge into `core` or `daemon` themselves: what their `mod.rs` re-exports is imported
    // from where it is defined. `mod` declarations, the file's own tests and `pub(in ..)` are
    // not imports.
    assert_eq!(
        edges,
        [
            "core -> core::a",
            "core -> core::b",
            "core::a -> core::b",
            "core::b -> core::c",
            "core::c -> core::a",
            "core::c -> daemon::home",
            "daemon -> daemon::home",
            "daemon::server -> daemon::home",
            "mesh::team -> daemon::home",
        ]
    );
}

#[test]
fn the_lexer_skips_what_is_not_code() {
    let source = r####"
        // crate::a
        /* crate::b /* crate::c */ crate::d */
        let s = "crate::e \" crate::f";
        let r = r##"crate::g "# crate::h"##;
        let b = b"crate::i";
        let c = ['"', '\'', '\u{1F600}'];
        fn f<'a>(x: &'a str) -> &'a str { x }
        let id = r#crate;
        super::real::path
    "####;
    let idents: Vec<String> = lex(source)
        .into_iter()
        .filter_map(|token| match token.tok {
            Tok::Ident(name) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(
        idents,
        [
            "let", "s", "let", "r", "let", "b", "let", "c", "fn", "f", "x", "str", "str", "x",
            "let", "id", "crate", "super", "real", "path"
        ]
    );
    let paths: Vec<String> = parse(source)
        .paths
        .iter()
        .map(|p| p.path.join("::"))
        .collect();
    assert_eq!(paths, ["super::real::path"]);
}

#[test]
fn known_violations_must_occur_and_new_ones_fail() {
    let found = |keys: &[&str]| -> Vec<Violation> {
        keys.iter()
            .map(|key| Violation {
                key: key.to_string(),
                detail: vec!["src/a.rs:1: `use crate::b`".to_owned()],
            })
            .collect()
    };
    assert_eq!(compare(&found(&["a", "b"]), &["b", "a"]), Ok(()));
    assert_eq!(compare(&[], &[]), Ok(()));
    let message = compare(&found(&["a", "new"]), &["a", "fixed"]).expect_err("two differences");
    assert_eq!(
        message,
        "module layering violations in `node/src` (fix them; do not add them to `KNOWN`):\n\
         new\n    src/a.rs:1: `use crate::b`\n\
         violations listed in `KNOWN` (tests/layering/modules.rs) that no longer occur; delete \
         them from the list:\nfixed\n"
    );
}
