//! migverify's TC programs: pass-through observers of migration traffic.
//!
//! Every program returns `TC_ACT_UNSPEC`: with tcx that is "next", with
//! clsact "continue", so the packet goes on exactly as if we were not there
//! and any program attached after us still decides its fate.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic adds: the BPF target has no AtomicU64::fetch_add (intrinsics for
// plain adds, inline assembly for the fetching one).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics, asm_experimental_arch))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("verifier-ebpf holds eBPF programs; it is built for bpfel-unknown-none by verifier/build.rs");
}
