//! Which code a run measured: the commit checked out, whether the tree was
//! clean, and the trees of the code the figures describe (the eBPF programs
//! and the user-space data plane that loads them). The page carries them in
//! a marker line, and a test fails when the page describes other code than
//! the commit checked out.

use std::{path::Path, process::Command};

use serde::{Deserialize, Serialize};

/// The code the benchmarks measure: a change under these paths needs a new
/// run before the page describes the code again.
pub const MEASURED_PATHS: [&str; 2] = ["verifier-ebpf", "verifier/src/dataplane"];

/// The marker line's start in docs/benchmarks.md.
pub const MARKER: &str = "<!-- bench-provenance";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` when the run started (None outside a checkout).
    pub commit: Option<String>,
    /// Paths `git status --porcelain` listed when the run started.
    pub dirty: Vec<String>,
    /// The git trees of [`MEASURED_PATHS`] at the commit, joined by `,`.
    pub code: Option<String>,
}

impl Provenance {
    /// Whether the measured code is the commit's: nothing under
    /// [`MEASURED_PATHS`] was changed in the working tree.
    pub fn code_clean(&self) -> bool {
        self.commit.is_some()
            && !self
                .dirty
                .iter()
                .any(|path| MEASURED_PATHS.iter().any(|m| path.starts_with(m)))
    }

    pub fn marker(&self) -> String {
        format!(
            "{MARKER} commit={} code-clean={} -->",
            self.commit.as_deref().unwrap_or("none"),
            self.code_clean()
        )
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// What is checked out under `root` now.
pub fn of_checkout(root: &Path) -> Provenance {
    let Some(commit) = git(root, &["rev-parse", "HEAD"]) else {
        return Provenance::default();
    };
    let dirty = git(root, &["status", "--porcelain", "--untracked-files=all"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.get(3..))
        .map(str::to_string)
        .collect();
    let code = MEASURED_PATHS
        .iter()
        .map(|path| git(root, &["rev-parse", &format!("HEAD:{path}")]))
        .collect::<Option<Vec<_>>>()
        .map(|trees| trees.join(","));
    Provenance {
        commit: Some(commit),
        dirty,
        code,
    }
}

/// Why the page at `page` does not describe the code committed at HEAD in
/// `root`, if it does not. `Ok(None)`: it does; `Err`: no git checkout to
/// compare with.
#[cfg(test)]
pub fn stale_page(root: &Path, page: &str) -> Result<Option<String>, String> {
    git(root, &["rev-parse", "HEAD"]).ok_or("not a git checkout")?;
    let Some(marker) = page.lines().find(|l| l.starts_with(MARKER)) else {
        return Ok(Some("the page has no provenance marker".into()));
    };
    let field = |name: &str| {
        marker
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    let Some(commit) = field("commit").filter(|c| *c != "none") else {
        return Ok(Some("the run recorded no commit".into()));
    };
    if field("code-clean") != Some("true") {
        return Ok(Some(format!(
            "the run measured uncommitted changes under {} on top of {commit}",
            MEASURED_PATHS.join(" or ")
        )));
    }
    if git(root, &["cat-file", "-e", &format!("{commit}^{{commit}}")]).is_none() {
        return Ok(Some(format!("commit {commit} is not in this repository")));
    }
    let mut diff = vec!["diff", "--name-only", commit, "HEAD", "--"];
    diff.extend(MEASURED_PATHS);
    let changed = git(root, &diff).unwrap_or_else(|| "?".into());
    if changed.is_empty() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "measured at {commit}; changed since: {}",
            changed.lines().collect::<Vec<_>>().join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_measured_code_is_not_the_commits() {
        let mut p = Provenance {
            commit: Some("abc".into()),
            dirty: vec!["docs/benchmarks.md".into()],
            code: None,
        };
        assert!(p.code_clean());
        p.dirty.push("verifier-ebpf/src/programs/tcp.rs".into());
        assert!(!p.code_clean());
        assert_eq!(
            p.marker(),
            format!("{MARKER} commit=abc code-clean=false -->")
        );
    }

    /// A page written from a commit before the last change to the
    /// measured code is stale (f357094 predates this branch's eBPF changes).
    #[test]
    fn a_page_from_before_the_last_change_is_stale() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let page = format!("# Benchmarks\n\n{MARKER} commit=f3570948df8ee595e7e3c62291d51e92a61a8d94 code-clean=true -->\n");
        match stale_page(&root, &page) {
            Ok(why) => assert!(why.is_some(), "a page from f357094 passed as current"),
            Err(why) => eprintln!("not checked: {why}"),
        }
        let unmarked = stale_page(&root, "# Benchmarks\n");
        assert!(!matches!(unmarked, Ok(None)));
    }

    /// docs/benchmarks.md describes the code that ships: it was written
    /// by a run of the eBPF programs and data plane committed at HEAD.
    #[test]
    fn the_published_page_describes_the_code_at_head() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let page =
            std::fs::read_to_string(root.join("docs/benchmarks.md")).expect("docs/benchmarks.md");
        match stale_page(&root, &page) {
            Ok(None) => {}
            Ok(Some(why)) => panic!(
                "docs/benchmarks.md does not describe the code at HEAD ({why}): run `cargo xtask bench` on a clean tree and commit what it writes"
            ),
            Err(why) => eprintln!("not checked: {why}"),
        }
    }
}
