//! Builds the eBPF programs (verifier-ebpf) for bpfel-unknown-none and leaves
//! the object in OUT_DIR, where `dataplane` embeds it with `include_bytes!`,
//! so `migverify` is one self-contained file. Without the `dataplane`
//! feature there is nothing to build: no nightly toolchain, no bpf-linker.

use std::{env, path::Path, process::Command};

fn main() {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo");
    let workspace = Path::new(&manifest_dir)
        .parent()
        .expect("verifier/ sits in the workspace");
    println!("cargo:rustc-env=MIGVERIFY_REVISION={}", revision(workspace));
    #[cfg(feature = "dataplane")]
    ebpf::build(workspace);
}

/// The source revision for `migverify_build_info`: `MIGVERIFY_REVISION`
/// when the build is given one (the image build), else the workspace's git
/// HEAD when this script ran, else `unknown`. Not re-run at every commit
/// (that would rebuild the eBPF object each time): give the variable where
/// the revision must be exact.
fn revision(workspace: &Path) -> String {
    println!("cargo:rerun-if-env-changed=MIGVERIFY_REVISION");
    if let Some(revision) = env::var("MIGVERIFY_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return revision.trim().to_string();
    }
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(feature = "dataplane")]
mod ebpf {
    use std::{env, path::Path, process::Command};

    /// The pinned nightly, as `cargo xtask setup` links it (xtask/src/setup.rs
    /// holds the pin: channel, commit, LLVM).
    const EBPF_TOOLCHAIN: &str = "migverify-nightly";

    pub fn build(workspace: &Path) {
        let tools_bin = workspace.join(".tools").join("bin");
        println!(
            "cargo:rerun-if-changed={}",
            tools_bin.join("bpf-linker").display()
        );

        // `cargo xtask setup` puts the bpf-linker that matches the nightly's LLVM here.
        let path = env::var_os("PATH").unwrap_or_default();
        let path = env::join_paths(std::iter::once(tools_bin).chain(env::split_paths(&path)))
            .expect("PATH entries contain no separator");
        env::set_var("PATH", &path);
        // aya-build turns every line the nested cargo prints into a warning;
        // keep it to errors.
        env::set_var("CARGO_TERM_QUIET", "true");

        if let Err(missing) = check_toolchain() {
            panic!(
                "\n\nmigverify's eBPF programs cannot be built: {missing}.\n\
                 Run `cargo xtask setup` once; it installs the eBPF toolchain into .tools/.\n\n"
            );
        }

        let ebpf = workspace.join("verifier-ebpf");
        let package = aya_build::Package {
            name: "verifier-ebpf",
            root_dir: ebpf.to_str().expect("workspace path is UTF-8"),
            ..Default::default()
        };
        if let Err(error) =
            aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN))
        {
            panic!("building the eBPF programs failed: {error:#}");
        }
    }

    /// The pieces aya-build needs but does not diagnose itself.
    fn check_toolchain() -> Result<(), String> {
        let linker = Command::new("bpf-linker").arg("--version").output();
        if !linker.is_ok_and(|out| out.status.success()) {
            return Err("bpf-linker is missing or cannot start (its LLVM changed?)".into());
        }
        let sysroot = Command::new("rustup")
            .args(["run", EBPF_TOOLCHAIN, "rustc", "--print", "sysroot"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .ok_or("the pinned nightly Rust toolchain (migverify-nightly) is not set up")?;
        let sysroot = String::from_utf8_lossy(&sysroot.stdout);
        let core_src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
        if !core_src.is_dir() {
            return Err("the nightly toolchain lacks the rust-src component".into());
        }
        Ok(())
    }
}
