//! The size a migration's budget is computed from.

use serde::Serialize;

use crate::config::quantity::Quantity;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmSize {
    pub bytes: u64,
    /// Where it came from: a VMI's field, a flag, or the named assumption
    /// that the data moved is the size.
    pub source: String,
}

impl VmSize {
    /// A size given as a flag (`--vm-memory 16Gi`).
    pub fn from_flag(flag: &str, quantity: &Quantity) -> Result<VmSize, String> {
        let bytes = quantity
            .value()
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| format!("{flag} {quantity}: not a size in bytes"))?;
        Ok(VmSize {
            bytes,
            source: format!("{flag} {quantity}"),
        })
    }

    /// The size KubeVirt budgets a VMI by: `spec.domain.memory.guest`, else
    /// `spec.domain.resources.requests.memory`, plus, for a block migration
    /// (`status.migrationMethod: BlockMigration`), the disks that move with
    /// it; `None` when it has no memory size.
    ///
    /// KubeVirt (`getVMIMigrationDataSize`) adds the size of the files in
    /// virt-launcher's ephemeral disk folder, where each `emptyDisk` is an
    /// image of its `capacity`; the sum is rounded up as a whole (see
    /// [`super::budget::size_units`]), not each part on its own.
    pub fn of_vmi(vmi: &serde_json::Value) -> Result<Option<VmSize>, String> {
        for field in [
            "/spec/domain/memory/guest",
            "/spec/domain/resources/requests/memory",
        ] {
            let Some(text) = vmi.pointer(field).and_then(|v| v.as_str()) else {
                continue;
            };
            let name = field.trim_start_matches('/').replace('/', ".");
            let bytes = quantity_bytes(text)
                .ok_or_else(|| format!("{name} {text:?} is not a memory size"))?;
            let mut size = VmSize {
                bytes,
                source: format!("VMI {name} {text}"),
            };
            if vmi
                .pointer("/status/migrationMethod")
                .and_then(|m| m.as_str())
                == Some("BlockMigration")
            {
                for (disk, capacity, disk_bytes) in block_migrated_disks(vmi)? {
                    size.bytes = size.bytes.saturating_add(disk_bytes);
                    size.source += &format!(" + emptyDisk {disk} {capacity}");
                }
                size.source += " (BlockMigration)";
            }
            return Ok(Some(size));
        }
        Ok(None)
    }
}

fn quantity_bytes(text: &str) -> Option<u64> {
    text.parse::<Quantity>()
        .ok()
        .and_then(|q| q.value())
        .and_then(|v| u64::try_from(v).ok())
}

/// The disks a block migration copies: every `emptyDisk` volume, by name,
/// with its capacity as written and in bytes.
fn block_migrated_disks(vmi: &serde_json::Value) -> Result<Vec<(String, String, u64)>, String> {
    let volumes = vmi
        .pointer("/spec/volumes")
        .and_then(|v| v.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut disks = Vec::new();
    for (index, volume) in volumes.iter().enumerate() {
        let Some(capacity) = volume.pointer("/emptyDisk/capacity") else {
            continue;
        };
        let name = volume["name"]
            .as_str()
            .map_or_else(|| format!("spec.volumes[{index}]"), str::to_string);
        let text = capacity.as_str().unwrap_or_default();
        let bytes = quantity_bytes(text).ok_or_else(|| {
            format!("spec.volumes[{index}].emptyDisk.capacity {capacity} is not a size")
        })?;
        disks.push((name, text.to_string(), bytes));
    }
    Ok(disks)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::intent::Budget;

    fn vmi(memory: &str, disk: Option<&str>, method: &str) -> serde_json::Value {
        json!({
            "kind": "VirtualMachineInstance",
            "spec": {
                "domain": { "memory": { "guest": memory } },
                "volumes": disk.map(|capacity| vec![json!({ "name": "scratch", "emptyDisk": { "capacity": capacity } })]),
            },
            "status": { "migrationMethod": method },
        })
    }

    #[test]
    fn a_block_migration_budgets_memory_and_disk_rounded_up_together() {
        // 896Mi = 939,524,096 bytes: alone one unit of 10^9 bytes, 150 s at
        // the default 150 s per unit.
        let memory = VmSize::of_vmi(&vmi("896Mi", Some("64Mi"), "LiveMigration"))
            .unwrap()
            .unwrap();
        assert_eq!(memory.bytes, 939_524_096);
        assert_eq!(Budget::new(150, memory.bytes).completion_timeout_s, 150);
        // With the 64Mi disk (67,108,864 bytes) moving too: 1,006,632,960
        // bytes, over 10^9, so two units and 300 s.
        let both = VmSize::of_vmi(&vmi("896Mi", Some("64Mi"), "BlockMigration"))
            .unwrap()
            .unwrap();
        assert_eq!(both.bytes, 939_524_096 + 67_108_864);
        assert_eq!(both.bytes, 1_006_632_960);
        let budget = Budget::new(150, both.bytes);
        assert_eq!((budget.size_units, budget.completion_timeout_s), (2, 300));
        assert_eq!(
            both.source,
            "VMI spec.domain.memory.guest 896Mi + emptyDisk scratch 64Mi (BlockMigration)"
        );
        // The lab's drain VM: 256Mi + 64Mi = 335,544,320 bytes, one unit.
        let lab = VmSize::of_vmi(&vmi("256Mi", Some("64Mi"), "BlockMigration"))
            .unwrap()
            .unwrap();
        assert_eq!(lab.bytes, 335_544_320);
        assert_eq!(Budget::new(150, lab.bytes).size_units, 1);
    }

    #[test]
    fn a_disk_that_is_no_size_is_an_error() {
        let bad = vmi("1Gi", Some("lots"), "BlockMigration");
        let error = VmSize::of_vmi(&bad).unwrap_err();
        assert!(error.contains("emptyDisk.capacity"), "{error}");
        // Not a block migration: the disk is not read at all.
        assert!(VmSize::of_vmi(&vmi("1Gi", Some("lots"), "LiveMigration")).is_ok());
    }
}
