//! The lab's VLAN access port, for kernels without bridge VLAN filtering
//! (no CONFIG_VLAN_8021Q, hence no `vlan_filtering` and no `act_vlan`).
//!
//! This is lab infrastructure, not part of migverify's observers: it stands
//! where the bridge CNI's `"vlan": N` port would be, on the node-side end of
//! a virt-handler's migration veth. Frames from the pod get tag N; frames to
//! the pod must carry tag N, which is removed, and anything else is dropped,
//! exactly as an access port in VLAN N behaves.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod port {
    use aya_ebpf::{
        bindings::{TC_ACT_OK, TC_ACT_SHOT},
        helpers::{bpf_skb_vlan_pop, bpf_skb_vlan_push},
        macros::classifier,
        programs::TcContext,
    };

    const ETH_P_8021Q: u16 = 0x8100;
    const VLAN_VID_MASK: u32 = 0x0fff;

    /// The access VLAN, set by the loader.
    #[unsafe(no_mangle)]
    static VID: u16 = 0;

    fn vid() -> u16 {
        // SAFETY: a read of a global the loader fills in; volatile so the
        // compiler does not fold the initial 0.
        unsafe { core::ptr::read_volatile(&VID) }
    }

    /// Ingress of the node-side port: the frame comes from the pod.
    #[classifier]
    pub fn access_tag(ctx: TcContext) -> i32 {
        // SAFETY: helper call on this program's own skb.
        let pushed = unsafe { bpf_skb_vlan_push(ctx.skb.skb, ETH_P_8021Q.to_be(), vid()) };
        if pushed == 0 {
            TC_ACT_OK
        } else {
            TC_ACT_SHOT
        }
    }

    /// Egress of the node-side port: the frame goes to the pod.
    #[classifier]
    pub fn access_untag(ctx: TcContext) -> i32 {
        // SAFETY: reads of the context the kernel handed us.
        let (present, tci) = unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).vlan_tci) };
        if present == 0 || tci & VLAN_VID_MASK != u32::from(vid()) {
            return TC_ACT_SHOT;
        }
        // SAFETY: helper call on this program's own skb.
        if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } == 0 {
            TC_ACT_OK
        } else {
            TC_ACT_SHOT
        }
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
    eprintln!(
        "lab-switch holds an eBPF program; it is built for bpfel-unknown-none by verifier/build.rs"
    );
}
