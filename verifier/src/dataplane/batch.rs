//! Reading a whole hash map in a few `BPF_MAP_LOOKUP_BATCH` calls.
//!
//! The collector reads the flow tables ten times a second. Iterating them
//! through `BPF_MAP_GET_NEXT_KEY` and `BPF_MAP_LOOKUP_ELEM` costs two system
//! calls per entry: with 16 migrations (over a thousand entries) that alone
//! kept a few percent of a core busy. A batch call returns thousands of
//! entries at once. aya has no batch API, hence the raw call.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{maps::MapData, Pod};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call; the kernel fills at most this many.
const BATCH: usize = 4096;

/// `union bpf_attr` as the batch commands read it.
#[repr(C, align(8))]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of `map`, a `BPF_MAP_TYPE_HASH` of `K` to `V`. Entries
/// added or removed while it reads may or may not be in the result; each
/// bucket is read whole under its lock.
///
/// Fails with `EINVAL` on kernels before 5.6, which have no batch calls.
pub fn read_hash_map<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    // SAFETY: `Pod` types are valid for any bit pattern, zeroes included.
    let zeroed_keys = || vec![unsafe { std::mem::zeroed::<K>() }; BATCH];
    // SAFETY: as above.
    let zeroed_values = || vec![unsafe { std::mem::zeroed::<V>() }; BATCH];
    let (mut keys, mut values) = (zeroed_keys(), zeroed_values());
    // The position to go on from: for hash maps, a bucket index.
    let mut token = [0u64; 1];
    let mut next = [0u64; 1];
    let mut entries = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attribute points at buffers of `count` keys and
        // values of the map's sizes, and at two 8-byte tokens (a hash
        // map's token is a 4-byte bucket index); all outlive the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (result < 0).then(io::Error::last_os_error);
        let filled = attr.count as usize;
        entries.extend(
            keys[..filled]
                .iter()
                .copied()
                .zip(values[..filled].iter().copied()),
        );
        match error {
            None => {}
            // The end of the map.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            Some(e) => return Err(e),
        }
        token = next;
        first = false;
    }
}
