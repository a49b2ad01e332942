//! A flow key as the aligned words it is made of: how the parser stores a
//! packet's addresses into it, how the prefilters compare them against
//! CIDRs, and how the flow table compares and copies whole keys. LLVM's BPF
//! target assumes strict alignment, so each of these says which words it
//! touches rather than leave byte arrays to the compiler (a byte-wise copy
//! or compare is one instruction per byte); the layout they rely on is
//! asserted once, here.

use verifier_ebpf::FlowKey;

/// Where a key's addresses start: each on a word boundary of an 8-aligned,
/// five-word key.
const SRC_AT: usize = core::mem::offset_of!(FlowKey, src);
const DST_AT: usize = core::mem::offset_of!(FlowKey, dst);
const _: () = assert!(
    SRC_AT.is_multiple_of(8)
        && DST_AT.is_multiple_of(8)
        && core::mem::align_of::<FlowKey>() == 8
        && core::mem::size_of::<FlowKey>() == 40
);

/// The key as its five words.
#[inline(always)]
pub(super) fn words(key: &FlowKey) -> &[u64; 5] {
    // SAFETY: a FlowKey is five aligned words, per the assertion above.
    unsafe { &*(key as *const FlowKey as *const [u64; 5]) }
}

/// Key equality in five word compares, without branches or `memcmp`.
#[inline(always)]
pub(super) fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (words(a), words(b));
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
}

/// The source and destination addresses as two words each, for masked
/// compares.
#[inline(always)]
pub(super) fn address_words(key: &FlowKey) -> ([u64; 2], [u64; 2]) {
    let words = words(key);
    const { assert!(SRC_AT == 0 && DST_AT == 16) };
    ([words[0], words[1]], [words[2], words[3]])
}

/// An IPv4 packet's addresses (as they lie in it) into `key`, one store
/// each; the rest of each address stays as it was (zero in a fresh key).
#[inline(always)]
pub(super) fn set_v4_addresses(key: &mut FlowKey, src: u32, dst: u32) {
    let base = key as *mut FlowKey as *mut u8;
    // SAFETY: aligned stores inside the key, per the assertion above.
    unsafe {
        (base.add(SRC_AT) as *mut u32).write(src);
        (base.add(DST_AT) as *mut u32).write(dst);
    }
}

/// An IPv6 packet's addresses (as they lie in it, two words each) into
/// `key`, one store per word.
#[inline(always)]
pub(super) fn set_v6_addresses(key: &mut FlowKey, src: [u64; 2], dst: [u64; 2]) {
    let base = key as *mut FlowKey as *mut u8;
    // SAFETY: aligned stores inside the key, per the assertion above.
    unsafe {
        (base.add(SRC_AT) as *mut [u64; 2]).write(src);
        (base.add(DST_AT) as *mut [u64; 2]).write(dst);
    }
}
