//! The baseline the observers are measured against: a naive flow counter
//! as one would first write it. Every packet is parsed with
//! `bpf_skb_load_bytes` and counted in a per-CPU LRU hash keyed by the
//! 5-tuple. Built for benchmarks only; never attached by migverify.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod baseline {
    use aya_ebpf::{
        bindings::TC_ACT_UNSPEC,
        macros::{classifier, map},
        maps::LruPerCpuHashMap,
        programs::TcContext,
    };

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Tuple {
        src: [u8; 16],
        dst: [u8; 16],
        sport: u16,
        dport: u16,
        proto: u8,
        _pad: [u8; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Count {
        packets: u64,
        bytes: u64,
    }

    #[map]
    static NAIVE_FLOWS: LruPerCpuHashMap<Tuple, Count> =
        LruPerCpuHashMap::with_max_entries(65536, 0);

    #[classifier]
    pub fn naive_lru(ctx: TcContext) -> i32 {
        let _ = count(&ctx);
        TC_ACT_UNSPEC
    }

    fn count(ctx: &TcContext) -> Result<(), i64> {
        let ethertype = u16::from_be(ctx.load::<u16>(12)?);
        let mut tuple = Tuple {
            src: [0; 16],
            dst: [0; 16],
            sport: 0,
            dport: 0,
            proto: 0,
            _pad: [0; 3],
        };
        let l4 = match ethertype {
            0x0800 => {
                let ihl = usize::from(ctx.load::<u8>(14)? & 0x0f) * 4;
                tuple.proto = ctx.load(14 + 9)?;
                tuple.src[..4].copy_from_slice(&ctx.load::<[u8; 4]>(14 + 12)?);
                tuple.dst[..4].copy_from_slice(&ctx.load::<[u8; 4]>(14 + 16)?);
                14 + ihl
            }
            0x86dd => {
                tuple.proto = ctx.load(14 + 6)?;
                tuple.src = ctx.load(14 + 8)?;
                tuple.dst = ctx.load(14 + 24)?;
                14 + 40
            }
            _ => return Ok(()),
        };
        tuple.sport = ctx.load(l4)?;
        tuple.dport = ctx.load(l4 + 2)?;
        let bytes = u64::from(ctx.len());
        match NAIVE_FLOWS.get_ptr_mut(tuple) {
            // SAFETY: this CPU's value of a live entry.
            Some(count) => unsafe {
                (*count).packets += 1;
                (*count).bytes += bytes;
            },
            None => {
                let _ = NAIVE_FLOWS.insert(tuple, Count { packets: 1, bytes }, 0);
            }
        }
        Ok(())
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("bench-baseline holds an eBPF program; it is built for bpfel-unknown-none by verifier/build.rs");
}
