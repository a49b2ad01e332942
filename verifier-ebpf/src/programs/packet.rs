//! Reading packet memory in place: one bounds check per header, then
//! loads of whole words at fixed offsets from it.
//!
//! Why the loads are written out in assembly: LLVM's BPF target assumes
//! strict alignment, so a `u16` or `u32` read from a byte array (which is
//! what a header at an arbitrary offset is) becomes one load, shift and or
//! per byte: a TCP segment's addresses, ports, sequence and timestamps
//! cost about 70 instructions that way, on every packet. The kernel's
//! verifier allows unaligned packet loads wherever the CPU has efficient
//! unaligned access (x86-64, arm64: `CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS`).
//! LLVM's `allows-misaligned-mem-access` feature would say the same for the
//! whole program, but it also merges stack reads into unaligned ones, which
//! the verifier refuses on every CPU; these loads touch packet memory only.

use core::arch::asm;

use aya_ebpf::programs::TcContext;

use super::parse::Skip;

/// `N` bytes of the packet, their bounds checked once against `data_end`.
/// Every read is at a constant offset `I` below `N`, checked when the
/// program is compiled, so the verifier sees each load inside the checked
/// range.
#[derive(Clone, Copy)]
pub(super) struct Bytes<const N: usize> {
    start: *const u8,
}

/// A BPF load of `$width` bytes at `$start + $offset`, zero-extended into
/// a `u64` (the ISA defines loads to zero the register's upper bits).
macro_rules! load {
    ($width:literal, $start:expr, $offset:expr) => {{
        let value: u64;
        // SAFETY: `$start + $offset + $width` is inside the range `at`
        // checked (the callers' const assertions); the instruction reads
        // only that packet memory and writes only its output register.
        // `pure`: the packet does not change under a program that only
        // observes, so two reads of one field may be one. It never moves a
        // load above the bounds check: LLVM does not speculate assembly.
        unsafe {
            asm!(
                concat!("{value} = *(u", $width, " *)({start} + {offset})"),
                value = out(reg) value,
                start = in(reg) $start,
                offset = const $offset,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        value
    }};
}

impl<const N: usize> Bytes<N> {
    /// The `N` bytes at `offset`, if the linear data holds all of them.
    #[inline(always)]
    pub(super) fn at(ctx: &TcContext, offset: usize) -> Result<Self, Skip> {
        let start = ctx.data() + offset;
        if start + N > ctx.data_end() {
            return Err(Skip);
        }
        Ok(Bytes {
            start: start as *const u8,
        })
    }

    /// The byte at `I`.
    #[inline(always)]
    pub(super) fn u8<const I: usize>(self) -> u8 {
        const { assert!(I < N) };
        // SAFETY: inside the checked range, per the assertion.
        unsafe { *self.start.add(I) }
    }

    /// The big-endian `u16` at `I`: a port, an EtherType, a TCP window.
    #[inline(always)]
    pub(super) fn be16<const I: usize>(self) -> u16 {
        const { assert!(I + 2 <= N) };
        let raw = load!(16, self.start, I);
        // SAFETY: a 16-bit load leaves the upper bits zero; saying so
        // spares the mask LLVM would otherwise put before each use.
        unsafe { core::hint::assert_unchecked(raw >> 16 == 0) };
        u16::from_be(raw as u16)
    }

    /// The big-endian `u32` at `I`: a sequence number, a timestamp.
    #[inline(always)]
    pub(super) fn be32<const I: usize>(self) -> u32 {
        u32::from_be(self.ne32::<I>())
    }

    /// The four bytes at `I` as they lie in the packet (an IPv4 address),
    /// read as one native word.
    #[inline(always)]
    pub(super) fn ne32<const I: usize>(self) -> u32 {
        const { assert!(I + 4 <= N) };
        let raw = load!(32, self.start, I);
        // SAFETY: a 32-bit load leaves the upper bits zero.
        unsafe { core::hint::assert_unchecked(raw >> 32 == 0) };
        raw as u32
    }

    /// The eight bytes at `I` as they lie in the packet (half an IPv6
    /// address), read as one native word.
    #[inline(always)]
    pub(super) fn ne64<const I: usize>(self) -> u64 {
        const { assert!(I + 8 <= N) };
        load!(64, self.start, I)
    }
}
