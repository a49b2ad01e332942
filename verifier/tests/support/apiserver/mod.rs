//! A Kubernetes API server that replays objects: real HTTP/1.1 on
//! 127.0.0.1, so kube-rs (and anything else) talks to it exactly as to a
//! cluster, with no mocking inside the client.
//!
//! It keeps a store of objects by API path, each change stamped with a
//! resourceVersion in one log, as the real server does:
//!
//! - `GET` of a collection lists (label and field selectors, `limit` and
//!   `continue` pages), cluster-wide or in a namespace;
//! - `GET ...?watch=true` streams chunked JSON lines (`ADDED`, `MODIFIED`,
//!   `DELETED`) from the given resourceVersion (or the current objects as
//!   `ADDED` first), including an object leaving or entering the selection
//!   as it changes, until `timeoutSeconds`; a version older than the log
//!   (after [`ApiServer::compact`]) gets the `410 Gone` error event;
//! - `GET` of one object, `POST` (create; `generateName`), `PUT` (with the
//!   resourceVersion check), `PATCH` (merge, strategic merge as merge, and
//!   JSON patch) and `DELETE`, every write recorded for the test to read;
//! - `GET .../pods/NAME/log`: the text the test set with [`ApiServer::set_log`];
//! - the test changes objects with [`ApiServer::apply`] and
//!   [`ApiServer::delete`], which open watches see at once.
//!
//! Objects are plain JSON, shaped as KubeVirt and Kubernetes serve them.
#![allow(dead_code)] // each test binary uses its own subset

mod http;
mod rest;
mod review;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub use self::rest::plural;
use self::{http::*, rest::*};

/// A write the server received.
#[derive(Clone, Debug)]
pub struct Write {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub content_type: String,
    pub body: Value,
    /// The status code answered.
    pub status: u16,
}

/// One change in the log: the object after it (before it, for a deletion).
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    /// `prefix/plural`, e.g. `/apis/kubevirt.io/v1/virtualmachineinstances`.
    collection: String,
    namespace: Option<String>,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Oldest version a watch may start from; older ones are gone (410).
    compacted: u64,
    /// How many times the log was compacted: open watches end with 410.
    compactions: u64,
    /// (collection, namespace or "", name) -> object.
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Change>,
    writes: Vec<Write>,
    requests: Vec<String>,
    next_uid: u64,
    /// Collections answered 404, as for a kind whose CRD is not installed.
    unserved: Vec<String>,
    /// (namespace, pod) -> what `GET .../pods/NAME/log` answers (text).
    logs: BTreeMap<(String, String), String>,
    /// Tokens and grants TokenReviews and SubjectAccessReviews answer from.
    reviews: review::Reviews,
}

pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// The newest resourceVersion, for watches to wake on.
    version: watch::Sender<u64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn key(collection: &str, namespace: Option<&str>, name: &str) -> (String, String, String) {
        (
            collection.to_string(),
            namespace.unwrap_or("").to_string(),
            name.to_string(),
        )
    }

    /// Stores `object` (stamping its resourceVersion, a uid if it has none)
    /// and logs the change.
    fn store(&mut self, collection: &str, namespace: Option<&str>, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("stored objects have names")
            .to_string();
        let key = Self::key(collection, namespace, &name);
        let old = self.objects.get(&key).cloned();
        let rv = self.bump();
        let metadata = &mut object["metadata"];
        if metadata["uid"].is_null() {
            metadata["uid"] = match old.as_ref().map(|o| o["metadata"]["uid"].clone()) {
                Some(uid) if !uid.is_null() => uid,
                _ => {
                    self.next_uid += 1;
                    json!(format!("00000000-0000-4000-8000-{:012x}", self.next_uid))
                }
            };
        }
        if metadata["creationTimestamp"].is_null() {
            metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        metadata["resourceVersion"] = json!(rv.to_string());
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        self.objects.insert(key, object.clone());
        self.log.push(Change {
            rv,
            collection: collection.to_string(),
            namespace: namespace.map(str::to_string),
            old,
            new: Some(object.clone()),
        });
        object
    }

    fn remove(&mut self, collection: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let old = self
            .objects
            .remove(&Self::key(collection, namespace, name))?;
        let rv = self.bump();
        self.log.push(Change {
            rv,
            collection: collection.to_string(),
            namespace: namespace.map(str::to_string),
            old: Some(old.clone()),
            new: None,
        });
        Some(old)
    }
}

/// Where an object of this shape is stored: (collection, namespace).
fn place(object: &Value) -> (String, Option<String>) {
    let kind = object["kind"].as_str().expect("objects have a kind");
    let api_version = object["apiVersion"]
        .as_str()
        .expect("objects have an apiVersion");
    let plural = plural(kind);
    let namespace = (!cluster_scoped(&plural)).then(|| {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    });
    (format!("{}/{plural}", prefix(api_version)), namespace)
}

impl ApiServer {
    /// Starts the server on an ephemeral port of 127.0.0.1, on a thread of
    /// its own (tests are synchronous).
    pub fn start() -> ApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (version, _) = watch::channel(0u64);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let (shared, versions) = (state.clone(), version.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let (state, version) = (shared.clone(), versions.clone());
                            tokio::spawn(async move {
                                let _ = serve(stream, state, version).await;
                            });
                        }
                    }
                }
            });
        });
        ApiServer {
            addr,
            state,
            version,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that points at this server into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: replay\n  cluster:\n    server: {}\n\
             contexts:\n- name: replay\n  context:\n    cluster: replay\n    user: replay\n    namespace: default\n\
             current-context: replay\nusers:\n- name: replay\n  user:\n    token: replay-token\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Adds or replaces an object (placed by its apiVersion, kind,
    /// namespace and name); open watches see it at once. Returns it as
    /// stored.
    pub fn apply(&self, object: Value) -> Value {
        let (collection, namespace) = place(&object);
        let stored = {
            let mut state = self.state.lock().unwrap();
            state.store(&collection, namespace.as_deref(), object)
        };
        self.wake();
        stored
    }

    /// Deletes an object; open watches see `DELETED`.
    pub fn delete(&self, object: &Value) {
        let (collection, namespace) = place(object);
        let name = object["metadata"]["name"].as_str().expect("a name");
        self.state
            .lock()
            .unwrap()
            .remove(&collection, namespace.as_deref(), name);
        self.wake();
    }

    /// Answers 404 for this collection (`/apis/GROUP/VERSION/PLURAL`), as a
    /// cluster without the kind's CRD does.
    pub fn refuse(&self, collection: &str) {
        self.state
            .lock()
            .unwrap()
            .unserved
            .push(collection.to_string());
    }

    /// Forgets the change log: watches from an older resourceVersion get
    /// `410 Gone` and must list again.
    pub fn compact(&self) {
        {
            let mut state = self.state.lock().unwrap();
            state.compacted = state.rv;
            state.compactions += 1;
            state.log.clear();
        }
        self.wake();
    }

    /// An object by its API path.
    pub fn get(&self, path: &str) -> Option<Value> {
        let target = parse_path(path)?;
        let state = self.state.lock().unwrap();
        state
            .objects
            .get(&State::key(
                &target.collection,
                target.namespace.as_deref(),
                target.name.as_deref()?,
            ))
            .cloned()
    }

    /// Sets what `GET /api/v1/namespaces/NS/pods/NAME/log` answers (as
    /// the kubelet would, from the container's stdout and stderr).
    pub fn set_log(&self, namespace: &str, pod: &str, text: &str) {
        self.state
            .lock()
            .unwrap()
            .logs
            .insert((namespace.to_string(), pod.to_string()), text.to_string());
    }

    /// A bearer token TokenReview says belongs to `user`.
    pub fn add_token(&self, token: &str, user: &str) {
        let mut state = self.state.lock().unwrap();
        state.reviews.tokens.insert(token.into(), user.into());
    }

    /// Lets `user` do `verb` on the non-resource URL `path` (what a
    /// ClusterRole with nonResourceURLs grants), for SubjectAccessReview.
    pub fn grant(&self, user: &str, verb: &str, path: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .reviews
            .grants
            .insert((user.into(), verb.into(), path.into()));
    }

    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Every request line received, `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Waits for the writes to satisfy `done`; the writes when they do.
    pub fn wait_for_writes(
        &self,
        timeout: Duration,
        done: impl Fn(&[Write]) -> bool,
    ) -> Option<Vec<Write>> {
        let deadline = Instant::now() + timeout;
        loop {
            let writes = self.writes();
            if done(&writes) {
                return Some(writes);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wake(&self) {
        let rv = self.state.lock().unwrap().rv;
        self.version.send_replace(rv);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection: requests one after another (keep-alive), until the
/// client closes it or a watch ends it.
async fn serve(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    version: watch::Sender<u64>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader).await? {
        let line = if request.query.is_empty() {
            format!("{} {}", request.method, request.path)
        } else {
            let query: Vec<String> = request
                .query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {}?{}", request.method, request.path, query.join("&"))
        };
        state.lock().unwrap().requests.push(line);
        let watching = matches!(
            request.query.get("watch").map(String::as_str),
            Some("true" | "1")
        );
        let served = parse_path(&request.path)
            .is_some_and(|t| !state.lock().unwrap().unserved.contains(&t.collection));
        if request.method == "GET" && watching && served {
            return stream_watch(reader.get_mut(), &request, &state, version.subscribe()).await;
        }
        if request.method == "GET" {
            if let Some(key) = log_path(&request.path) {
                let log = state.lock().unwrap().logs.get(&key).cloned();
                match log {
                    Some(text) => respond_text(reader.get_mut(), &text).await?,
                    None => {
                        let missing = status(404, "NotFound", &format!("no log for pod {}", key.1));
                        respond(reader.get_mut(), 404, &missing).await?
                    }
                }
                continue;
            }
        }
        let (code, body) = handle(&request, &state);
        // A write wakes the watches (a failed one changed nothing: no harm).
        if request.method != "GET" {
            let rv = state.lock().unwrap().rv;
            version.send_replace(rv);
        }
        respond(reader.get_mut(), code, &body).await?;
    }
    Ok(())
}

fn handle(request: &Request, state: &Arc<Mutex<State>>) -> (u16, Value) {
    let mut state = state.lock().unwrap();
    if request.method == "POST" {
        if let Some((code, body)) = state.reviews.answer(&request.path, &request.body) {
            state.writes.push(Write {
                method: request.method.clone(),
                path: request.path.clone(),
                content_type: request.content_type.clone(),
                body: body.clone(),
                status: code,
            });
            return (code, body);
        }
    }
    let Some(target) =
        parse_path(&request.path).filter(|t| !state.unserved.contains(&t.collection))
    else {
        return (
            404,
            status(404, "NotFound", &format!("{} is not served", request.path)),
        );
    };
    let (code, body) = match (request.method.as_str(), &target.name) {
        ("GET", None) => list(&state, &target, &request.query),
        ("GET", Some(name)) => {
            let key = State::key(&target.collection, target.namespace.as_deref(), name);
            match state.objects.get(&key) {
                Some(object) => (200, object.clone()),
                None => (404, status(404, "NotFound", &format!("{name} not found"))),
            }
        }
        ("POST", None) => create(&mut state, &target, &request.body),
        ("PUT", Some(name)) => replace(&mut state, &target, name, &request.body),
        ("PATCH", Some(name)) => patch(&mut state, &target, name, request),
        ("DELETE", Some(name)) => {
            match state.remove(&target.collection, target.namespace.as_deref(), name) {
                Some(old) => (200, old),
                None => (404, status(404, "NotFound", &format!("{name} not found"))),
            }
        }
        _ => (405, status(405, "MethodNotAllowed", "not supported here")),
    };
    if request.method != "GET" {
        state.writes.push(Write {
            method: request.method.clone(),
            path: request.path.clone(),
            content_type: request.content_type.clone(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            status: code,
        });
    }
    (code, body)
}

fn selection(target: &Target, query: &BTreeMap<String, String>) -> Selection {
    Selection {
        collection: target.collection.clone(),
        namespace: target.namespace.clone(),
        labels: query
            .get("labelSelector")
            .cloned()
            .filter(|s| !s.is_empty()),
        fields: query
            .get("fieldSelector")
            .cloned()
            .filter(|s| !s.is_empty()),
    }
}

fn list(state: &State, target: &Target, query: &BTreeMap<String, String>) -> (u16, Value) {
    let selection = selection(target, query);
    let items: Vec<&Value> = state
        .objects
        .iter()
        .filter(|((collection, ns, _), object)| {
            selection.matches(collection, (!ns.is_empty()).then_some(ns.as_str()), object)
        })
        .map(|(_, object)| object)
        .collect();
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(limit)
        .map(|o| (*o).clone())
        .collect();
    let next = start.saturating_add(limit);
    let mut metadata = json!({ "resourceVersion": state.rv.to_string() });
    if next < items.len() {
        metadata["continue"] = json!(next.to_string());
    }
    (
        200,
        json!({ "apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page }),
    )
}

fn create(state: &mut State, target: &Target, body: &[u8]) -> (u16, Value) {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return (400, status(400, "BadRequest", "the body is not JSON"));
    };
    if object["metadata"]["name"].as_str().is_none() {
        match object["metadata"]["generateName"].as_str() {
            Some(base) => {
                let name = format!("{base}{:05x}", state.rv + 1);
                object["metadata"]["name"] = json!(name);
            }
            None => return (422, status(422, "Invalid", "metadata.name: Required value")),
        }
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let (Some(in_body), Some(in_path)) = (
        object["metadata"]["namespace"].as_str(),
        target.namespace.as_deref(),
    ) {
        if in_body != in_path {
            return (
                400,
                status(
                    400,
                    "BadRequest",
                    "the namespace of the object does not match the namespace on the request",
                ),
            );
        }
    }
    let key = State::key(&target.collection, target.namespace.as_deref(), &name);
    if state.objects.contains_key(&key) {
        return (
            409,
            status(409, "AlreadyExists", &format!("{name} already exists")),
        );
    }
    let stored = state.store(&target.collection, target.namespace.as_deref(), object);
    (201, stored)
}

fn replace(state: &mut State, target: &Target, name: &str, body: &[u8]) -> (u16, Value) {
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return (400, status(400, "BadRequest", "the body is not JSON"));
    };
    let key = State::key(&target.collection, target.namespace.as_deref(), name);
    let Some(current) = state.objects.get(&key) else {
        return (404, status(404, "NotFound", &format!("{name} not found")));
    };
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
        if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
            return (409, status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"));
        }
    }
    let stored = state.store(&target.collection, target.namespace.as_deref(), object);
    (200, stored)
}

fn patch(state: &mut State, target: &Target, name: &str, request: &Request) -> (u16, Value) {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return (400, status(400, "BadRequest", "the body is not JSON"));
    };
    let key = State::key(&target.collection, target.namespace.as_deref(), name);
    let Some(mut object) = state.objects.get(&key).cloned() else {
        return (404, status(404, "NotFound", &format!("{name} not found")));
    };
    let media = request.content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml" => merge_patch(&mut object, &body),
        "application/json-patch+json" => {
            if let Err(why) = json_patch(&mut object, &body) {
                return (422, status(422, "Invalid", &why));
            }
        }
        other => {
            return (
                415,
                status(
                    415,
                    "UnsupportedMediaType",
                    &format!("{other} is not a patch type"),
                ),
            );
        }
    }
    // The store stamps a new resourceVersion.
    object["metadata"]["resourceVersion"] = Value::Null;
    let stored = state.store(&target.collection, target.namespace.as_deref(), object);
    (200, stored)
}

async fn write_chunk(stream: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let text = format!("{line}\n");
    stream
        .write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())
        .await?;
    stream.flush().await
}

/// A watch: chunked JSON lines until `timeoutSeconds` (or the client
/// goes); the connection closes after it.
async fn stream_watch(
    stream: &mut TcpStream,
    request: &Request,
    state: &Arc<Mutex<State>>,
    mut versions: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let target = parse_path(&request.path).expect("a watch of a served path");
    let selection = selection(&target, &request.query);
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await?;
    let from: Option<u64> = request
        .query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv > 0);
    // Under the lock, what to send first; sent after it.
    let (first, start, compactions): (Vec<Value>, Option<u64>, u64) = {
        let state = state.lock().unwrap();
        let compactions = state.compactions;
        match from {
            Some(rv) if rv < state.compacted => {
                let gone = status(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", state.compacted),
                );
                (
                    vec![json!({ "type": "ERROR", "object": gone })],
                    None,
                    compactions,
                )
            }
            Some(rv) => (Vec::new(), Some(rv), compactions),
            // No version: the current objects first, as ADDED.
            None => (
                state
                    .objects
                    .iter()
                    .filter(|((c, ns, _), o)| {
                        selection.matches(c, (!ns.is_empty()).then_some(ns.as_str()), o)
                    })
                    .map(|(_, o)| json!({ "type": "ADDED", "object": o }))
                    .collect(),
                Some(state.rv),
                compactions,
            ),
        }
    };
    for line in &first {
        write_chunk(stream, line).await?;
    }
    let Some(mut seen) = start else {
        stream.write_all(b"0\r\n\r\n").await?;
        return stream.flush().await;
    };
    loop {
        let (changes, compacted): (Vec<Change>, bool) = {
            let state = state.lock().unwrap();
            (
                state.log.iter().filter(|c| c.rv > seen).cloned().collect(),
                state.compactions != compactions,
            )
        };
        if compacted {
            // As an API server whose watch cache moved past this watch.
            let gone = status(410, "Expired", &format!("too old resource version: {seen}"));
            write_chunk(stream, &json!({ "type": "ERROR", "object": gone })).await?;
            break;
        }
        for change in changes {
            seen = change.rv;
            let ns = change.namespace.as_deref();
            let was = change
                .old
                .as_ref()
                .is_some_and(|o| selection.matches(&change.collection, ns, o));
            let is = change
                .new
                .as_ref()
                .is_some_and(|o| selection.matches(&change.collection, ns, o));
            let (kind, object) = match (was, is) {
                (false, true) => ("ADDED", change.new),
                (true, true) => ("MODIFIED", change.new),
                // Deleted, or no longer selected: its last state, at this version.
                (true, false) => {
                    let mut last = change.new.or(change.old).expect("a change has an object");
                    last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                    ("DELETED", Some(last))
                }
                (false, false) => continue,
            };
            write_chunk(stream, &json!({ "type": kind, "object": object })).await?;
        }
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await
}
