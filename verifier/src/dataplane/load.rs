//! The eBPF object loaded into the kernel, attached to interfaces (in any
//! network namespace) and detached again: everything that needs aya.

use std::io;

use aya::{
    maps::{PerCpuArray, ProgramArray},
    programs::{
        tc::{self, SchedClassifierLinkId, TcAttachOptions},
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf, EbpfError, EbpfLoader,
};
use verifier_ebpf::{hook_index, Direction, HookCounters, HookState, HOOK_ENTRIES, MAX_SLOTS};

use super::{netns, privileges, AttachMode, AttachSpec, Hooks, InterfaceCount, Netns};

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
    pub(super) ebpf: Ebpf,
    pub(super) attachments: Vec<Attachment>,
    /// Whether the classifier is in place; see [`Dataplane::load_classifier`].
    pub(super) classifier_ready: bool,
    /// Packets the hooks counted before the classifier was in place: they
    /// arrived before observation began, and are not a loss.
    pub(super) unclassified_before_ready: u64,
    hooks: Hooks,
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
    ///
    /// The shared classifier, the one program the kernel takes long to
    /// verify, is loaded by the first [`Dataplane::attach_all`], in parallel
    /// with the attachments, or by [`Dataplane::load_classifier`].
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_object(EBPF_OBJECT)
    }

    /// [`Dataplane::load`] with another build of the programs: benchmarks
    /// compare variants of them in one run.
    #[cfg(feature = "bench")]
    pub fn load_variant(object: &[u8]) -> Result<Self, DataplaneError> {
        Self::load_object(object)
    }

    fn load_object(object: &[u8]) -> Result<Self, DataplaneError> {
        privileges::check().map_err(DataplaneError::Privileges)?;
        raise_memlock_limit();
        // No CO-RE relocations here: the kernel's BTF (megabytes, parsed)
        // is dropped at once rather than kept and parsed again by `Ebpf::load`.
        let ebpf = EbpfLoader::new()
            .btf(None)
            .load(object)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        Ok(Dataplane {
            ebpf,
            attachments: Vec::new(),
            classifier_ready: false,
            unclassified_before_ready: 0,
            hooks: Hooks::Auto,
        })
    }

    /// Loads the classifier and puts it in place, if not done yet: what
    /// running the hooks' programs through `BPF_PROG_TEST_RUN` without
    /// attaching them needs.
    pub fn load_classifier(&mut self) -> Result<(), DataplaneError> {
        if !self.classifier_ready {
            let program = classifier(&mut self.ebpf, CLASSIFIER_PROGRAM);
            load_classifier(program)?;
            self.install_classifier()?;
        }
        Ok(())
    }

    /// Puts the loaded classifier where the hooks' programs tail-call it.
    fn install_classifier(&mut self) -> Result<(), DataplaneError> {
        const MAP: &str = "CLASSIFIER";
        let fd = classifier(&mut self.ebpf, CLASSIFIER_PROGRAM)
            .fd()
            .expect("loaded by the caller")
            .try_clone()
            .map_err(|e| DataplaneError::LoadProgram {
                program: CLASSIFIER_PROGRAM.into(),
                source: Box::new(ProgramError::IOError(e)),
            })?;
        let map = self
            .ebpf
            .map_mut(MAP)
            .expect("the object defines CLASSIFIER");
        let mut array = ProgramArray::try_from(map)
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        array
            .set(verifier_ebpf::CLASSIFIER_INDEX, &fd, 0)
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        self.classifier_ready = true;
        self.unclassified_before_ready = self.raw_stats()?.unclassified;
        Ok(())
    }

    /// The hook the next attachments use.
    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Attaches to every interface in `specs`, or to none of them: on an
    /// error the ones this call made are undone before it returns.
    ///
    /// The attachments are made in parallel, one thread per interface: each
    /// tcx link waits out an RCU grace period in the kernel (10-20 ms), and
    /// concurrent waits overlap.
    pub fn attach_all(&mut self, specs: &[AttachSpec]) -> Result<(), DataplaneError> {
        let slots = self.prepare_slots(specs)?;
        let tcx = match self.hooks {
            Hooks::Auto => uses_tcx(),
            Hooks::Tcx => true,
            Hooks::Clsact => false,
        };
        let (classifier, mut programs) =
            split_programs(&mut self.ebpf, &slots, !self.classifier_ready);
        let (loaded, results) = std::thread::scope(|scope| {
            // The hooks count from their first packet; what they pass on
            // before the classifier is in place goes unclassified (counted).
            let loading = classifier.map(|program| scope.spawn(move || load_classifier(program)));
            let workers: Vec<_> = specs
                .iter()
                .zip(programs.iter_mut())
                .map(|(spec, programs)| {
                    scope.spawn(move || {
                        netns::run_in(spec.netns.as_ref(), || attach_slot(programs, spec, tcx))
                            .map_err(|source| DataplaneError::Netns {
                                netns: spec
                                    .netns
                                    .clone()
                                    .expect("only a namespace can fail to enter"),
                                source,
                            })?
                    })
                })
                .collect();
            let results: Vec<Result<Attached, DataplaneError>> =
                workers.into_iter().map(join).collect();
            (loading.map(join), results)
        });
        let before = self.attachments.len();
        let mut first_error = match loaded {
            Some(Ok(())) => self.install_classifier().err(),
            Some(Err(error)) => Some(error),
            None => None,
        };
        for ((spec, slot), result) in specs.iter().zip(slots).zip(results) {
            match result {
                Ok((ifindex, mode, mtu, links)) => self.attachments.push(Attachment {
                    slot,
                    spec: spec.clone(),
                    ifindex,
                    mode,
                    mtu,
                    links,
                }),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => {
                let made = self.attachments.split_off(before);
                self.detach(made);
                Err(error)
            }
        }
    }

    /// Attaches ingress and egress observers to one interface.
    pub fn attach(&mut self, spec: AttachSpec) -> Result<&Attachment, DataplaneError> {
        self.attach_all(std::slice::from_ref(&spec))?;
        Ok(self.attachments.last().expect("just attached"))
    }

    /// Checks `specs` against what is attached, gives each a free slot,
    /// loads the slot's programs and writes its role (which the programs
    /// read from their first packet on).
    fn prepare_slots(&mut self, specs: &[AttachSpec]) -> Result<Vec<u32>, DataplaneError> {
        let mut slots: Vec<u32> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let taken = self
                .attachments
                .iter()
                .map(|a| &a.spec)
                .chain(&specs[..i])
                .any(|other| other.iface == spec.iface && other.netns == spec.netns);
            if taken {
                return Err(DataplaneError::Duplicate { spec: spec.clone() });
            }
            let slot = (0..MAX_SLOTS)
                .find(|slot| {
                    self.attachments.iter().all(|a| a.slot != *slot) && !slots.contains(slot)
                })
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
            self.set_slot_role(slot, spec.role)?;
            slots.push(slot);
        }
        Ok(slots)
    }

    /// Detaches every program, each in its own namespace. Errors are
    /// reported on stderr and do not stop the rest: teardown must finish.
    pub fn detach_all(&mut self) {
        let all = std::mem::take(&mut self.attachments);
        self.detach(all);
    }

    fn detach(&mut self, attachments: Vec<Attachment>) {
        let slots: Vec<u32> = attachments.iter().map(|a| a.slot).collect();
        let (_, mut programs) = split_programs(&mut self.ebpf, &slots, false);
        for (attachment, programs) in attachments.into_iter().zip(programs.iter_mut()) {
            let spec = attachment.spec.clone();
            let error =
                match netns::run_in(spec.netns.as_ref(), || detach_slot(programs, attachment)) {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
            eprintln!("migverify: detaching from {spec}: {error}");
        }
    }

    /// What every attachment has counted so far, in attachment order.
    pub fn interface_counts(&self) -> Result<Vec<InterfaceCount>, DataplaneError> {
        self.attachments
            .iter()
            .map(|a| {
                let [rx, tx] = self.hook_counters(a.slot)?;
                Ok(InterfaceCount {
                    iface: a.spec.iface.clone(),
                    netns: a.spec.netns.as_ref().map(ToString::to_string),
                    role: a.spec.role,
                    mode: a.mode.as_str(),
                    rx_packets: rx.packets,
                    rx_bytes: rx.bytes,
                    tx_packets: tx.packets,
                    tx_bytes: tx.bytes,
                })
            })
            .collect()
    }

    /// Packets and bytes seen at one attachment, summed over CPUs, in
    /// `[ingress, egress]` order.
    pub fn hook_counters(&self, slot: u32) -> Result<[HookCounters; 2], DataplaneError> {
        const MAP: &str = "HOOK_STATE";
        let map = self.ebpf.map(MAP).expect("the object defines HOOK_STATE");
        let array = PerCpuArray::<_, [HookState; HOOK_ENTRIES as usize]>::try_from(map)
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        let per_cpu = array
            .get(&0, 0)
            .map_err(|source| DataplaneError::Map { map: MAP, source })?;
        let read = |direction| {
            let hook = hook_index(slot, direction) as usize;
            per_cpu
                .iter()
                .fold(HookCounters::default(), |sum, cpu| HookCounters {
                    packets: sum.packets + cpu[hook].counters.packets,
                    bytes: sum.bytes + cpu[hook].counters.bytes,
                })
        };
        Ok([read(Direction::Ingress), read(Direction::Egress)])
    }

    /// Whether the object has a program of this name.
    pub fn has_program(&self, name: &str) -> bool {
        self.ebpf.program(name).is_some()
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

/// The ingress and egress programs of a slot.
type SlotPrograms<'a> = [&'a mut SchedClassifier; 2];

/// The programs of each of `slots`, in order, and the classifier when
/// `with_classifier`: borrowed apart so each can go to a thread of its own.
fn split_programs<'a>(
    ebpf: &'a mut Ebpf,
    slots: &[u32],
    with_classifier: bool,
) -> (Option<&'a mut SchedClassifier>, Vec<SlotPrograms<'a>>) {
    let mut by_name: std::collections::HashMap<&str, &mut SchedClassifier> = ebpf
        .programs_mut()
        .filter_map(|(name, program)| Some((name, program.try_into().ok()?)))
        .collect();
    let classifier = with_classifier.then(|| {
        by_name
            .remove(CLASSIFIER_PROGRAM)
            .expect("the eBPF object has the classifier")
    });
    let slots = slots
        .iter()
        .map(|&slot| {
            Direction::ALL.map(|direction| {
                let name = program_name(slot, direction);
                by_name
                    .remove(name.as_str())
                    .unwrap_or_else(|| panic!("the eBPF object has no program {name}"))
            })
        })
        .collect();
    (classifier, slots)
}

/// Runs inside the interface's namespace.
fn attach_slot(
    programs: &mut SlotPrograms<'_>,
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
    for (direction, program) in Direction::ALL.into_iter().zip(programs.iter_mut()) {
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
                for (program, link) in programs.iter_mut().zip(links) {
                    let _ = program.detach(link);
                }
                if mode == (AttachMode::Clsact { added_qdisc: true }) {
                    // Ours, and now empty: nothing is left behind.
                    let _ = crate::checks::netlink::delete_clsact(ifindex);
                }
                return Err(attach_error(source));
            }
        }
    }
    let links: [SchedClassifierLinkId; 2] = links.try_into().expect("one link per direction");
    Ok((ifindex, mode, mtu(&spec.iface), links))
}

/// Runs inside the interface's namespace.
fn detach_slot(
    programs: &mut SlotPrograms<'_>,
    attachment: Attachment,
) -> Result<(), ProgramError> {
    let mut first_error = None;
    for (program, link) in programs.iter_mut().zip(attachment.links) {
        if let Err(e) = program.detach(link) {
            first_error.get_or_insert(e);
        }
    }
    if attachment.mode == (AttachMode::Clsact { added_qdisc: true }) {
        // aya has no call to remove a qdisc, and the image has no `tc`:
        // rtnetlink, in this thread's namespace. A qdisc already gone
        // (its interface went) is no error.
        match crate::checks::netlink::delete_clsact(attachment.ifindex) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENODEV | libc::ENOENT | libc::EINVAL)
                ) => {}
            Err(e) => {
                first_error.get_or_insert(ProgramError::IOError(e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A scoped thread's result; its panic goes on in the caller.
fn join<T>(worker: std::thread::ScopedJoinHandle<'_, T>) -> T {
    worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The classifier every hook's program tail-calls.
const CLASSIFIER_PROGRAM: &str = "classify_packet";

/// Has the kernel verify the classifier (the long part of starting up).
fn load_classifier(program: &mut SchedClassifier) -> Result<(), DataplaneError> {
    program
        .load()
        .map_err(|source| DataplaneError::LoadProgram {
            program: CLASSIFIER_PROGRAM.into(),
            source: Box::new(source),
        })
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
