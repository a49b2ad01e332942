//! The observers: count every packet per hook, and classify and account
//! live-migration TCP flows per flow x hook.
//!
//! The per-packet path is built to be cheap for the traffic that is not
//! migration: direct packet access only, array maps (inlined by the
//! verifier) as prefilters in front of every hash lookup, and the coarse
//! clock only for flows that are kept.
//!
//! Each hook runs a small program of its own (`ingress_NN`/`egress_NN`, the
//! slot compiled in) that counts the packet and tail-calls the one shared
//! classifier for anything that may be IP. The kernel verifies the
//! classifier once however many hooks there are: verifying it per hook cost
//! over 100 ms each.
//!
//! One module per concern, in the order a packet meets them:
//!
//! - [`hooks`]: the programs (hook entry points and the shared classifier);
//! - [`packet`]: packet memory, bounds-checked once per header, read in words;
//! - [`parse`]: Ethernet, VLAN, IPv4/IPv6 and TCP headers into a `Segment`;
//! - [`arp`]: ARP about the migration network, counted per address;
//! - [`classify`]: is a new flow migration traffic, and why;
//! - [`flow_table`]: where a flow's entry is (per-CPU cache, index, array);
//! - [`key`]: a flow key as aligned words (stored, compared, copied);
//! - [`tcp`]: what a segment adds to its entry: counters, sequence, RTT;
//! - [`events`]: the ring buffer user space drains;
//! - [`maps`]: every map, by the name user space looks it up by;
//! - [`mem`]: memory operations the BPF target needs spelled out.
//!
//! Everything but the programs is `#[inline(always)]` into them, or
//! `#[inline(never)]` where a rare path must not cost the hot one stack or
//! instructions: the split into modules changes no instruction.

mod arp;
mod classify;
mod events;
mod flow_table;
mod hooks;
mod key;
mod maps;
mod mem;
mod packet;
mod parse;
mod tcp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
