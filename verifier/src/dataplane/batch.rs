//! Reading the first entries of an array map in a few
//! `BPF_MAP_LOOKUP_BATCH` calls.
//!
//! The collector reads the flow table ten times a second. Reading it entry
//! by entry through `BPF_MAP_LOOKUP_ELEM` costs a system call per entry:
//! with 16 migrations (over a thousand entries) that alone kept a few
//! percent of a core busy. A batch call returns thousands of entries at
//! once. aya has no batch API, hence the raw call.

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

/// Entries `0..len` of `map`, a `BPF_MAP_TYPE_ARRAY` of `V` (`len` at
/// most its size), with their indexes. Each value is copied whole, but may
/// be updated by the programs while it is copied.
///
/// Fails with `EINVAL` on kernels before 5.6, which have no batch calls.
pub fn read_array<V: Pod>(map: &MapData, len: u32) -> io::Result<Vec<(u32, V)>> {
    let chunk = (len as usize).min(BATCH);
    let mut keys = vec![0u32; chunk];
    // SAFETY: `Pod` types are valid for any bit pattern, zeroes included.
    let mut values = vec![unsafe { std::mem::zeroed::<V>() }; chunk];
    // Where to go on from: the kernel returns the last index it copied and
    // starts after the one it is given back.
    let mut token = 0u32;
    let mut next = 0u32;
    let mut entries = Vec::with_capacity(len as usize);
    while (entries.len() as u32) < len {
        let mut attr = BatchAttr {
            in_batch: if entries.is_empty() {
                0
            } else {
                &token as *const u32 as u64
            },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: (len - entries.len() as u32).min(chunk as u32),
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attribute points at buffers of at least `count` keys
        // (an array's are u32) and values of the map's value size, and at
        // two 4-byte tokens; all outlive the call.
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
            None if filled > 0 => {}
            // The end of the map.
            None => return Ok(entries),
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            Some(e) => return Err(e),
        }
        token = next;
    }
    Ok(entries)
}
