//! `cargo xtask setup`: the eBPF toolchain and the Debian packages, each
//! installed only when missing, each action announced in one line.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{exec, workspace_root};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages migverify, its lab and its tests use at run time.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "qemu-system-x86",
    "iperf3",
    "tcpdump",
    "ethtool",
    // promtool: the alert rules are parsed and tested on recorded series
    // (verifier/tests/alerts.rs).
    "prometheus",
    // The HTML report's test renders it in a real browser, headless, with
    // a font to draw its text.
    "chromium",
    "fonts-dejavu-core",
];

pub fn run() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    guest()
}

/// The Rust target of the static binary the container image holds: musl
/// for this machine's architecture (x86_64 or aarch64; the image is built
/// natively on each platform).
pub fn static_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// What building the static (musl) binary needs: the eBPF toolchain, the
/// musl target of the stable toolchain, and musl-gcc for the C and assembly
/// of ring (TLS). Not the lab's packages: an image build needs none of them.
pub fn static_build() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let target = static_target();
    if !installed.lines().any(|l| l.trim() == target) {
        say(&format!(
            "adding the Rust target {target} (the static binary)"
        ));
        exec(Command::new("rustup").args(["target", "add", &target]))?;
    }
    install_debian(&["musl-tools".to_string()])
}

fn say(what: &str) {
    eprintln!("setup: {what}");
}

fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

/// PATH with .tools/bin first, where the bpf-linker that matches the
/// nightly's LLVM lives.
pub fn path_with_tools() -> std::ffi::OsString {
    let path = env::var_os("PATH").unwrap_or_default();
    env::join_paths(std::iter::once(tools_dir().join("bin")).chain(env::split_paths(&path)))
        .expect("PATH entries contain no separator")
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The nightly the eBPF programs are built with, pinned: the dated channel
/// rustup installs it from, the commit that channel must hold, and its
/// LLVM's major version (bpf-linker is built for exactly that LLVM). A new
/// pin changes all three, here only.
const NIGHTLY_CHANNEL: &str = "nightly-2026-05-20";
const NIGHTLY_COMMIT: &str = "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a";
const NIGHTLY_LLVM_MAJOR: u32 = 22;
/// The name the build uses for it (`rustup run migverify-nightly ...`,
/// verifier/build.rs): a link to whichever installed toolchain holds
/// the pinned commit, so a machine whose `nightly` already is that commit
/// needs no download.
pub const EBPF_TOOLCHAIN: &str = "migverify-nightly";

/// `rustc -vV` of a toolchain, if it runs.
fn rustc_version(toolchain: &str) -> Option<String> {
    output(Command::new("rustup").args(["run", toolchain, "rustc", "-vV"])).ok()
}

fn commit_of(version: &str) -> Option<&str> {
    version
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .map(str::trim)
}

/// The pinned nightly, with rust-src, reachable as [`EBPF_TOOLCHAIN`].
fn nightly_rust_src() -> anyhow::Result<()> {
    if rustc_version(EBPF_TOOLCHAIN).as_deref().and_then(commit_of) == Some(NIGHTLY_COMMIT) {
        return ensure_rust_src();
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the nightly toolchain the eBPF programs build with")?;
    // An installed toolchain that is the pinned commit (a `nightly` of that
    // day, or the dated channel), else the dated channel installed now.
    let installed = toolchains
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|name| name.starts_with("nightly"))
        .find(|name| rustc_version(name).as_deref().and_then(commit_of) == Some(NIGHTLY_COMMIT));
    let source = match installed {
        Some(name) => name,
        None => {
            say(&format!(
                "installing the pinned nightly {NIGHTLY_CHANNEL} (the eBPF programs need it)"
            ));
            exec(Command::new("rustup").args([
                "toolchain",
                "install",
                NIGHTLY_CHANNEL,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
            let commit = rustc_version(NIGHTLY_CHANNEL);
            if commit.as_deref().and_then(commit_of) != Some(NIGHTLY_COMMIT) {
                bail!(
                    "{NIGHTLY_CHANNEL} is not the pinned commit {NIGHTLY_COMMIT}: {}",
                    commit.unwrap_or_default().trim()
                );
            }
            NIGHTLY_CHANNEL.to_string()
        }
    };
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        &source,
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        say(&format!(
            "adding rust-src to {source} (for -Z build-std=core)"
        ));
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            &source,
        ]))?;
    }
    let sysroot =
        output(Command::new("rustup").args(["run", &source, "rustc", "--print", "sysroot"]))?;
    say(&format!("{EBPF_TOOLCHAIN} is {source} ({NIGHTLY_COMMIT})"));
    exec(Command::new("rustup").args(["toolchain", "link", EBPF_TOOLCHAIN, sysroot.trim()]))
}

/// rust-src of the linked toolchain (components cannot be added through a link).
fn ensure_rust_src() -> anyhow::Result<()> {
    let sysroot = output(Command::new("rustup").args([
        "run",
        EBPF_TOOLCHAIN,
        "rustc",
        "--print",
        "sysroot",
    ]))?;
    let core = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !core.is_dir() {
        bail!(
            "{EBPF_TOOLCHAIN} ({}) lacks rust-src: `rustup toolchain uninstall {EBPF_TOOLCHAIN}` and run setup again",
            sysroot.trim()
        );
    }
    Ok(())
}

/// The nightly's LLVM, as far as bpf-linker is concerned.
struct NightlyLlvm {
    major: u32,
    lib_dir: PathBuf,
    /// `LLVM-22-rust-1.97.0-nightly` from `libLLVM-22-rust-1.97.0-nightly.so`.
    dylib: Option<String>,
}

fn nightly_llvm() -> anyhow::Result<NightlyLlvm> {
    let version = output(Command::new("rustup").args(["run", EBPF_TOOLCHAIN, "rustc", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.trim().parse().ok())
        .context("the pinned nightly's `rustc -vV` names no LLVM version")?;
    if major != NIGHTLY_LLVM_MAJOR {
        bail!("the pinned nightly uses LLVM {major}, not {NIGHTLY_LLVM_MAJOR}: update the pin in xtask/src/setup.rs");
    }
    let sysroot = output(Command::new("rustup").args([
        "run",
        EBPF_TOOLCHAIN,
        "rustc",
        "--print",
        "sysroot",
    ]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let prefix = format!("libLLVM-{major}");
    let dylib = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|name| name.starts_with(&prefix) && name.ends_with(".so"))
        .map(|name| {
            name.trim_start_matches("lib")
                .trim_end_matches(".so")
                .to_string()
        });
    Ok(NightlyLlvm {
        major,
        lib_dir,
        dylib,
    })
}

fn linker_works(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bpf-linker must use the LLVM the nightly rustc emits bitcode for. Each
/// build lives in its own folder named after that LLVM, so a toolchain
/// update brings a rebuild and never a mismatched linker.
fn bpf_linker() -> anyhow::Result<()> {
    let llvm = nightly_llvm()?;
    let bin_dir = tools_dir().join("bin");
    let current = bin_dir.join("bpf-linker");

    // First choice: link against the nightly's own libLLVM, no system package.
    if let Some(dylib) = &llvm.dylib {
        let root = tools_dir()
            .join("bpf-linker")
            .join(format!("rustc-{dylib}"));
        if linker_works(&root.join("bin/bpf-linker"))
            || build_with_nightly_llvm(&llvm, dylib, &root)
        {
            return point_at(&current, &root);
        }
    }
    // Second: Debian's llvm-N-dev.
    let root = tools_dir()
        .join("bpf-linker")
        .join(format!("debian-llvm-{}", llvm.major));
    if !linker_works(&root.join("bin/bpf-linker")) {
        build_with_debian_llvm(llvm.major, &root)?;
    }
    point_at(&current, &root)
}

fn build_with_nightly_llvm(llvm: &NightlyLlvm, dylib: &str, root: &Path) -> bool {
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {} (a few minutes, once)",
        llvm.major
    ));
    let lib = llvm.lib_dir.display();
    let rustflags = format!("-L native={lib} -l dylib={dylib} -C link-arg=-Wl,-rpath,{lib}");
    let result = exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--quiet",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{},no-llvm-linking", llvm.major))
            .arg("--root")
            .arg(root)
            .env("RUSTFLAGS", rustflags),
    );
    match result {
        Ok(()) if linker_works(&root.join("bin/bpf-linker")) => true,
        Ok(()) => {
            say("that bpf-linker does not start; trying Debian's LLVM instead");
            false
        }
        Err(e) => {
            say(&format!("{e:#}; trying Debian's LLVM instead"));
            false
        }
    }
}

fn build_with_debian_llvm(major: u32, root: &Path) -> anyhow::Result<()> {
    install_debian(
        &[
            &format!("llvm-{major}-dev"),
            "libpolly-{major}-dev",
            "zlib1g-dev",
            "libzstd-dev",
        ]
        .map(|p| p.replace("{major}", &major.to_string())),
    )
    .with_context(|| format!("bpf-linker needs LLVM {major}, the nightly's LLVM"))?;
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM {major} (a few minutes, once)"
    ));
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--quiet",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            .arg("--root")
            .arg(root)
            .env(
                format!("LLVM_SYS_{major}0_PREFIX"),
                format!("/usr/lib/llvm-{major}"),
            ),
    )
    .context("building bpf-linker failed both ways; see the cargo output above")
}

fn point_at(link: &Path, root: &Path) -> anyhow::Result<()> {
    let target = root.join("bin/bpf-linker");
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    fs::create_dir_all(link.parent().expect("link has a folder"))?;
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(&target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<String> = DEBIAN_PACKAGES
        .iter()
        .filter(|p| !debian_installed(p))
        .map(|p| p.to_string())
        .collect();
    install_debian(&missing)
}

fn debian_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

fn install_debian(packages: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&String> = packages.iter().filter(|p| !debian_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("Debian packages missing: {list}. Install them as root: apt-get install {list}");
    }
    say(&format!("installing Debian packages: {list}"));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(anyhow::Error::from)
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    bail!(
                        "apt-get {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    )
                }
            })
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().map(|p| p.as_str()));
    apt(&args).with_context(|| format!("installing {list} failed"))
}

/// Where the lab's running guest finds its kernel and busybox (the
/// `verifier` crate looks here, in the tree it was built from).
fn guest_dir() -> PathBuf {
    tools_dir().join("guest")
}

/// The running guest's parts, from Debian packages, without installing
/// either: the kernel of `linux-image-cloud-amd64` (the meta package's
/// `linux-image-*` dependency, extracted with `dpkg-deb -x`; nothing goes
/// to /boot) as `.tools/guest/vmlinuz`, and the static busybox of
/// `busybox-static` as `.tools/guest/busybox` (so a `busybox` package on
/// the host is left alone).
fn guest() -> anyhow::Result<()> {
    let dir = guest_dir();
    let kernel = dir.join("vmlinuz");
    let busybox = dir.join("busybox");
    if kernel.is_file() && busybox.is_file() {
        return Ok(());
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = tools_dir().join("guest.download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = (|| {
        if !kernel.is_file() {
            let package = kernel_package()?;
            say(&format!(
                "fetching the lab guest's kernel: {package} (from linux-image-cloud-amd64) into {}",
                dir.display()
            ));
            let root = extract(&work, &package)?;
            let boot = root.join("boot");
            let image = fs::read_dir(&boot)
                .with_context(|| format!("{package} has no boot/"))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("vmlinuz-"))
                })
                .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
            place(&image, &kernel)?;
            fs::write(dir.join("vmlinuz.package"), format!("{package}\n"))?;
        }
        if !busybox.is_file() {
            say(&format!(
                "fetching the lab guest's busybox (busybox-static) into {}",
                dir.display()
            ));
            let root = extract(&work, "busybox-static")?;
            place(&root.join("bin/busybox"), &busybox)?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// The kernel image package `linux-image-cloud-amd64` depends on, e.g.
/// `linux-image-6.1.0-57-cloud-amd64`.
fn kernel_package() -> anyhow::Result<String> {
    let depends = || {
        output(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))
            .ok()
            .and_then(|text| {
                text.lines()
                    .filter_map(|l| l.trim().strip_prefix("Depends:"))
                    .map(str::trim)
                    .find(|p| p.starts_with("linux-image-"))
                    .map(str::to_string)
            })
    };
    if let Some(package) = depends() {
        return Ok(package);
    }
    apt_update()?;
    depends().context(
        "apt-cache knows no linux-image-cloud-amd64 (the lab guest's kernel): \
         is this Debian on amd64 with its main archive in the sources?",
    )
}

fn apt_update() -> anyhow::Result<()> {
    output(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map(|_| ())
    .context("apt-get update")
}

/// `apt-get download PACKAGE` into `work` and `dpkg-deb -x` it; returns the
/// extracted tree. Runs `apt-get update` once when the lists lack it.
fn extract(work: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(work)
            // apt's sandbox user could not write into .tools/.
            .args(["-o", "APT::Sandbox::User=root"])
            .output()
    };
    let mut out = download().context("running apt-get download")?;
    if !out.status.success() {
        apt_update()?;
        out = download().context("running apt-get download")?;
    }
    if !out.status.success() {
        bail!(
            "apt-get download {package}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let deb = fs::read_dir(work)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let root = work.join(package);
    fs::create_dir_all(&root)?;
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    Ok(root)
}

/// Copies `from` to `to` through a temporary name, so a half-written file
/// never passes for a finished one.
fn place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = to.with_extension("partial");
    fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    fs::rename(&partial, to).with_context(|| format!("renaming to {}", to.display()))
}
