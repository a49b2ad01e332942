//! Builds the eBPF programs (verifier-ebpf) for bpfel-unknown-none and leaves
//! the object in OUT_DIR, where `dataplane` embeds it with `include_bytes!`,
//! so `migverify` is one self-contained file. Without the `dataplane`
//! feature there is nothing to build: no nightly toolchain, no bpf-linker.

fn main() {
    #[cfg(feature = "dataplane")]
    ebpf::build();
}

#[cfg(feature = "dataplane")]
mod ebpf {
    use std::{
        env,
        path::{Path, PathBuf},
        process::Command,
    };

    pub fn build() {
        let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
        let workspace = manifest_dir
            .parent()
            .expect("verifier/ sits in the workspace");
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
        // aya-build turns every line the nested cargo prints into a warning; keep
        // it to errors.
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
        if let Err(error) = aya_build::build_ebpf([package], aya_build::Toolchain::default()) {
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
            .args(["run", "nightly", "rustc", "--print", "sysroot"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .ok_or("the nightly Rust toolchain is not installed")?;
        let sysroot = String::from_utf8_lossy(&sysroot.stdout);
        let core_src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
        if !core_src.is_dir() {
            return Err("the nightly toolchain lacks the rust-src component".into());
        }
        Ok(())
    }
}
