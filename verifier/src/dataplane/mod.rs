//! Loading migverify's eBPF programs, attaching them to interfaces (in any
//! network namespace) and reading what they counted.
//!
//! Attachments are made first in the tcx chain on kernels >= 6.6 and return
//! "next", so programs already there (OVN, Cilium, NetObserv) keep running and
//! keep deciding; older kernels get a clsact filter that returns "continue".
//! Dropping a [`Dataplane`] detaches everything.

pub mod netns;
pub mod privileges;
pub mod spec;
mod tables;

use std::io;

use aya::{
    maps::PerCpuArray,
    programs::{
        tc::{self, SchedClassifierLinkId, TcAttachOptions},
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf, EbpfError,
};
use verifier_ebpf::{hook_index, Direction, HookCounters, MAX_SLOTS};

pub use self::{
    netns::Netns,
    spec::{AttachSpec, Role},
    tables::{from_addr, to_addr, DataplaneStats},
};

/// The naive flow counter benchmarks compare the observers against.
#[cfg(feature = "bench")]
pub static BENCH_BASELINE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-baseline"));

/// The eBPF object built by build.rs, embedded so the binary stands alone.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/migverify"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{0}")]
    Privileges(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<EbpfError>),
    #[error("loading program {program} failed: {source}")]
    LoadProgram {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("cannot enter network namespace {netns}: {source}")]
    Netns {
        netns: Netns,
        #[source]
        source: io::Error,
    },
    #[error("no interface {iface}{}", in_netns(.netns.as_ref()))]
    NoSuchInterface { iface: String, netns: Option<Netns> },
    #[error("cannot attach to {spec}: {source}")]
    Attach {
        spec: AttachSpec,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("{spec} is given twice")]
    Duplicate { spec: AttachSpec },
    #[error("too many interfaces: migverify attaches to at most {MAX_SLOTS}")]
    TooManyInterfaces,
    #[error("the event ring buffer was already taken")]
    EventsTaken,
    #[error("reading the event ring buffer: {0}")]
    Events(#[source] io::Error),
    #[error("reading map {map} failed: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

fn in_netns(netns: Option<&Netns>) -> String {
    netns
        .map(|ns| format!(" in network namespace {ns}"))
        .unwrap_or_default()
}

/// How an attachment was made, which decides how it is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    /// clsact filter; `added_qdisc` when the clsact qdisc was ours to remove.
    Clsact {
        added_qdisc: bool,
    },
}

/// One interface migverify observes, both directions.
#[derive(Debug)]
pub struct Attachment {
    pub slot: u32,
    pub spec: AttachSpec,
    pub ifindex: u32,
    pub mode: AttachMode,
    /// The interface's MTU when it was attached: a diagnosis weighs the
    /// segment sizes seen against it.
    pub mtu: Option<u32>,
    links: [SchedClassifierLinkId; 2],
}

pub struct Dataplane {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

fn program_name(slot: u32, direction: Direction) -> String {
    match direction {
        Direction::Ingress => format!("ingress_{slot:02}"),
        Direction::Egress => format!("egress_{slot:02}"),
    }
}

fn tc_attach_type(direction: Direction) -> TcAttachType {
    match direction {
        Direction::Ingress => TcAttachType::Ingress,
        Direction::Egress => TcAttachType::Egress,
    }
}

fn uses_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

impl Dataplane {
    /// Loads the eBPF object into the kernel; nothing is attached yet.
    pub fn load() -> Result<Self, DataplaneError> {
        privileges::check().map_err(DataplaneError::Privileges)?;
        raise_memlock_limit();
        let ebpf = Ebpf::load(EBPF_OBJECT).map_err(|e| DataplaneError::Load(Box::new(e)))?;
        Ok(Dataplane {
            ebpf,
            attachments: Vec::new(),
        })
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Attaches to every interface in `specs`, or to none: on an error the
    /// ones already made are undone before it returns.
    pub fn attach_all(&mut self, specs: &[AttachSpec]) -> Result<(), DataplaneError> {
        for spec in specs {
            if let Err(error) = self.attach(spec.clone()) {
                self.detach_all();
                return Err(error);
            }
        }
        Ok(())
    }

    /// Attaches ingress and egress observers to one interface.
    pub fn attach(&mut self, spec: AttachSpec) -> Result<&Attachment, DataplaneError> {
        if self
            .attachments
            .iter()
            .any(|a| a.spec.iface == spec.iface && a.spec.netns == spec.netns)
        {
            return Err(DataplaneError::Duplicate { spec });
        }
        let slot = (0..MAX_SLOTS)
            .find(|slot| self.attachments.iter().all(|a| a.slot != *slot))
            .ok_or(DataplaneError::TooManyInterfaces)?;
        for direction in Direction::ALL {
            let name = program_name(slot, direction);
            let program = self.program_mut(&name);
            if program.fd().is_err() {
                program
                    .load()
                    .map_err(|source| DataplaneError::LoadProgram {
                        program: name,
                        source: Box::new(source),
                    })?;
            }
        }

        // The role first: the programs read it from their first packet on.
        self.set_slot_role(slot, spec.role)?;
        let tcx = uses_tcx();
        let ebpf = &mut self.ebpf;
        let attached = netns::run_in(spec.netns.as_ref(), || attach_slot(ebpf, slot, &spec, tcx))
            .map_err(|source| DataplaneError::Netns {
                netns: spec
                    .netns
                    .clone()
                    .expect("only a namespace can fail to enter"),
                source,
            })??;
        let (ifindex, mode, mtu, links) = attached;
        self.attachments.push(Attachment {
            slot,
            spec,
            ifindex,
            mode,
            mtu,
            links,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches every program, each in its own namespace. Errors are
    /// reported on stderr and do not stop the rest: teardown must finish.
    pub fn detach_all(&mut self) {
        for attachment in std::mem::take(&mut self.attachments) {
            let ebpf = &mut self.ebpf;
            let spec = attachment.spec.clone();
            let error = match netns::run_in(spec.netns.as_ref(), || detach_slot(ebpf, attachment)) {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            eprintln!("migverify: detaching from {spec}: {error}");
        }
    }

    /// Packets and bytes seen at one attachment, summed over CPUs, in
    /// `[ingress, egress]` order.
    pub fn hook_counters(&self, slot: u32) -> Result<[HookCounters; 2], DataplaneError> {
        const MAP: &str = "HOOK_COUNTERS";
        let map = self
            .ebpf
            .map(MAP)
            .expect("the object defines HOOK_COUNTERS");
        let array = PerCpuArray::<_, HookCounters>::try_from(map)
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        let read = |direction| -> Result<HookCounters, DataplaneError> {
            let per_cpu = array
                .get(&hook_index(slot, direction), 0)
                .map_err(|source| DataplaneError::Map { map: MAP, source })?;
            Ok(per_cpu
                .iter()
                .fold(HookCounters::default(), |sum, c| HookCounters {
                    packets: sum.packets + c.packets,
                    bytes: sum.bytes + c.bytes,
                }))
        };
        Ok([read(Direction::Ingress)?, read(Direction::Egress)?])
    }

    /// A loaded-or-not program of the object by name (also used by benchmarks
    /// and program tests through `BPF_PROG_TEST_RUN`).
    pub fn program_mut(&mut self, name: &str) -> &mut SchedClassifier {
        classifier(&mut self.ebpf, name)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
    }
}

type Attached = (u32, AttachMode, Option<u32>, [SchedClassifierLinkId; 2]);

/// Runs inside the interface's namespace.
fn attach_slot(
    ebpf: &mut Ebpf,
    slot: u32,
    spec: &AttachSpec,
    tcx: bool,
) -> Result<Attached, DataplaneError> {
    let ifindex = ifindex(&spec.iface).ok_or_else(|| DataplaneError::NoSuchInterface {
        iface: spec.iface.clone(),
        netns: spec.netns.clone(),
    })?;
    let attach_error = |source| DataplaneError::Attach {
        spec: spec.clone(),
        source: Box::new(source),
    };
    let mode = if tcx {
        AttachMode::Tcx
    } else {
        let added_qdisc = match tc::qdisc_add_clsact(&spec.iface) {
            Ok(()) => true,
            Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(attach_error(ProgramError::from(e))),
        };
        AttachMode::Clsact { added_qdisc }
    };
    let mut links = Vec::with_capacity(2);
    for direction in Direction::ALL {
        let program = classifier(ebpf, &program_name(slot, direction));
        let attach_type = tc_attach_type(direction);
        // First in the chain, so we see what arrives before anyone else
        // decides; we return "next", so everyone after us still runs.
        let result = if tcx {
            program.attach_with_options(
                &spec.iface,
                attach_type,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
        } else {
            program.attach(&spec.iface, attach_type)
        };
        match result {
            Ok(link) => links.push(link),
            Err(source) => {
                for (direction, link) in Direction::ALL.into_iter().zip(links) {
                    let _ = classifier(ebpf, &program_name(slot, direction)).detach(link);
                }
                return Err(attach_error(source));
            }
        }
    }
    let links: [SchedClassifierLinkId; 2] = links.try_into().expect("one link per direction");
    Ok((ifindex, mode, mtu(&spec.iface), links))
}

/// Runs inside the interface's namespace.
fn detach_slot(ebpf: &mut Ebpf, attachment: Attachment) -> Result<(), ProgramError> {
    let mut first_error = None;
    for (direction, link) in Direction::ALL.into_iter().zip(attachment.links) {
        let program = classifier(ebpf, &program_name(attachment.slot, direction));
        if let Err(e) = program.detach(link) {
            first_error.get_or_insert(e);
        }
    }
    if attachment.mode == (AttachMode::Clsact { added_qdisc: true }) {
        // aya has no call to remove a qdisc; tc runs in this thread's namespace.
        let _ = std::process::Command::new("tc")
            .args(["qdisc", "del", "dev", &attachment.spec.iface, "clsact"])
            .status();
    }
    first_error.map_or(Ok(()), Err)
}

/// A program of the embedded object; its absence is a build defect, not an input error.
fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .unwrap_or_else(|| panic!("the eBPF object has no program {name}"))
        .try_into()
        .unwrap_or_else(|_| panic!("program {name} is not a TC classifier"))
}

fn ifindex(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The MTU of `iface` in this thread's namespace (a socket belongs to the
/// namespace it was made in; /sys shows the mount's, not the thread's).
fn mtu(iface: &str) -> Option<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: plain syscall; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid ifreq.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.len() >= request.ifr_name.len() {
        return None;
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes the MTU into `request`.
    // The request's type is c_ulong with glibc, c_int with musl (the static build).
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU as _, &mut request) } != 0 {
        return None;
    }
    // SAFETY: the kernel filled the MTU member.
    u32::try_from(unsafe { request.ifr_ifru.ifru_mtu }).ok()
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct; failure only matters on old kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
