//! A small line-based Rust source scanner for the tidy and architecture tests: it separates code from comments and
//! string contents, marks test-only code and finds functions, so the checks read code and not prose.
//!
//! It is not a parser. It knows just enough of Rust's lexical grammar (nested block comments, raw strings, char
//! literals versus lifetimes) that a brace, `unwrap` or `fn` inside a comment or a string is never taken for code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crates that do no IO (ARCHITECTURE.md: sans-IO cores).
pub const CORES: [&str; 9] = [
    "consort-crypto",
    "consort-receipt",
    "consort-kv",
    "consort-ledger",
    "consort-consensus",
    "consort-gov",
    "consort-attest",
    "consort-js",
    "consort-evm",
];

/// One source line, split into its code and its comments.
#[derive(Debug, Default, Clone)]
pub struct Line {
    /// The code on this line with comments removed and the contents of string and char literals blanked out
    /// (the quotes stay, so `.expect("why")` reads as `.expect("   ")`).
    pub code: String,
    /// The text of every comment on this line (doc comments included), without the comment markers.
    pub comment: String,
    /// Whether the line's `//` comment is a doc comment (`///` or `//!`): documentation, not a reason.
    pub doc: bool,
    /// The line as written.
    pub raw: String,
    /// Whether the line belongs to test-only code: a `#[cfg(test)]` or `#[test]` item, or a test module's file.
    pub test: bool,
}

/// One function with a body.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// 1-based line of the `fn` keyword.
    pub first_line: usize,
    /// Lines from the `fn` keyword to the closing brace, both included.
    pub lines: usize,
}

/// One scanned source file.
#[derive(Debug)]
pub struct Source {
    /// Path relative to the workspace root, with `/` separators (stable across machines, used in messages).
    pub path: String,
    pub lines: Vec<Line>,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Every crate directory under `crates/`, sorted by name.
pub fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crates"))
        .expect("crates/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Scans every `.rs` file under `crates/<name>/src` of the given crate directory, marking the files of test-only
/// modules (declared `#[cfg(test)] mod x;`, or named `testing`: the harnesses and conformance suites that other
/// crates' tests call) as test code throughout.
pub fn scan_crate_src(crate_dir: &Path) -> Vec<Source> {
    let root = workspace_root();
    let mut files = vec![];
    rust_files(&crate_dir.join("src"), &mut files);
    let mut sources = vec![];
    let mut test_paths: BTreeSet<PathBuf> = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("source file is readable");
        let (source, test_mods) = scan_text(&relative(&root, f), &text);
        let dir = module_dir(f);
        for m in test_mods {
            test_paths.insert(dir.join(format!("{m}.rs")));
            test_paths.insert(dir.join(&m));
        }
        sources.push((f.clone(), source));
    }
    for (f, source) in &mut sources {
        let in_testing = f.strip_prefix(crate_dir.join("src")).is_ok_and(|p| {
            p.components()
                .any(|c| c.as_os_str() == "testing" || c.as_os_str() == "testing.rs")
        });
        if in_testing || test_paths.iter().any(|t| f.starts_with(t)) {
            for line in &mut source.lines {
                line.test = true;
            }
        }
    }
    sources.into_iter().map(|(_, s)| s).collect()
}

fn relative(root: &Path, f: &Path) -> String {
    let rel = f.strip_prefix(root).unwrap_or(f);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The directory in which the submodules of the module in file `f` live.
fn module_dir(f: &Path) -> PathBuf {
    let parent = f.parent().expect("a file has a parent").to_path_buf();
    match f.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => parent,
        _ => parent.join(f.file_stem().expect("a file has a stem")),
    }
}

/// Scans one file's text. Returns the source and the names of modules declared test-only without a body
/// (`#[cfg(test)] mod tests;`), whose files are test code.
pub fn scan_text(path: &str, text: &str) -> (Source, Vec<String>) {
    let mut lines = lex(text);
    let test_mods = mark_test_items(&mut lines);
    (
        Source {
            path: path.to_string(),
            lines,
        },
        test_mods,
    )
}

/// What the lexer is inside of.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Code,
    LineComment,
    /// Nesting depth of `/* */`.
    BlockComment(usize),
    Str,
    /// Number of `#` that close the raw string.
    RawStr(usize),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits the text into lines of code and comment text (string and char literal contents blanked out).
fn lex(text: &str) -> Vec<Line> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines = vec![Line::default()];
    let mut state = State::Code;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let line = lines.last_mut().expect("there is always a current line");
        if c == '\n' {
            if state == State::LineComment {
                state = State::Code;
            }
            lines.push(Line::default());
            i += 1;
            continue;
        }
        match state {
            State::Code => {
                if c == '/' && next == Some('/') {
                    state = State::LineComment;
                    i += 2;
                    // Skip the third character of `///` and `//!` so the comment text is the prose alone.
                    if matches!(chars.get(i), Some('/' | '!')) {
                        line.doc = true;
                        i += 1;
                    }
                    continue;
                } else if c == '/' && next == Some('*') {
                    state = State::BlockComment(1);
                    i += 2;
                    continue;
                } else if c == '"' {
                    state = State::Str;
                    line.code.push('"');
                } else if c == 'r' && !prev_ident_except_b(&chars, i) && raw_string_start(&chars, i + 1).is_some() {
                    let hashes = raw_string_start(&chars, i + 1).expect("checked just above");
                    line.code.push('r');
                    line.code.extend(std::iter::repeat_n('#', hashes));
                    line.code.push('"');
                    state = State::RawStr(hashes);
                    i += 2 + hashes;
                    continue;
                } else if c == '\'' && !prev_ident_except_b(&chars, i) {
                    if let Some(len) = char_literal_len(&chars, i) {
                        line.code.push('\'');
                        line.code.extend(std::iter::repeat_n(' ', len - 2));
                        line.code.push('\'');
                        i += len;
                        continue;
                    }
                    line.code.push(c);
                } else {
                    line.code.push(c);
                }
            }
            State::LineComment => line.comment.push(c),
            State::BlockComment(depth) => {
                if c == '*' && next == Some('/') {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    line.comment.push(' ');
                    i += 2;
                    continue;
                } else if c == '/' && next == Some('*') {
                    state = State::BlockComment(depth + 1);
                    i += 2;
                    continue;
                }
                line.comment.push(c);
            }
            State::Str => {
                if c == '\\' {
                    // An escaped character (or an escaped newline, which the next round keeps as a line break).
                    line.code.push(' ');
                    if next.is_some_and(|n| n != '\n') {
                        line.code.push(' ');
                        i += 2;
                    } else {
                        i += 1;
                    }
                    continue;
                } else if c == '"' {
                    state = State::Code;
                    line.code.push('"');
                } else {
                    line.code.push(' ');
                }
            }
            State::RawStr(hashes) => {
                if c == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    line.code.push('"');
                    line.code.extend(std::iter::repeat_n('#', hashes));
                    state = State::Code;
                    i += 1 + hashes;
                    continue;
                }
                line.code.push(' ');
            }
        }
        i += 1;
    }
    for (line, raw) in lines.iter_mut().zip(text.split('\n')) {
        line.raw = raw.to_string();
    }
    lines
}

/// Whether the character before `i` continues an identifier, not counting a lone `b` prefix (`br"..."`).
fn prev_ident_except_b(chars: &[char], i: usize) -> bool {
    if i == 0 || !is_ident(chars[i - 1]) {
        return false;
    }
    !(chars[i - 1] == 'b' && (i == 1 || !is_ident(chars[i - 2])))
}

/// If `#*"` starts at `i` (what follows the `r` of a raw string), the number of `#`.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let hashes = chars[i.min(chars.len())..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + hashes) == Some(&'"')).then_some(hashes)
}

/// If a char literal starts at the `'` at `i`, its length in chars including both quotes; `None` for a lifetime
/// or a label.
fn char_literal_len(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => {
            // The escaped character itself may be a quote (`'\''`), so the closing quote is searched after it.
            let close = chars.get(i + 3..)?.iter().take(10).position(|&c| c == '\'')?;
            Some(close + 4)
        }
        '\n' => None,
        _ => (chars.get(i + 2) == Some(&'\'')).then_some(3),
    }
}

/// Position (line index, column in chars) within the code of a file.
type Pos = (usize, usize);

/// The code of all lines as one char grid, to walk across line breaks.
struct Code {
    grid: Vec<Vec<char>>,
}

impl Code {
    fn new(lines: &[Line]) -> Self {
        Code {
            grid: lines.iter().map(|l| l.code.chars().collect()).collect(),
        }
    }

    fn at(&self, (l, c): Pos) -> Option<char> {
        self.grid.get(l)?.get(c).copied()
    }

    fn advance(&self, (l, c): Pos) -> Option<Pos> {
        if c + 1 < self.grid[l].len() {
            return Some((l, c + 1));
        }
        ((l + 1)..self.grid.len())
            .find(|&n| !self.grid[n].is_empty())
            .map(|n| (n, 0))
    }

    fn skip_whitespace(&self, mut p: Pos) -> Option<Pos> {
        if self.at(p).is_none() {
            p = self.advance((p.0, self.grid[p.0].len().saturating_sub(1)))?;
        }
        while self.at(p)?.is_whitespace() {
            p = self.advance(p)?;
        }
        Some(p)
    }

    /// From `p`, the first `{` or `;` outside parentheses and brackets.
    fn item_body_or_end(&self, mut p: Pos) -> Option<(Pos, char)> {
        let mut depth = 0i32;
        loop {
            match self.at(p)? {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                c @ ('{' | ';') if depth == 0 => return Some((p, c)),
                _ => {}
            }
            p = self.advance(p)?;
        }
    }

    /// The position of the `}` matching the `{` at `p`.
    fn matching_brace(&self, mut p: Pos) -> Option<Pos> {
        let mut depth = 0usize;
        loop {
            match self.at(p)? {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(p);
                    }
                }
                _ => {}
            }
            p = self.advance(p)?;
        }
    }

    /// The text from `from` up to (not including) `to`, line breaks as spaces.
    fn text(&self, from: Pos, to: Pos) -> String {
        let mut s = String::new();
        let mut p = from;
        while p < to {
            let Some(c) = self.at(p) else { break };
            s.push(c);
            match self.advance(p) {
                Some(n) if n.0 != p.0 => {
                    s.push(' ');
                    p = n;
                }
                Some(n) => p = n,
                None => break,
            }
        }
        s
    }

    /// After an attribute that starts with `#` at `p`: the position of its closing `]`.
    fn attribute_end(&self, p: Pos) -> Option<Pos> {
        let mut depth = 0usize;
        let mut q = p;
        loop {
            match self.at(q)? {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(q);
                    }
                }
                _ => {}
            }
            q = self.advance(q)?;
        }
    }
}

/// Whether an attribute's text (whitespace removed, e.g. `#[cfg(all(test,feature="x"))]`) makes its item test-only.
fn is_test_attribute(attr: &str) -> bool {
    if attr == "#[test]" || attr == "#[cfg(test)]" {
        return true;
    }
    let Some(inner) = attr.strip_prefix("#[cfg(all(") else {
        return false;
    };
    inner.split([',', ')']).any(|part| part == "test")
}

/// Marks the lines of `#[cfg(test)]` and `#[test]` items as test code; returns the names of body-less test modules.
fn mark_test_items(lines: &mut [Line]) -> Vec<String> {
    let mut regions = vec![];
    let mut test_mods = vec![];
    {
        let code = Code::new(lines);
        for (l, row) in code.grid.iter().enumerate() {
            for (c, &ch) in row.iter().enumerate() {
                if ch != '#' || row.get(c + 1) != Some(&'[') {
                    continue;
                }
                let Some(end) = code.attribute_end((l, c)) else {
                    continue;
                };
                let attr: String = code.text((l, c), end).chars().filter(|c| !c.is_whitespace()).collect();
                if !is_test_attribute(&format!("{attr}]")) {
                    continue;
                }
                let Some((p, kind)) = code.advance(end).and_then(|q| code.item_body_or_end(q)) else {
                    continue;
                };
                if kind == '{' {
                    if let Some(close) = code.matching_brace(p) {
                        regions.push((l, close.0));
                    }
                } else {
                    let item = code.text(code.advance(end).unwrap_or(p), p);
                    let words: Vec<&str> = item.split_whitespace().collect();
                    if let [.., "mod", name] = words.as_slice() {
                        test_mods.push(name.to_string());
                    }
                    regions.push((l, p.0));
                }
            }
        }
    }
    for (from, to) in regions {
        for line in &mut lines[from..=to] {
            line.test = true;
        }
    }
    test_mods
}

impl Source {
    /// Every function with a body (methods and nested functions included; closures are not functions here).
    pub fn functions(&self) -> Vec<Function> {
        let code = Code::new(&self.lines);
        let mut out = vec![];
        for (l, row) in code.grid.iter().enumerate() {
            for c in 0..row.len() {
                let keyword = row[c] == 'f' && row.get(c + 1) == Some(&'n');
                let bounded = (c == 0 || !is_ident(row[c - 1])) && row.get(c + 2).is_some_and(|x| x.is_whitespace());
                if !keyword || !bounded {
                    continue;
                }
                let Some(start) = code.skip_whitespace((l, c + 2)) else {
                    continue;
                };
                let mut name = String::new();
                let mut p = start;
                while let Some(ch) = code.at(p).filter(|&ch| is_ident(ch)) {
                    name.push(ch);
                    p = (p.0, p.1 + 1);
                }
                if name.is_empty() || p.0 != start.0 {
                    continue;
                }
                let Some((body, '{')) = code.item_body_or_end(p) else {
                    continue;
                };
                let Some(close) = code.matching_brace(body) else {
                    continue;
                };
                out.push(Function {
                    name,
                    first_line: l + 1,
                    lines: close.0 - l + 1,
                });
            }
        }
        out
    }
}
