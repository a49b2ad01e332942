//! The programs the in-place target is set against: #21 asks for at most
//! half of what the hooks cost in place at the commit the issue measured.
//! A figure in nanoseconds from another run says little on another machine
//! (the same programs took 67.9 ns above the floor on the machine the issue
//! was measured on, 73 on a later one), so the reference is built from that
//! commit and measured in the same rounds as today's programs; the target
//! is the ratio of the two.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{ensure, Context as _};

use crate::Build;

/// The commit whose programs the in-place target halves.
pub const COMMIT: &str = "f357094";

/// The toolchain `cargo xtask setup` links, with the bpf-linker in
/// `.tools/bin` that matches its LLVM (the recipe verifier/build.rs hands
/// aya-build).
const EBPF_TOOLCHAIN: &str = "migverify-nightly";

/// [`COMMIT`]'s eBPF object, built once into `target/bench-reference/`
/// from the repository's history (`git archive`), then reused.
pub fn build(root: &Path) -> anyhow::Result<Build> {
    let dir = root.join("target/bench-reference").join(COMMIT);
    let object = dir.join("target/bpfel-unknown-none/release/migverify");
    if !object.exists() {
        eprintln!("bench: building {COMMIT}'s programs, the in-place reference (once)");
        extract(root, &dir.join("src"))?;
        compile(root, &dir)?;
    }
    let object_bytes =
        std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    Ok(Build {
        name: COMMIT.to_string(),
        object: object_bytes,
    })
}

/// The commit's tree, as `git archive` gives it.
fn extract(root: &Path, into: &Path) -> anyhow::Result<()> {
    if into.exists() {
        std::fs::remove_dir_all(into).with_context(|| format!("clearing {}", into.display()))?;
    }
    std::fs::create_dir_all(into)?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", COMMIT])
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(archive.stdout.take().context("git archive's output")?)
        .status()
        .context("running tar")?;
    let archived = archive.wait().context("waiting for git archive")?;
    ensure!(
        archived.success() && tar.success(),
        "git archive {COMMIT} in {} failed: the reference programs come from the repository's history \
         (--root must be a clone that holds {COMMIT}; a shallow one needs git fetch --unshallow)",
        root.display()
    );
    Ok(())
}

/// `cargo build` of the commit's verifier-ebpf for the BPF target, as
/// aya-build does it.
fn compile(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let tools_bin = root.join(".tools/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(tools_bin).chain(std::env::split_paths(&path)))?;
    let status = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "cargo", "build", "--quiet"])
        .args(["--package", "verifier-ebpf", "--bins", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(dir.join("target"))
        .current_dir(dir.join("src"))
        .env("PATH", path)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "--cfg=bpf_target_arch=\"x86_64\"",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .join("\x1f"),
        )
        // What the outer cargo set for this workspace's own build.
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context(
            "running cargo for the reference programs (cargo xtask setup installs the toolchain)",
        )?;
    ensure!(status.success(), "building {COMMIT}'s programs failed");
    Ok(())
}
