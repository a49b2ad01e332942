//! The user-space side of the data plane at run time: drains the event
//! ring buffer as events arrive, reads the flow map every interval into the
//! [`FlowTable`], and loads endpoints that become known while it runs (a
//! target starts listening) before their first byte.

use std::{
    collections::HashSet,
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, oneshot},
};
use verifier_ebpf::{Channel, EventKind, FlowEvent, Reason};

use super::{Collected, FlowEventRecord, FlowTable, SlotInfo};
use crate::{
    config::Endpoint,
    dataplane::{from_addr, Dataplane, DataplaneError},
    sockdiag::Sockets,
};

/// Events kept per run; the rest are counted.
const EVENT_CAP: usize = 10_000;

/// What a caller asks of a running collection.
pub enum Request {
    /// Endpoints to load, with a reply once the kernel has them.
    Load(Vec<Endpoint>, oneshot::Sender<Result<(), String>>),
    /// The connections to these endpoints, taken out of the table, and
    /// their flow entries and the endpoints out of the kernel's maps: a
    /// finished migration, handed over to be judged.
    Take(Vec<Endpoint>, oneshot::Sender<Result<FlowTable, String>>),
}

/// What `on_tick` sees after each interval's read.
pub struct Tick<'a> {
    pub table: &'a FlowTable,
    pub slots: &'a [Option<SlotInfo>],
    /// Since the collection started.
    pub at: Duration,
    /// For what else the data plane keeps: statistics, ARP, hook counters.
    pub dataplane: &'a Dataplane,
    /// Events over the cap so far.
    pub events_dropped: u64,
}

/// Runs until `stop` resolves or `on_tick` returns true, then reads
/// everything one final time. `on_tick` sees the table (and the data
/// plane) after each interval's read.
pub async fn collect(
    dataplane: &mut Dataplane,
    initial_endpoints: &[Endpoint],
    interval: Duration,
    mut requests: mpsc::Receiver<Request>,
    stop: impl Future<Output = ()>,
    mut on_tick: impl FnMut(&Tick) -> bool,
) -> Result<Collected, DataplaneError> {
    // The kernel's own RTT of the sockets, read where the interfaces are.
    let mut namespaces = Vec::new();
    for attachment in dataplane.attachments() {
        if !namespaces.contains(&attachment.spec.netns.as_ref()) {
            namespaces.push(attachment.spec.netns.as_ref());
        }
    }
    let (sockets, _) = Sockets::open(namespaces);
    let mut state = State {
        started: Instant::now(),
        started_ns: monotonic_ns(),
        sockets,
        started_at: SystemTime::now(),
        slots: slot_infos(dataplane),
        table: FlowTable::default(),
        events: Vec::new(),
        events_dropped: 0,
        endpoints: HashSet::new(),
    };
    for endpoint in initial_endpoints {
        dataplane.add_endpoint(endpoint)?;
        state.endpoints.insert(endpoint.addr);
    }
    // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged,
    // for as long as the AsyncFd owns the ring buffer.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(dataplane.take_events()?, Interest::READABLE) }
            .map_err(|e| DataplaneError::Events(e.into()))?;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut requests_open = true;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            readable = ring.readable_mut() => {
                let mut guard = readable.map_err(DataplaneError::Events)?;
                state.drain(guard.get_inner_mut(), dataplane)?;
                guard.clear_ready();
            }
            request = requests.recv(), if requests_open => match request {
                Some(Request::Load(new, reply)) => {
                    let _ = reply.send(state.add_endpoints(dataplane, &new));
                }
                Some(Request::Take(endpoints, reply)) => {
                    let _ = reply.send(state.take(dataplane, &endpoints));
                }
                None => requests_open = false,
            },
            _ = ticks.tick() => {
                // RTT samples come without wakeups: take them with each read.
                state.drain(ring.get_mut(), dataplane)?;
                let at = state.read_flows(dataplane)?;
                let tick = Tick {
                    table: &state.table,
                    slots: &state.slots,
                    at,
                    dataplane,
                    events_dropped: state.events_dropped,
                };
                if on_tick(&tick) {
                    break;
                }
            }
        }
    }
    // The final read: whatever arrived since the last tick.
    state.drain(ring.get_mut(), dataplane)?;
    let duration = state.read_flows(dataplane)?;
    Ok(Collected {
        table: state.table,
        slots: state.slots,
        events: state.events,
        events_dropped: state.events_dropped,
        stats: dataplane.stats()?,
        endpoints: state.endpoints,
        duration,
        started_at: state.started_at,
        neighbors: dataplane.neighbors()?,
    })
}

fn slot_infos(dataplane: &Dataplane) -> Vec<Option<SlotInfo>> {
    let mut slots = vec![None; verifier_ebpf::MAX_SLOTS as usize];
    for attachment in dataplane.attachments() {
        slots[attachment.slot as usize] = Some(SlotInfo::of(attachment));
    }
    slots
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the programs' timestamps
/// (`bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// What a collection run has gathered so far.
struct State {
    started: Instant,
    /// `started` on the programs' clock.
    started_ns: u64,
    /// sock_diag in every namespace with an observed interface.
    sockets: Sockets,
    started_at: SystemTime,
    slots: Vec<Option<SlotInfo>>,
    table: FlowTable,
    events: Vec<FlowEventRecord>,
    events_dropped: u64,
    endpoints: HashSet<SocketAddr>,
}

impl State {
    fn add_endpoints(&mut self, dataplane: &mut Dataplane, new: &[Endpoint]) -> Result<(), String> {
        for endpoint in new {
            dataplane
                .add_endpoint(endpoint)
                .map_err(|e| e.to_string())?;
            self.endpoints.insert(endpoint.addr);
        }
        Ok(())
    }

    fn take(
        &mut self,
        dataplane: &mut Dataplane,
        endpoints: &[Endpoint],
    ) -> Result<FlowTable, String> {
        let servers: HashSet<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
        // The kernel first: an entry read back after the table let go of
        // it would bring the connection back.
        dataplane.forget(&servers).map_err(|e| e.to_string())?;
        self.endpoints.retain(|addr| !servers.contains(addr));
        Ok(self.table.take_servers(&servers))
    }

    /// Reads the flow table into the connection table; returns when.
    fn read_flows(&mut self, dataplane: &Dataplane) -> Result<Duration, DataplaneError> {
        // Stamped with the middle of the read: on a busy host the read
        // itself can take milliseconds, and an interval's bytes are those
        // between two reads.
        let before = self.started.elapsed();
        let flows = dataplane.flows()?;
        let at = (before + self.started.elapsed()) / 2;
        let at_ms = at.as_millis() as u64;
        self.table.update(&flows, &self.endpoints, at_ms);
        // The source's end of each open connection, where it is read.
        let open: Vec<_> = self
            .table
            .connections()
            .filter(|c| c.closed_at_ms.is_none())
            .map(|c| (c.key.client, c.key.server))
            .collect();
        let sockets = self.sockets.lookup(&open);
        self.table.record_sockets(&sockets, at_ms);
        Ok(at)
    }

    fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        dataplane: &mut Dataplane,
    ) -> Result<(), DataplaneError> {
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<FlowEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a FlowEvent here; read unaligned.
            let event = unsafe { (item.as_ptr() as *const FlowEvent).read_unaligned() };
            drop(item);
            let kind = EventKind::try_from(event.kind);
            if kind == Ok(EventKind::Rtt) {
                self.table.record_rtt(
                    &event.key,
                    event.channel,
                    event.reason,
                    event.value_ns,
                    event.ts_ns.saturating_sub(self.started_ns) / 1_000_000,
                    &self.endpoints,
                );
                continue;
            }
            let reason = Reason::try_from(event.reason).ok();
            if kind == Ok(EventKind::NewFlow) && reason == Some(Reason::Signature) {
                // The program set this bit with a plain write; make sure it stuck.
                dataplane.list_port(event.key.dport)?;
            }
            if self.events.len() >= EVENT_CAP {
                self.events_dropped += 1;
                continue;
            }
            self.events.push(self.record(&event, reason));
        }
        Ok(())
    }

    fn record(&self, event: &FlowEvent, reason: Option<Reason>) -> FlowEventRecord {
        let key = &event.key;
        let slot = self.slots.get(usize::from(key.slot)).cloned().flatten();
        FlowEventRecord {
            at_ms: self.started.elapsed().as_millis() as u64,
            kind: EventKind::try_from(event.kind).map_or("unknown", EventKind::name),
            src: SocketAddr::new(from_addr(&key.src, key.family), key.sport).to_string(),
            dst: SocketAddr::new(from_addr(&key.dst, key.family), key.dport).to_string(),
            interface: slot
                .as_ref()
                .map_or_else(|| format!("slot{}", key.slot), |s| s.interface.clone()),
            netns: slot.as_ref().and_then(|s| s.netns.clone()),
            role: slot.map_or("other", |s| s.role.as_str()),
            channel: Channel::try_from(event.channel)
                .unwrap_or(Channel::Unknown)
                .name(),
            reason: reason.map_or("unknown", Reason::name),
            vlan: (event.vlan != 0).then_some(event.vlan),
        }
    }
}
