//! VMIs read by name for `--vmi NAMESPACE/NAME`: on a thread of its own
//! with its own runtime, so `watch`'s collector never waits for the API
//! server, and again every [`REFRESH`] for `watch` to see the migration
//! publish its target.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{objects::VMI, ClusterError};
use crate::intent::vmi::ApiReader;

/// How often the VMIs asked for are read again.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long [`ApiReader::get`] waits for the API server.
const WAIT: Duration = Duration::from_secs(30);

type Name = (String, String);
type Answer = (Name, Result<Option<Value>, String>);

/// The reader: asks the thread, caches its answers.
pub struct ApiVmis {
    asks: Sender<Name>,
    answers: Receiver<Answer>,
    latest: HashMap<Name, Result<Option<Value>, String>>,
    asked: HashSet<Name>,
}

impl ApiVmis {
    /// Starts the thread; it connects (with `kubeconfig`, else as kubectl
    /// finds one) on the first question.
    pub fn start(kubeconfig: Option<PathBuf>) -> ApiVmis {
        let (asks, asked) = mpsc::channel::<Name>();
        let (answer, answers) = mpsc::channel::<Answer>();
        std::thread::Builder::new()
            .name("vmi-reader".into())
            .spawn(move || serve(kubeconfig, asked, answer))
            .expect("a thread starts");
        ApiVmis {
            asks,
            answers,
            latest: HashMap::new(),
            asked: HashSet::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok((name, answer)) = self.answers.try_recv() {
            self.latest.insert(name, answer);
        }
    }
}

impl ApiReader for ApiVmis {
    fn get(&mut self, namespace: &str, name: &str) -> anyhow::Result<Option<Value>> {
        let wanted: Name = (namespace.into(), name.into());
        self.asks
            .send(wanted.clone())
            .map_err(|_| anyhow::anyhow!("the VMI reader stopped"))?;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (from, answer) = self.answers.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "vmi {namespace}/{name}: no answer from the API server in {} s",
                    WAIT.as_secs()
                )
            })?;
            self.latest.insert(from.clone(), answer.clone());
            if from == wanted {
                return answer.map_err(anyhow::Error::msg);
            }
        }
    }

    fn latest(&mut self, namespace: &str, name: &str) -> Option<anyhow::Result<Option<Value>>> {
        let wanted: Name = (namespace.into(), name.into());
        self.drain();
        match self.latest.get(&wanted) {
            Some(answer) => Some(answer.clone().map_err(anyhow::Error::msg)),
            None => {
                // Asked once; the thread keeps reading it from then on.
                if self.asked.insert(wanted.clone()) {
                    let _ = self.asks.send(wanted);
                }
                None
            }
        }
    }
}

/// The thread: answers each question at once, then reads every name asked
/// for again each [`REFRESH`], until the reader is dropped.
fn serve(kubeconfig: Option<PathBuf>, asked: Receiver<Name>, answer: Sender<Answer>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut client: Option<Result<kube::Client, String>> = None;
    let mut names: BTreeSet<Name> = BTreeSet::new();
    let mut next = Instant::now() + REFRESH;
    loop {
        let due: Vec<Name> =
            match asked.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(name) => {
                    names.insert(name.clone());
                    vec![name]
                }
                Err(RecvTimeoutError::Timeout) => {
                    next = Instant::now() + REFRESH;
                    names.iter().cloned().collect()
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
        for name in due {
            let result = runtime.block_on(async {
                let client = match &client {
                    Some(client) => client.clone(),
                    None => {
                        let connected = super::connect(kubeconfig.as_deref())
                            .await
                            .map_err(|e| e.to_string());
                        client = Some(connected.clone());
                        connected
                    }
                }?;
                get(&client, &name.0, &name.1)
                    .await
                    .map_err(|e| e.to_string())
            });
            if answer.send((name, result)).is_err() {
                return;
            }
        }
    }
}

/// One VMI as `oc get vmi -o json` prints it; `None` when it does not exist.
pub async fn get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ClusterError> {
    match VMI.api(client, Some(namespace)).get_opt(name).await {
        Ok(found) => Ok(found.map(|object| VMI.to_json(&object))),
        Err(error) => Err(ClusterError::api(
            format!("reading vmi {namespace}/{name}"),
            error,
        )),
    }
}
