//! Loads the lab's VLAN access-port program (verifier-ebpf's `lab-switch`)
//! onto a node-side port, and reads back the VLAN a port applies. Attached
//! as clsact filters and left in the kernel when this process exits: the
//! port lives as long as its namespace, which `lab down` deletes.

use aya::{
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        SchedClassifier, TcAttachType,
    },
    EbpfLoader,
};

use super::{cmd::run, LabError};
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

/// The VLAN the access-port program on `port` applies, as the kernel holds
/// it: the program attached to the port's egress (`tc filter show`), its
/// read-only data map, the VID in it. `None`: no access-port program there
/// (the port tags nothing).
pub fn applied_vid(netns: &Netns, port: &str) -> Result<Option<u16>, LabError> {
    let failed = |message: String| LabError::Switch {
        port: format!("{port}@{netns}"),
        message,
    };
    let ns = netns.to_string();
    let filters = run(&[
        "tc", "-n", &ns, "-j", "filter", "show", "dev", port, "egress",
    ])?;
    let filters: serde_json::Value = serde_json::from_str(filters.trim())
        .or_else(|_| serde_json::from_str("[]"))
        .map_err(|e: serde_json::Error| failed(e.to_string()))?;
    let Some(id) = filters.as_array().into_iter().flatten().find_map(|f| {
        let prog = &f["options"]["prog"];
        (prog["name"] == "access_untag")
            .then(|| prog["id"].as_u64())
            .flatten()
    }) else {
        return Ok(None);
    };
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| u64::from(p.id()) == id)
        .ok_or_else(|| failed(format!("program {id} is gone")))?;
    let maps = program
        .map_ids()
        .map_err(|e| failed(e.to_string()))?
        .unwrap_or_default();
    for map in maps {
        let info = aya::maps::MapInfo::from_id(map).map_err(|e| failed(e.to_string()))?;
        if !info.name_as_str().unwrap_or_default().contains("rodata") {
            continue;
        }
        let data = aya::maps::MapData::from_id(map).map_err(|e| failed(e.to_string()))?;
        let array: aya::maps::Array<_, u16> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data))
                .map_err(|e| failed(format!("reading the program's data: {e}")))?;
        let vid = array.get(&0, 0).map_err(|e| failed(e.to_string()))?;
        return Ok(Some(vid));
    }
    Err(failed(format!("program {id} has no read-only data")))
}
