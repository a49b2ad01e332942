//! Project tasks: `cargo xtask setup | test | lint | demo | bench | static`.
//!
//! Every task starts with `setup`, so each is the one command a fresh machine
//! needs.

mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "migverify's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (nightly rust-src, bpf-linker
    /// into .tools/, Debian packages). Quiet when everything is there.
    Setup,
    /// Set up, build, and run every test, privileged ones included (as root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt and clippy (warnings denied) for user space and the eBPF
    /// crate, and the build without the data plane (no aya, no bpf-linker).
    Lint,
    /// Set up and run the benchmarks in bench/ (as root); writes
    /// bench/results/ and docs/benchmarks.md.
    Bench {
        /// Few rounds and short runs: a smoke test.
        #[arg(long)]
        quick: bool,
        /// Run one part (per-packet, attach, flood, migration,
        /// hooks-in-place, iperf3, footprint) and print its figures;
        /// nothing is written. agent-soak: the agent over 1000
        /// migrations, its figures added to the latest results and
        /// docs/benchmarks.md.
        #[arg(long, value_name = "PART")]
        only: Option<String>,
    },
    /// Set up, then run the lab's `secondary`, `pod-network-fallback` and
    /// `not-converging` scenarios and print what migverify saw (as root).
    Demo,
    /// Build the static migverify of the container image (musl, release):
    /// target/ARCH-unknown-linux-musl/release/migverify.
    Static,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => test(&args),
        Task::Lint => setup::run().and_then(|()| lint()),
        Task::Demo => setup::run().and_then(|()| demo()),
        Task::Bench { quick, only } => setup::run().and_then(|()| bench(quick, only.as_deref())),
        Task::Static => setup::static_build().and_then(|()| static_binary()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, failing with its command line when it does not succeed.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn test(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    // Privileged tests fail rather than skip when this is set: here, a test
    // that cannot run is a broken test run, not a machine without root.
    // Kernel state (namespaces, tcx links) is shared, so one test at a time.
    exec(
        cargo()
            .args(["test", "--workspace"])
            .args(args)
            .args(["--", "--test-threads=1"])
            .env("MIGVERIFY_PRIVILEGED_TESTS", "1"),
    )
}

fn demo() -> anyhow::Result<()> {
    exec(cargo().args([
        "build",
        "--quiet",
        "--package",
        "verifier",
        "--bin",
        "migverify",
    ]))?;
    let migverify = workspace_root().join("target/debug/migverify");
    for (scenario, what) in [
        (
            "secondary",
            "a migration over the dedicated migration network (macvlan, the seed's NAD)",
        ),
        (
            "pod-network-fallback",
            "virt-handler without migration0: the migration silently uses the pod network",
        ),
        (
            "not-converging",
            "a running guest dirtying memory faster than the migration network carries it: pre-copy never converges",
        ),
    ] {
        println!("\n=== lab scenario {scenario}: {what}\n");
        // FAIL is the expected verdict of the fallback: exit 1 is no error here.
        let status = Command::new(&migverify)
            .args(["lab", "run", "--scenario", scenario])
            .status()
            .with_context(|| format!("running {}", migverify.display()))?;
        if !matches!(status.code(), Some(0 | 1)) {
            bail!("migverify lab run --scenario {scenario} failed ({status})");
        }
    }
    Ok(())
}

fn bench(quick: bool, only: Option<&str>) -> anyhow::Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "--quiet",
        "--package",
        "verifier",
        "--package",
        "bench",
    ]))?;
    let root = workspace_root();
    let mut cmd = Command::new(root.join("target/release/bench"));
    cmd.arg("--root")
        .arg(&root)
        .arg("--migverify")
        .arg(root.join("target/release/migverify"));
    if quick {
        cmd.arg("--quick");
    }
    if let Some(part) = only {
        cmd.args(["--only", part]);
    }
    exec(&mut cmd)
}

/// A release build for the musl target, statically linked (the default for
/// musl), checked by looking at the ELF: no interpreter, no dynamic section.
fn static_binary() -> anyhow::Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "verifier",
        "--bin",
        "migverify",
        "--target",
        &setup::static_target(),
    ]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target_dir
        .join(setup::static_target())
        .join("release/migverify");
    let elf = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    if is_dynamic(&elf) {
        bail!("{} is dynamically linked", binary.display());
    }
    eprintln!("xtask: {} ({} bytes, static)", binary.display(), elf.len());
    Ok(())
}

/// Whether a 64-bit little-endian ELF needs a loader: a PT_INTERP program
/// header (a static-pie binary has PT_DYNAMIC for its own relocations, but
/// no interpreter).
fn is_dynamic(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return true;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= elf.len() && u32_at(at) == PT_INTERP
    })
}

fn lint() -> anyhow::Result<()> {
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    no_dataplane()?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The programs only compile for the BPF target, with the nightly toolchain.
    exec(
        Command::new("rustup")
            .current_dir(workspace_root())
            .args([
                "run",
                setup::EBPF_TOOLCHAIN,
                "cargo",
                "clippy",
                "--package",
                "verifier-ebpf",
            ])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
            ])
            .args(["--target-dir", "target/ebpf-clippy", "--", "-D", "warnings"])
            .env("PATH", setup::path_with_tools())
            .env("CARGO_TERM_QUIET", "true"),
    )
}

/// The build without the data plane, as people who only want `check`
/// make it: no aya anywhere in its dependencies, built with no bpf-linker
/// on PATH (build.rs puts `.tools/bin` there only for the data plane), its
/// binary `check`ing the seed's objects and knowing no `verify`. Clippy
/// denies its warnings too. A target folder of its own keeps the default
/// binary in place.
fn no_dataplane() -> anyhow::Result<()> {
    let tree = cargo()
        .args(["tree", "-p", "verifier", "--no-default-features"])
        .args(["-e", "normal,build", "--prefix", "none"])
        .output()
        .context("cargo tree")?;
    let tree = String::from_utf8_lossy(&tree.stdout);
    if let Some(aya) = tree.lines().find(|l| l.starts_with("aya")) {
        bail!("the build without the data plane depends on {aya}");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::env::split_paths(&path).filter(|dir| !dir.join("bpf-linker").exists()),
    )?;
    let no_dataplane = ["-p", "verifier", "--no-default-features", "--target-dir"];
    let target_dir = workspace_root().join("target/no-dataplane");
    exec(
        cargo()
            .args(["build", "--bin", "migverify"])
            .args(no_dataplane)
            .arg(&target_dir)
            .env("PATH", &path),
    )?;
    exec(
        cargo()
            .args(["clippy", "--lib", "--bins"])
            .args(no_dataplane)
            .arg(&target_dir)
            .args(["--", "-D", "warnings"])
            .env("PATH", &path),
    )?;
    let binary = target_dir.join("debug/migverify");
    let help = Command::new(&binary).arg("--help").output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    if !help.contains("  check ") || help.contains("  verify ") {
        bail!("{} is not the check-only build:\n{help}", binary.display());
    }
    let examples = workspace_root().join("docs/examples/migration-network.yaml");
    exec(
        Command::new(&binary)
            .arg("check")
            .arg(examples)
            .arg("-o")
            .arg("json")
            .stdout(std::process::Stdio::null()),
    )?;
    eprintln!(
        "xtask: {} builds without the data plane (check, checkup, bench)",
        binary.display()
    );
    Ok(())
}
