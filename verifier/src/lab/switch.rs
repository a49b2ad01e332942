//! Loads the lab's VLAN access-port program (verifier-ebpf's `lab-switch`)
//! onto a node-side port. Attached as clsact filters and left in the kernel
//! when this process exits: the port lives as long as its namespace, which
//! `lab down` deletes.

use aya::{
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        SchedClassifier, TcAttachType,
    },
    EbpfLoader,
};

use super::LabError;
use crate::dataplane::Netns;

static LAB_SWITCH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab-switch"));

pub fn attach_access_port(netns: &Netns, port: &str, vid: u16) -> Result<(), LabError> {
    let failed = |what: String| LabError::Switch {
        port: format!("{port}@{netns}"),
        message: what,
    };
    netns
        .run(|| -> Result<(), LabError> {
            let mut ebpf = EbpfLoader::new()
                .override_global("VID", &vid, true)
                .load(LAB_SWITCH)
                .map_err(|e| failed(e.to_string()))?;
            tc::qdisc_add_clsact(port).map_err(|e| failed(format!("adding clsact: {e}")))?;
            for (name, direction) in [
                ("access_tag", TcAttachType::Ingress),
                ("access_untag", TcAttachType::Egress),
            ] {
                let program: &mut SchedClassifier = ebpf
                    .program_mut(name)
                    .and_then(|p| p.try_into().ok())
                    .ok_or_else(|| failed(format!("lab-switch has no classifier {name}")))?;
                program
                    .load()
                    .map_err(|e| failed(format!("loading {name}: {e}")))?;
                let link = program
                    .attach_with_options(
                        port,
                        direction,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .map_err(|e| failed(format!("attaching {name}: {e}")))?;
                // Keep the filter when this process exits.
                let link = program.take_link(link).map_err(|e| failed(e.to_string()))?;
                std::mem::forget(link);
            }
            Ok(())
        })
        .map_err(|e| failed(format!("entering the namespace: {e}")))?
}
