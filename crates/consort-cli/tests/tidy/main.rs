//! Tidy: the house rules of CONTRIBUTING.md that a machine can check, as a test gate. No `unwrap`/`expect` in the
//! cores' production code except marked invariants, a length budget for functions and files with a shrinking
//! allowance, and a reason on every `allow`.
//!
//! The allowances live in `allowances.rs` beside this file; every failure message names the entry to add, shrink
//! or remove there.

mod allowances;
mod scan;

use allowances::{LongFile, LongFunction, LONG_FILES, LONG_FUNCTIONS, UNEXPLAINED_ALLOWS, UNMARKED_PANICS};
use scan::{crate_dirs, scan_crate_src, Source, CORES};
use std::collections::BTreeMap;

/// No function in `crates/*/src` is longer than this (lines from `fn` to its closing brace).
const FUNCTION_BUDGET_LINES: usize = 100;
/// No file in `crates/*/src` is longer than this.
const FILE_BUDGET_LINES: usize = 800;

fn all_sources() -> Vec<(String, Vec<Source>)> {
    crate_dirs()
        .into_iter()
        .map(|dir| {
            let name = dir
                .file_name()
                .expect("crate dir has a name")
                .to_string_lossy()
                .into_owned();
            let sources = scan_crate_src(&dir);
            (name, sources)
        })
        .collect()
}

fn fail_with(problems: Vec<String>, tail: &str) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n{tail}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Whether the `.unwrap()`/`.expect(` on line `i` is marked as an invariant: a comment containing `invariant:` on
/// the same line, or above it within the same statement (up to the previous line of code that ends a statement or
/// opens or closes a block).
fn marked_invariant(source: &Source, i: usize) -> bool {
    if source.lines[i].comment.contains("invariant:") {
        return true;
    }
    for line in source.lines[..i].iter().rev() {
        if line.comment.contains("invariant:") {
            return true;
        }
        let code = line.code.trim_end();
        if code.ends_with([';', '{', '}']) {
            return false;
        }
    }
    false
}

#[test]
fn cores_do_not_unwrap_outside_tests() {
    let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, sources) in all_sources() {
        if !CORES.contains(&name.as_str()) {
            continue;
        }
        for source in &sources {
            let unmarked = hits.entry(source.path.clone()).or_default();
            for (i, line) in source.lines.iter().enumerate() {
                let panics = line.code.contains(".unwrap()") || line.code.contains(".expect(");
                if panics && !line.test && !marked_invariant(source, i) {
                    unmarked.push(format!("{}:{}: {}", source.path, i + 1, line.raw.trim()));
                }
            }
        }
    }
    let advice = "Untrusted data gets a typed error; a programmer-error invariant gets a \
                  `// invariant: why this cannot fail` comment on the line above";
    fail_with(
        count_problems("UNMARKED_PANICS", UNMARKED_PANICS, hits, advice),
        "(allowances: crates/consort-cli/tests/tidy/allowances.rs)",
    );
}

/// Checks per-file counts of rule breaks against a shrink-only allowance table of `(path, count)`: more than
/// allowed fails and lists the lines, and an entry for a file with none left fails so that it is removed. (Fewer
/// than allowed passes: lower the count when you are there anyway.)
fn count_problems(
    table: &str,
    allowances: &[(&str, usize)],
    hits: BTreeMap<String, Vec<String>>,
    advice: &str,
) -> Vec<String> {
    let today: Vec<String> = hits
        .iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(path, lines)| format!("    (\"{path}\", {}),", lines.len()))
        .collect();
    let mut problems = vec![];
    for (path, _) in allowances {
        if !hits.contains_key(*path) {
            problems.push(format!("{path} is gone: remove its entry from {table}"));
        }
    }
    for (path, lines) in hits {
        let allowed = allowances.iter().find(|(p, _)| *p == path).map_or(0, |(_, n)| *n);
        let found = lines.len();
        if found > allowed {
            problems.push(format!(
                "{path}: {found} found, {allowed} allowed in {table}. {advice}. Lines:"
            ));
            problems.extend(lines.into_iter().map(|l| format!("    {l}")));
        } else if found == 0 && allowed > 0 {
            problems.push(format!("{path}: none left: remove its entry from {table}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("{table} for today's tree would be:\n{}", today.join("\n")));
    }
    problems
}

#[test]
fn functions_stay_within_the_budget_or_the_shrinking_allowance() {
    let mut found: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, sources) in all_sources() {
        for source in &sources {
            for f in source.functions() {
                if f.lines > FUNCTION_BUDGET_LINES {
                    let longest = found.entry((source.path.clone(), f.name.clone())).or_default();
                    *longest = (*longest).max(f.lines);
                }
            }
        }
    }
    let table: Vec<String> = found
        .iter()
        .map(|((path, name), lines)| {
            let reason = LONG_FUNCTIONS
                .iter()
                .find(|f| f.path == path && f.name == name)
                .map_or("...", |f| f.reason);
            format!("    LongFunction {{ path: \"{path}\", name: \"{name}\", lines: {lines}, reason: \"{reason}\" }},")
        })
        .collect();
    let mut problems = vec![];
    for LongFunction {
        path,
        name,
        lines,
        reason,
    } in LONG_FUNCTIONS
    {
        assert!(
            !reason.trim().is_empty(),
            "LONG_FUNCTIONS entry {path} {name} needs a reason"
        );
        match found.remove(&(path.to_string(), name.to_string())) {
            None => problems.push(format!(
                "{path}: fn {name} is no longer over {FUNCTION_BUDGET_LINES} lines (or is gone): remove its entry \
                 from LONG_FUNCTIONS"
            )),
            Some(now) if now > *lines => problems.push(format!(
                "{path}: fn {name} grew from {lines} to {now} lines; the allowance only shrinks: split it or take \
                 lines out until it is at most {lines}"
            )),
            Some(_) => {}
        }
    }
    for ((path, name), lines) in found {
        problems.push(format!(
            "{path}: fn {name} has {lines} lines, over the budget of {FUNCTION_BUDGET_LINES}: split it, or add \
             `LongFunction {{ path: \"{path}\", name: \"{name}\", lines: {lines}, reason: \"...\" }},` to \
             LONG_FUNCTIONS with the reason it must stay long"
        ));
    }
    let tail = format!(
        "(allowances: crates/consort-cli/tests/tidy/allowances.rs; LONG_FUNCTIONS for today's tree would be:)\n{}",
        table.join("\n")
    );
    fail_with(problems, &tail);
}

#[test]
fn files_stay_within_the_budget_or_the_shrinking_allowance() {
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for (_, sources) in all_sources() {
        for source in sources {
            // A file's last line ends with a newline, after which the scanner sees one empty line more.
            let lines = source.lines.len() - usize::from(source.lines.last().is_some_and(|l| l.code.is_empty()));
            if lines > FILE_BUDGET_LINES {
                found.insert(source.path, lines);
            }
        }
    }
    let table: Vec<String> = found
        .iter()
        .map(|(path, lines)| {
            let reason = LONG_FILES.iter().find(|f| f.path == path).map_or("...", |f| f.reason);
            format!("    LongFile {{ path: \"{path}\", lines: {lines}, reason: \"{reason}\" }},")
        })
        .collect();
    let mut problems = vec![];
    for LongFile { path, lines, reason } in LONG_FILES {
        assert!(!reason.trim().is_empty(), "LONG_FILES entry {path} needs a reason");
        match found.remove(*path) {
            None => problems.push(format!(
                "{path} is no longer over {FILE_BUDGET_LINES} lines (or is gone): remove its entry from LONG_FILES"
            )),
            Some(now) if now > *lines => problems.push(format!(
                "{path} grew from {lines} to {now} lines; the allowance only shrinks: split it or take lines out \
                 until it is at most {lines}"
            )),
            Some(_) => {}
        }
    }
    for (path, lines) in found {
        problems.push(format!(
            "{path} has {lines} lines, over the budget of {FILE_BUDGET_LINES}: split it by concept, or add \
             `LongFile {{ path: \"{path}\", lines: {lines}, reason: \"...\" }},` to LONG_FILES with the reason"
        ));
    }
    let tail = format!(
        "(allowances: crates/consort-cli/tests/tidy/allowances.rs; LONG_FILES for today's tree would be:)\n{}",
        table.join("\n")
    );
    fail_with(problems, &tail);
}

/// Whether the attribute starting on line `i` carries its reason: `reason = "..."` inside it, a comment on the
/// same line, or a comment line directly above it.
fn allow_has_reason(source: &Source, i: usize) -> bool {
    let line = &source.lines[i];
    let attr_text: String = source.lines[i..]
        .iter()
        .take(6)
        .map(|l| l.code.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let attr = attr_text.split(']').next().unwrap_or("");
    let reason_inside = attr.split_whitespace().collect::<String>().contains("reason=");
    let comment_above = i > 0 && !source.lines[i - 1].doc && !source.lines[i - 1].comment.trim().is_empty();
    reason_inside || (!line.doc && !line.comment.trim().is_empty()) || comment_above
}

#[test]
fn every_allow_says_why() {
    let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, sources) in all_sources() {
        for source in &sources {
            let unexplained = hits.entry(source.path.clone()).or_default();
            for (i, line) in source.lines.iter().enumerate() {
                let code: String = line.code.split_whitespace().collect();
                let allows = code.contains("#[allow(") || code.contains("#![allow(") || code.contains("#[expect(");
                let in_cfg_attr = code.contains("cfg_attr(") && (code.contains(",allow(") || code.contains(",expect("));
                if (allows || in_cfg_attr) && !allow_has_reason(source, i) {
                    unexplained.push(format!("{}:{}: {}", source.path, i + 1, line.raw.trim()));
                }
            }
        }
    }
    let advice = "Say why on a `// ...` comment on the line above or the same line, or with `reason = \"...\"`";
    fail_with(
        count_problems("UNEXPLAINED_ALLOWS", UNEXPLAINED_ALLOWS, hits, advice),
        "(allowances: crates/consort-cli/tests/tidy/allowances.rs)",
    );
}

/// The scanner itself: what it must see as code, comment, string and test, on a sample that exercises each case.
#[test]
fn the_scanner_tells_code_from_comments_strings_and_tests() {
    let sample = r##"//! Sample.
fn short() -> u8 { b'{' as u8 } // a } in a comment
/* block /* nested { */ still comment { */
fn long<'a>(x: &'a str) -> &'a str {
    let s = "a { brace \" and .unwrap()";
    let r = r#"raw { "still" raw"#;
    let c = '\'';
    let d = '}';
    // invariant: the sample says so
    x.get(0..1).unwrap()
}
#[cfg(test)]
mod tests {
    fn in_test() { None::<u8>.unwrap(); }
}
fn after() { Some(1).expect("x"); }
"##;
    let (source, test_mods) = scan::scan_text("sample.rs", sample);
    assert!(test_mods.is_empty());
    let functions: Vec<(String, usize, usize)> = source
        .functions()
        .into_iter()
        .map(|f| (f.name, f.first_line, f.lines))
        .collect();
    assert_eq!(
        functions,
        vec![
            ("short".to_string(), 2, 1),
            ("long".to_string(), 4, 8),
            ("in_test".to_string(), 14, 1),
            ("after".to_string(), 16, 1)
        ]
    );
    let code = |n: usize| source.lines[n - 1].code.clone();
    assert!(!code(5).contains(".unwrap()") && !code(5).contains('{'));
    assert!(!code(6).contains('{') && !code(8).contains('}'));
    assert!(source.lines[2].code.trim().is_empty() && source.lines[2].comment.contains("nested"));
    assert!(marked_invariant(&source, 9));
    assert!(!marked_invariant(&source, 15));
    let tests: Vec<usize> = (1..=source.lines.len()).filter(|&n| source.lines[n - 1].test).collect();
    assert_eq!(tests, vec![12, 13, 14, 15]);

    let (_, test_mods) = scan::scan_text("lib.rs", "//! x\n#[cfg(all(test, feature = \"a\"))]\nmod checks;\n");
    assert_eq!(test_mods, vec!["checks".to_string()]);
}

/// The rule checks on a sample: which `allow`s carry a reason and which `unwrap`s are marked invariants.
#[test]
fn reasons_and_invariant_marks_are_recognised() {
    let sample = r#"//! Sample.
/// Docs, not a reason.
#[allow(clippy::too_many_arguments)]
fn a() {}
// Many parameters: they mirror CCF's signature fields one to one.
#[allow(clippy::too_many_arguments)]
fn b() {}
#[allow(dead_code)] // kept for the simulator
fn c() {}
#[expect(clippy::large_enum_variant, reason = "built once per node")]
enum D {}
#[expect(clippy::large_enum_variant)]
enum E {}
fn f(x: Option<u8>) -> u8 {
    // invariant: the caller checked x
    let y = x
        .map(|v| v + 1)
        .expect("checked");
    let z = x.unwrap();
    y + z
}
"#;
    let (source, _) = scan::scan_text("sample.rs", sample);
    let with_reason: Vec<usize> = [3, 6, 8, 10, 12]
        .into_iter()
        .filter(|&n| allow_has_reason(&source, n - 1))
        .collect();
    assert_eq!(with_reason, vec![6, 8, 10]);
    assert!(marked_invariant(&source, 17));
    assert!(!marked_invariant(&source, 18));
}
