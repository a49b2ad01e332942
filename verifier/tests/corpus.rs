//! Every object of the corpus (`tests/corpus/`, see its README): real
//! objects written by others, each headed by its provenance and by the
//! findings a correct `migverify check` gives. This test runs each file
//! (and each `# expect-with:` combination) through the binary and compares:
//!
//! - error and warning findings, as (severity, path, ID): exactly the
//!   `# expect:` lines of those severities, no more, no fewer;
//! - `# expect: info ...` lines: present (other infos are allowed);
//! - `# expect-no-error`: no error finding;
//! - `EXIT-2`: exit status 2, nothing on stdout, one line on stderr naming
//!   the file (and containing every `# expect-stderr:` text);
//! - the exit status follows from the findings: 1 with an error, 3 with
//!   warnings only, 0 otherwise.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use verifier::checks::findings::CATALOGUE;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// One `severity path id` expectation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    severity: String,
    path: String,
    id: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.severity, self.path, self.id)
    }
}

/// What one run is expected to give.
#[derive(Debug, Default)]
struct Expected {
    findings: Vec<Finding>,
    /// `completion_timeout_s` of some budget line.
    budgets: Vec<u64>,
    no_error: bool,
    exit_2: bool,
    stderr: Vec<String>,
}

/// A corpus file's header.
#[derive(Debug)]
struct Case {
    file: PathBuf,
    alone: Expected,
    /// Extra arguments (other corpus files, flags) and what they give.
    with: Vec<(Vec<String>, Expected)>,
}

fn finding(text: &str, file: &Path) -> Finding {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let [severity, path, id] = tokens[..] else {
        panic!("{}: `{text}` is not `severity path id`", file.display());
    };
    assert!(
        ["error", "warning", "info"].contains(&severity),
        "{}: severity {severity:?}",
        file.display()
    );
    assert!(
        id == "EXIT-2" || CATALOGUE.iter().any(|c| c.id == id),
        "{}: `{id}` is neither an ID of docs/checks.md nor EXIT-2",
        file.display()
    );
    Finding {
        severity: severity.into(),
        path: path.into(),
        id: id.into(),
    }
}

/// The part of a header value before its ` -- why`.
fn claim(value: &str) -> &str {
    value.split(" -- ").next().unwrap_or_default().trim()
}

fn parse(file: &Path) -> Case {
    let text = std::fs::read_to_string(file).unwrap();
    let mut case = Case {
        file: file.to_path_buf(),
        alone: Expected::default(),
        with: Vec::new(),
    };
    let mut has_source = false;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        assert!(
            !line.contains("NEW:"),
            "{}: a proposed finding is left: {line}",
            file.display()
        );
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "source" => has_source = true,
            "expect" => {
                let f = finding(claim(value), file);
                if f.id == "EXIT-2" {
                    case.alone.exit_2 = true;
                } else {
                    case.alone.findings.push(f);
                }
            }
            "expect-no-error" => case.alone.no_error = true,
            "expect-stderr" => case.alone.stderr.push(value.trim().to_string()),
            "expect-with" => {
                let (args, then) = claim(value)
                    .split_once("=>")
                    .unwrap_or_else(|| panic!("{}: expect-with without =>", file.display()));
                let mut expected = Expected::default();
                for item in then.split(';').map(str::trim) {
                    if item == "none" {
                        continue;
                    }
                    if let Some(seconds) = item.strip_prefix("budget ") {
                        expected.budgets.push(seconds.trim().parse().unwrap());
                        continue;
                    }
                    expected.findings.push(finding(item, file));
                }
                let args = args
                    .split_whitespace()
                    .map(|a| {
                        if a.starts_with('-') || !a.ends_with(".yaml") {
                            a.to_string()
                        } else {
                            format!("{CORPUS}/{a}")
                        }
                    })
                    .collect();
                case.with.push((args, expected));
            }
            _ => {}
        }
    }
    assert!(has_source, "{}: no `# source:` line", file.display());
    case
}

fn files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in std::fs::read_dir(CORPUS).unwrap() {
        let kind = kind.unwrap().path();
        if kind.is_dir() {
            for file in std::fs::read_dir(&kind).unwrap() {
                files.push(file.unwrap().path());
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on `file` and `extra`; the problems found, if any.
fn judge(file: &Path, extra: &[String], expected: &Expected) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .arg("check")
        .arg(file)
        .args(extra)
        .args(["-o", "json"])
        .output()
        .expect("run migverify");
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if expected.exit_2 {
        if code != Some(2) {
            problems.push(format!("exit {code:?}, expected 2 (refused as unreadable)"));
        }
        if !out.stdout.is_empty() {
            problems.push("a refusal printed a report".into());
        }
        let name = file.file_name().unwrap().to_string_lossy();
        if stderr.trim_end().lines().count() != 1 || !stderr.contains(&*name) {
            problems.push(format!("stderr is not one line naming the file: {stderr}"));
        }
        for text in &expected.stderr {
            if !stderr.contains(text) {
                problems.push(format!("stderr lacks {text:?}: {stderr}"));
            }
        }
        return problems;
    }
    let report: Value = match serde_json::from_slice(&out.stdout) {
        Ok(report) => report,
        Err(_) => return vec![format!("exit {code:?}, no report: {stderr}")],
    };
    let found: Vec<Finding> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Finding {
            severity: f["severity"].as_str().unwrap().into(),
            path: f["path"].as_str().unwrap().into(),
            id: f["id"].as_str().unwrap().into(),
        })
        .collect();
    let judged = |list: &[Finding]| {
        let mut list: Vec<Finding> = list
            .iter()
            .filter(|f| f.severity != "info")
            .cloned()
            .collect();
        list.sort();
        list
    };
    let (want, got) = (judged(&expected.findings), judged(&found));
    for missing in want.iter().filter(|w| !got.contains(w)) {
        problems.push(format!("missing: {missing}"));
    }
    for extra in got.iter().filter(|g| !want.contains(g)) {
        problems.push(format!("unexpected: {extra}"));
    }
    if problems.is_empty() && want != got {
        problems.push(format!("found {} instead of {}", show(&got), show(&want)));
    }
    for info in expected.findings.iter().filter(|f| f.severity == "info") {
        if !found.contains(info) {
            problems.push(format!("missing: {info}"));
        }
    }
    let errors = found.iter().any(|f| f.severity == "error");
    let warnings = found.iter().any(|f| f.severity == "warning");
    if expected.no_error && errors {
        problems.push("an error on an object the real components accept".into());
    }
    let status = if errors {
        1
    } else if warnings {
        3
    } else {
        0
    };
    if code != Some(status) {
        problems.push(format!(
            "exit {code:?}, expected {status} from the findings"
        ));
    }
    for seconds in &expected.budgets {
        let budgets = report["budgets"].as_array().unwrap();
        if !budgets
            .iter()
            .any(|b| b["completion_timeout_s"].as_u64() == Some(*seconds))
        {
            problems.push(format!("no budget of {seconds} s: {budgets:?}"));
        }
    }
    problems
}

fn show(list: &[Finding]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn every_corpus_object_gives_its_documented_findings() {
    let files = files();
    assert!(files.len() >= 40, "only {} corpus objects", files.len());
    let mut failures = Vec::new();
    let (mut passing, mut combinations, mut combinations_passing) = (0, 0, 0);
    for file in &files {
        let case = parse(file);
        let name = file.strip_prefix(CORPUS).unwrap().display().to_string();
        let problems = judge(&case.file, &[], &case.alone);
        if problems.is_empty() {
            passing += 1;
        } else {
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
        for (extra, expected) in &case.with {
            combinations += 1;
            let problems = judge(&case.file, extra, expected);
            if problems.is_empty() {
                combinations_passing += 1;
            } else {
                let shown: Vec<_> = extra
                    .iter()
                    .map(|a| a.strip_prefix(CORPUS).unwrap_or(a))
                    .collect();
                failures.push(format!(
                    "{name} with {}:\n    {}",
                    shown.join(" "),
                    problems.join("\n    ")
                ));
            }
        }
    }
    eprintln!(
        "corpus: {passing}/{} objects and {combinations_passing}/{combinations} combinations give their documented findings",
        files.len()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
