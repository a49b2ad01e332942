//! Memory operations the BPF target needs spelled out: atomic adds and
//! compare-and-swap (no `AtomicU64` operations on BPF) and clearing in
//! words (LLVM's `memset` for BPF goes byte by byte).

use core::intrinsics::{atomic_xadd, AtomicOrdering};

/// Zeroes `*value` with word stores, in place. LLVM turns zero-initialising
/// a struct (or moving a zeroed one) into a call to `memset`, which on BPF
/// is a byte-at-a-time loop costing tens of nanoseconds per packet;
/// volatile stores are never merged into one.
///
/// # Safety
/// `value` is valid for writes; all-zero is a valid `T`.
#[inline(always)]
pub(super) unsafe fn zero_in_place<T>(value: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let words = value as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds and aligned, per the assertion and the contract.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// Adds to a counter shared by every CPU (BPF_ATOMIC_ADD). The BPF target
/// offers no `AtomicU64::fetch_add`; the intrinsic is what it lowers to.
///
/// # Safety
/// `counter` points into a live map value.
#[inline(always)]
pub(super) unsafe fn add(counter: *mut u64, value: u64) {
    // SAFETY: per the function's contract.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, value) };
}

/// Adds to a counter shared by every CPU and returns what it held before
/// (BPF_ATOMIC_ADD with BPF_FETCH, kernel 5.12). LLVM emits the fetching
/// form only for BPF CPU v3, and aya-build fixes the CPU to `generic`; the
/// kernel checks the instruction, not the CPU it was built for.
///
/// # Safety
/// `counter` points into a live map value.
#[inline(always)]
pub(super) unsafe fn fetch_add(counter: *mut u64, value: u64) -> u64 {
    let mut value = value;
    // SAFETY: per the function's contract; the instruction touches only
    // `*counter` and the register it returns in.
    unsafe {
        core::arch::asm!(
            "{value} = atomic_fetch_add((u64 *)({counter} + 0), {value})",
            value = inout(reg) value,
            counter = in(reg) counter,
            options(nostack),
        )
    };
    value
}

/// Stores `new` in `*target` if it holds `expected`, atomically
/// (BPF_CMPXCHG, kernel 5.12); whether it did. Written out for the same
/// reason as [`fetch_add`]: LLVM emits it only for BPF CPU v3.
///
/// # Safety
/// `target` points into a live map value.
#[inline(always)]
pub(super) unsafe fn compare_exchange(target: *mut u64, expected: u64, new: u64) -> bool {
    let mut previous = expected;
    // SAFETY: per the function's contract; the instruction touches only
    // `*target` and r0, which holds the expected value and receives the
    // previous one.
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({target} + 0, r0, {new})",
            inout("r0") previous,
            target = in(reg) target,
            new = in(reg) new,
            options(nostack),
        )
    };
    previous == expected
}
