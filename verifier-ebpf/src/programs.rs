use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use verifier_ebpf::{hook_index, Direction, HookCounters, HOOK_ENTRIES};

/// Per-CPU so concurrent CPUs never contend; user space sums the CPUs.
#[map]
static HOOK_COUNTERS: PerCpuArray<HookCounters> = PerCpuArray::with_max_entries(HOOK_ENTRIES, 0);

#[inline(always)]
fn observe(ctx: &TcContext, slot: u32, direction: Direction) -> i32 {
    if let Some(counters) = HOOK_COUNTERS.get_ptr_mut(hook_index(slot, direction)) {
        // SAFETY: the pointer is this CPU's entry; nothing else writes it
        // while this program runs (preemption is off in TC).
        let counters = unsafe { &mut *counters };
        counters.packets += 1;
        counters.bytes += u64::from(ctx.len());
    }
    TC_ACT_UNSPEC
}

/// One ingress and one egress program per slot, the slot a constant.
macro_rules! slot_programs {
    ($($slot:literal: $ingress:ident, $egress:ident;)*) => {$(
        #[classifier]
        pub fn $ingress(ctx: TcContext) -> i32 {
            observe(&ctx, $slot, Direction::Ingress)
        }

        #[classifier]
        pub fn $egress(ctx: TcContext) -> i32 {
            observe(&ctx, $slot, Direction::Egress)
        }
    )*};
}

slot_programs! {
    0: ingress_00, egress_00;
    1: ingress_01, egress_01;
    2: ingress_02, egress_02;
    3: ingress_03, egress_03;
    4: ingress_04, egress_04;
    5: ingress_05, egress_05;
    6: ingress_06, egress_06;
    7: ingress_07, egress_07;
    8: ingress_08, egress_08;
    9: ingress_09, egress_09;
    10: ingress_10, egress_10;
    11: ingress_11, egress_11;
    12: ingress_12, egress_12;
    13: ingress_13, egress_13;
    14: ingress_14, egress_14;
    15: ingress_15, egress_15;
    16: ingress_16, egress_16;
    17: ingress_17, egress_17;
    18: ingress_18, egress_18;
    19: ingress_19, egress_19;
    20: ingress_20, egress_20;
    21: ingress_21, egress_21;
    22: ingress_22, egress_22;
    23: ingress_23, egress_23;
    24: ingress_24, egress_24;
    25: ingress_25, egress_25;
    26: ingress_26, egress_26;
    27: ingress_27, egress_27;
    28: ingress_28, egress_28;
    29: ingress_29, egress_29;
    30: ingress_30, egress_30;
    31: ingress_31, egress_31;
}

/// The floor for per-packet cost benchmarks: the same hook, no work.
#[classifier]
pub fn empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
