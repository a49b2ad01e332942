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
    /// `spec.domain.resources.requests.memory`; `None` when it has neither.
    pub fn of_vmi(vmi: &serde_json::Value) -> Result<Option<VmSize>, String> {
        for field in [
            "/spec/domain/memory/guest",
            "/spec/domain/resources/requests/memory",
        ] {
            let Some(text) = vmi.pointer(field).and_then(|v| v.as_str()) else {
                continue;
            };
            let name = field.trim_start_matches('/').replace('/', ".");
            let bytes = text
                .parse::<Quantity>()
                .ok()
                .and_then(|q| q.value())
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("{name} {text:?} is not a memory size"))?;
            return Ok(Some(VmSize {
                bytes,
                source: format!("VMI {name} {text}"),
            }));
        }
        Ok(None)
    }
}
