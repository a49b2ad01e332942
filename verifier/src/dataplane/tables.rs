//! The maps user space fills (endpoints, CIDRs, slot roles) and reads
//! (flows, drop statistics, events).

use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, Queue, RingBuf};
use verifier_ebpf::{
    stat, CidrData, CidrTable, EndpointInfo, EndpointKey, FastCidr, FlowEntry, FlowKey, FlowKeyV4,
    FlowStats, NeighborKey, NeighborStats, Reason, SlotConfig, SlotRole, FAMILY_V4, FAST_CIDRS,
    MAX_FLOWS,
};

use super::{batch, from_addr, to_addr, Dataplane, DataplaneError, DataplaneStats, Role};
use crate::config::{Cidr, Endpoint};

fn slot_role(role: Role) -> SlotRole {
    match role {
        Role::Migration => SlotRole::Migration,
        Role::Bridge => SlotRole::Bridge,
        Role::Primary => SlotRole::Primary,
        Role::Other => SlotRole::Other,
    }
}

impl Dataplane {
    fn map_mut(&mut self, name: &'static str) -> &mut aya::maps::Map {
        self.ebpf
            .map_mut(name)
            .unwrap_or_else(|| panic!("the eBPF object defines {name}"))
    }

    fn map(&self, name: &'static str) -> &aya::maps::Map {
        self.ebpf
            .map(name)
            .unwrap_or_else(|| panic!("the eBPF object defines {name}"))
    }

    pub(super) fn set_slot_role(&mut self, slot: u32, role: Role) -> Result<(), DataplaneError> {
        const MAP: &str = "SLOT_CONFIG";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let mut slots = Array::<_, SlotConfig>::try_from(self.map_mut(MAP)).map_err(err)?;
        let config = SlotConfig {
            role: slot_role(role) as u8,
            _pad: [0; 7],
        };
        slots.set(slot, config, 0).map_err(err)
    }

    /// Publishes a target endpoint: packets to or from it are migration
    /// traffic of its channel.
    pub fn add_endpoint(&mut self, endpoint: &Endpoint) -> Result<(), DataplaneError> {
        let (addr, family) = to_addr(endpoint.addr.ip());
        let port = endpoint.addr.port();
        {
            const MAP: &str = "ENDPOINTS";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let mut endpoints =
                HashMap::<_, EndpointKey, EndpointInfo>::try_from(self.map_mut(MAP))
                    .map_err(err)?;
            let key = EndpointKey {
                addr,
                port,
                family,
                _pad: 0,
            };
            let info = EndpointInfo {
                channel: endpoint.channel as u8,
                reason: Reason::Endpoint as u8,
                _pad: [0; 2],
            };
            endpoints.insert(key, info, 0).map_err(err)?;
        }
        self.list_port(port)
    }

    /// Forgets the endpoints at these addresses and every flow entry to or
    /// from them (a judged migration's), so the maps do not fill up over the
    /// life of a long-running agent. The port prefilter keeps its bits: it
    /// only lets packets on to the exact lookup.
    pub fn forget(
        &mut self,
        servers: &std::collections::HashSet<std::net::SocketAddr>,
    ) -> Result<(), DataplaneError> {
        use std::net::SocketAddr;
        let touches = |key: &FlowKey| {
            servers.contains(&SocketAddr::new(from_addr(&key.src, key.family), key.sport))
                || servers.contains(&SocketAddr::new(from_addr(&key.dst, key.family), key.dport))
        };
        let gone: Vec<(u32, FlowKey)> = self
            .flow_entries()?
            .into_iter()
            .filter(|(_, entry)| touches(&entry.key))
            .map(|(index, entry)| (index, entry.key))
            .collect();
        for (index, key) in gone {
            self.free_flow(index, &key)?;
        }
        const MAP: &str = "ENDPOINTS";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let mut endpoints =
            HashMap::<_, EndpointKey, EndpointInfo>::try_from(self.map_mut(MAP)).map_err(err)?;
        for server in servers {
            let (addr, family) = to_addr(server.ip());
            let _ = endpoints.remove(&EndpointKey {
                addr,
                port: server.port(),
                family,
                _pad: 0,
            });
        }
        Ok(())
    }

    /// Sets the port's bit in the prefilter in front of the endpoint table.
    pub fn list_port(&mut self, port: u16) -> Result<(), DataplaneError> {
        const MAP: &str = "PORT_FILTER";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let mut filter = Array::<_, u64>::try_from(self.map_mut(MAP)).map_err(err)?;
        let index = u32::from(port) / 64;
        let word = filter.get(&index, 0).map_err(err)?;
        filter.set(index, word | 1 << (port % 64), 0).map_err(err)
    }

    /// Adds a migration network CIDR (or one virt-handler address as /32,
    /// /128): flows with either end inside are migration traffic. The
    /// first few are checked in place by the programs; more go to the trie.
    pub fn add_cidr(&mut self, cidr: Cidr) -> Result<(), DataplaneError> {
        let (addr, family) = to_addr(cidr.addr);
        const TABLE: &str = "CIDR_TABLE";
        let err = |source| DataplaneError::Map { map: TABLE, source };
        let mut table = {
            let array = Array::<_, CidrTable>::try_from(self.map(TABLE)).map_err(err)?;
            array.get(&0, 0).map_err(err)?
        };
        if (table.fast as usize) < FAST_CIDRS {
            let width = if family == FAMILY_V4 { 32 } else { 128 };
            let mask_bits = if cidr.prefix == 0 {
                0
            } else {
                u128::MAX << (width - u32::from(cidr.prefix))
            };
            // The address occupies the first `width` bits of the 16 bytes.
            let mask = (mask_bits << (128 - width)).to_be_bytes();
            let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
            let net: Vec<u8> = addr.iter().zip(mask).map(|(a, m)| a & m).collect();
            table.entries[table.fast as usize] = FastCidr {
                family,
                _pad: [0; 7],
                net: [word(&net[..8]), word(&net[8..])],
                mask: [word(&mask[..8]), word(&mask[8..])],
            };
            table.fast += 1;
        } else {
            const MAP: &str = "MIGRATION_CIDRS";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let mut data: CidrData = [0; 17];
            data[0] = family;
            data[1..].copy_from_slice(&addr);
            let mut trie = LpmTrie::<_, CidrData, u8>::try_from(self.map_mut(MAP)).map_err(err)?;
            trie.insert(&Key::new(8 + u32::from(cidr.prefix), data), 1, 0)
                .map_err(err)?;
            table.trie += 1;
        }
        let mut array = Array::<_, CidrTable>::try_from(self.map_mut(TABLE)).map_err(err)?;
        array.set(0, table, 0).map_err(err)
    }

    /// Every flow the programs keep, both families. An entry whose first
    /// segment is not accounted yet is left for the next read: for an
    /// instant, a CPU that lost the race to make a flow's entry holds one
    /// with the same key and nothing counted.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, DataplaneError> {
        Ok(self
            .flow_entries()?
            .into_iter()
            .map(|(_, mut entry)| {
                entry.stats.fold_shares();
                (entry.key, entry.stats)
            })
            .filter(|(_, stats)| stats.packets != 0)
            .collect())
    }

    /// The entries in use, with their indexes: those handed out so far, in
    /// a few batch calls, less the free ones.
    fn flow_entries(&self) -> Result<Vec<(u32, FlowEntry)>, DataplaneError> {
        let handed_out = {
            const MAP: &str = "NEXT_FLOW";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let next = Array::<_, u64>::try_from(self.map(MAP))
                .and_then(|array| array.get(&0, 0))
                .map_err(err)?;
            next.min(u64::from(MAX_FLOWS)) as u32
        };
        const MAP: &str = "FLOW_ENTRIES";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let aya::maps::Map::Array(data) = self.map(MAP) else {
            panic!("{MAP} is an array in the eBPF object");
        };
        let entries = batch::read_array::<FlowEntry>(data, handed_out).map_err(|io_error| {
            err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_lookup_batch",
                io_error,
            }))
        })?;
        Ok(entries
            .into_iter()
            .filter(|(_, entry)| entry.key.family != 0)
            .collect())
    }

    /// Frees the entry at `index`, which held `key` when it was read: out
    /// of the index table first, so no new segment finds it; then cleared,
    /// so no CPU's flow cache matches it; then offered to new flows. An
    /// entry the index does not name is left alone: a CPU that lost the
    /// race to make the same flow holds it for an instant, and gives it
    /// back itself.
    fn free_flow(&mut self, index: u32, key: &FlowKey) -> Result<(), DataplaneError> {
        let indexed = if key.family == FAMILY_V4 {
            const MAP: &str = "FLOW_INDEX_V4";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let mut map = HashMap::<_, FlowKeyV4, u32>::try_from(self.map_mut(MAP)).map_err(err)?;
            let v4 = FlowKeyV4::from_key(key);
            map.get(&v4, 0).ok() == Some(index) && map.remove(&v4).is_ok()
        } else {
            const MAP: &str = "FLOW_INDEX_V6";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let mut map = HashMap::<_, FlowKey, u32>::try_from(self.map_mut(MAP)).map_err(err)?;
            map.get(key, 0).ok() == Some(index) && map.remove(key).is_ok()
        };
        if !indexed {
            return Ok(());
        }
        {
            const MAP: &str = "FLOW_ENTRIES";
            let err = |source| DataplaneError::Map { map: MAP, source };
            let mut array = Array::<_, FlowEntry>::try_from(self.map_mut(MAP)).map_err(err)?;
            array.set(index, FlowEntry::default(), 0).map_err(err)?;
        }
        const MAP: &str = "FREE_FLOWS";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let mut free = Queue::<_, u32>::try_from(self.map_mut(MAP)).map_err(err)?;
        free.push(index, 0).map_err(err)
    }

    /// ARP requests and replies per IPv4 address and hook.
    pub fn neighbors(&self) -> Result<Vec<(NeighborKey, NeighborStats)>, DataplaneError> {
        const MAP: &str = "NEIGHBORS";
        let map = HashMap::<_, NeighborKey, NeighborStats>::try_from(self.map(MAP))
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        // An entry evicted between listing and reading is simply gone.
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// What the programs could not look at or keep since observation
    /// began (the classifier in place).
    pub fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
        let mut stats = self.raw_stats()?;
        stats.unclassified -= stats.unclassified.min(self.unclassified_before_ready);
        Ok(stats)
    }

    pub(super) fn raw_stats(&self) -> Result<DataplaneStats, DataplaneError> {
        const MAP: &str = "STATS";
        let err = |source| DataplaneError::Map { map: MAP, source };
        let array = PerCpuArray::<_, u64>::try_from(self.map(MAP)).map_err(err)?;
        let read = |index: u32| -> Result<u64, DataplaneError> {
            Ok(array.get(&index, 0).map_err(err)?.iter().sum())
        };
        Ok(DataplaneStats {
            not_ip: read(stat::NOT_IP)?,
            not_tcp: read(stat::NOT_TCP)?,
            truncated: read(stat::TRUNCATED)?,
            fragments: read(stat::FRAGMENT)?,
            flow_table_full: read(stat::FLOW_TABLE_FULL)?,
            events_lost: read(stat::EVENTS_LOST)?,
            endpoints_full: read(stat::ENDPOINTS_FULL)?,
            flows_classified: read(stat::CLASSIFIED)?,
            unclassified: read(stat::UNCLASSIFIED)?,
            flow_cache_misses: read(stat::FLOW_CACHE_MISSES)?,
        })
    }

    /// The ring buffer of flow events; it can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DataplaneError> {
        const MAP: &str = "EVENTS";
        let map = self.ebpf.take_map(MAP).ok_or(DataplaneError::EventsTaken)?;
        RingBuf::try_from(map).map_err(|source| DataplaneError::Map { map: MAP, source })
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    /// The flag's role and the programs' role are spelled alike in reports.
    #[test]
    fn slot_roles_carry_the_flag_spelling() {
        for role in Role::value_variants() {
            assert_eq!(slot_role(*role).name(), role.as_str());
        }
    }
}
