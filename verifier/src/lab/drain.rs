//! A node drain in the lab: several VMs leave node A for node B the way
//! KubeVirt evacuates a node. Every VM is marked for evacuation at once;
//! at most `parallel` migrate at the same time (KubeVirt's
//! `parallelOutboundMigrationsPerNode`), the rest wait in the queue and
//! each starts as soon as an earlier one is over. Each VM is its own QEMU
//! pair with its own target ports, all on node B's one migration address,
//! and its own VMI document; the lab keeps them as one List in
//! `/run/mvlab/vmi.json`, queued VMs with `status.evacuationNodeName` and
//! no `migrationState` yet.

use std::{collections::VecDeque, fs, path::Path, sync::mpsc, time::Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    config::{Guest, LabConfig},
    guest,
    qemu::{self, QemuOutcome, Vm},
    vmi::{self, State},
    LabError, Progress,
};

/// One VM of a drain, from the queue to the end of its migration. Times
/// are milliseconds since the drain started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VmOutcome {
    /// The migration id its endpoints carry (`default/mvlab-vm2`).
    pub id: String,
    pub queued_ms: u64,
    /// When its migration started (its target QEMU).
    pub started_ms: u64,
    /// When its target listened on every port and its VMI was published.
    pub listening_ms: Option<u64>,
    pub finished_ms: u64,
    /// How long it waited in the queue for a free slot.
    pub waited_ms: u64,
    /// The migration whose end gave it its slot.
    pub waited_for: Option<String>,
    /// QEMU's own account; `None` when the migration could not run.
    pub qemu: Option<QemuOutcome>,
    /// Why it could not run.
    pub error: Option<String>,
}

impl VmOutcome {
    pub fn completed(&self) -> bool {
        self.qemu.as_ref().is_some_and(|q| q.status == "completed")
    }
}

/// The whole drain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrainOutcome {
    /// At most this many at once.
    pub parallel: u64,
    /// The most that were migrating at once.
    pub peak_parallel: usize,
    pub total_time_ms: u64,
    /// In the order they were queued.
    pub migrations: Vec<VmOutcome>,
    /// The VMIs as they stand at the end (a List).
    pub vmi: Value,
}

impl DrainOutcome {
    /// `completed` when every migration completed, else the first other
    /// status (`error` for one that could not run).
    pub fn status(&self) -> String {
        self.migrations
            .iter()
            .find(|m| !m.completed())
            .map_or("completed".into(), |m| {
                m.qemu.as_ref().map_or("error".into(), |q| q.status.clone())
            })
    }
}

enum Event {
    /// A VM's target listens: its document, and where to say it is known.
    Listening(usize, Value, mpsc::Sender<Result<(), String>>),
    Done(usize, Box<Result<QemuOutcome, LabError>>),
}

/// Drains `config.vms` VMs, `config.parallel` at a time. `listening` is
/// called with each VM's VMI document once its target listens, before its
/// source sends a byte (from this thread, one at a time).
pub fn run(
    config: &LabConfig,
    state: &Path,
    memory_dir: &Path,
    progress: Progress,
    listening: &mut dyn FnMut(&Value) -> Result<(), LabError>,
) -> Result<DrainOutcome, LabError> {
    if let Some(problem) = config.guest_problem() {
        return Err(LabError::Io(format!("lab configuration: {problem}")));
    }
    // What the VMs share is made once, before they run side by side.
    if config.tls && !state.join("pki/server/server-cert.pem").exists() {
        progress("creating TLS credentials (CA, server and client certificates)");
        crate::pki::write_mutual(&state.join("pki"), &[config.target_address()])?;
    }
    if matches!(config.guest, Guest::Running { .. }) {
        guest::prepare(state, progress)?;
    }
    let vms: Vec<Vm> = (1..=config.vms.max(1)).map(Vm::numbered).collect();
    // Every VM exists before the drain starts: its memory and disk too.
    for vm in &vms {
        qemu::prepare_files(config, vm, memory_dir, &|line| {
            progress(&format!("{}: {line}", vm.name))
        })?;
    }
    let at_once = config.parallel.max(1) as usize;
    let mut documents: Vec<Value> = vms
        .iter()
        .map(|vm| vmi::document(config, &vm.name, State::Queued))
        .collect();
    let mut outcomes: Vec<VmOutcome> = vms
        .iter()
        .map(|vm| VmOutcome {
            id: vm.id(),
            queued_ms: 0,
            started_ms: 0,
            listening_ms: None,
            finished_ms: 0,
            waited_ms: 0,
            waited_for: None,
            qemu: None,
            error: None,
        })
        .collect();
    publish(state, &documents)?;
    progress(&format!(
        "draining node-a: {} VMs to node-b, at most {at_once} at once (parallelOutboundMigrationsPerNode)",
        vms.len()
    ));
    let started = Instant::now();
    let since = || started.elapsed().as_millis() as u64;
    let mut queue: VecDeque<usize> = (0..vms.len()).collect();
    let (mut running, mut peak) = (0usize, 0usize);
    let mut freed_by: Option<usize> = None;
    std::thread::scope(|scope| -> Result<(), LabError> {
        let (events, inbox) = mpsc::channel::<Event>();
        loop {
            while running < at_once {
                let Some(index) = queue.pop_front() else {
                    break;
                };
                let outcome = &mut outcomes[index];
                outcome.started_ms = since();
                outcome.waited_ms = outcome.started_ms - outcome.queued_ms;
                outcome.waited_for = freed_by.map(|i| vms[i].id());
                if let Some(waited_for) = &outcome.waited_for {
                    progress(&format!(
                        "{}: leaves the queue after {:.1} s, {waited_for} being done",
                        vms[index].name,
                        outcome.waited_ms as f64 / 1000.0
                    ));
                }
                running += 1;
                peak = peak.max(running);
                let (events, vm) = (events.clone(), vms[index].clone());
                scope.spawn(move || {
                    let prefixed = |line: &str| progress(&format!("{}: {line}", vm.name));
                    let result =
                        qemu::migrate(config, &vm, state, memory_dir, &prefixed, &mut |document| {
                            let (reply, answer) = mpsc::channel();
                            let stopped = || LabError::Io("the drain stopped".into());
                            events
                                .send(Event::Listening(index, document.clone(), reply))
                                .map_err(|_| stopped())?;
                            answer.recv().map_err(|_| stopped())?.map_err(LabError::Io)
                        });
                    let _ = events.send(Event::Done(index, Box::new(result)));
                });
            }
            if running == 0 {
                return Ok(());
            }
            match inbox.recv().expect("a running migration reports") {
                Event::Listening(index, document, reply) => {
                    outcomes[index].listening_ms = Some(since());
                    documents[index] = document.clone();
                    let known = publish(state, &documents).and_then(|()| listening(&document));
                    let _ = reply.send(known.map_err(|e| e.to_string()));
                }
                Event::Done(index, result) => {
                    running -= 1;
                    freed_by = Some(index);
                    let outcome = &mut outcomes[index];
                    outcome.finished_ms = since();
                    let completed = match *result {
                        Ok(qemu) => {
                            let completed = qemu.status == "completed";
                            outcome.qemu = Some(qemu);
                            completed
                        }
                        Err(error) => {
                            progress(&format!("{}: {error}", vms[index].name));
                            outcome.error = Some(error.to_string());
                            false
                        }
                    };
                    vmi::finished(&mut documents[index], completed);
                    publish(state, &documents)?;
                }
            }
        }
    })?;
    Ok(DrainOutcome {
        parallel: at_once as u64,
        peak_parallel: peak,
        total_time_ms: since(),
        migrations: outcomes,
        vmi: vmi::list(documents),
    })
}

/// Writes the VMIs as they stand to `vmi.json` (replaced whole, so a
/// reader never sees half a file).
fn publish(state: &Path, documents: &[Value]) -> Result<(), LabError> {
    let path = state.join("vmi.json");
    let partial = state.join("vmi.json.new");
    let json = serde_json::to_vec_pretty(&vmi::list(documents.to_vec())).expect("JSON");
    fs::write(&partial, json)
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(|e| LabError::Io(format!("writing {}: {e}", path.display())))
}
