//! The migrations that touch this node, learnt from VMI changes: their
//! endpoints as soon as the target publishes them, and when they end.
//!
//! Only what a judgement needs is kept per migration (names, UIDs,
//! endpoints, size), never the VMI objects, and only while the migration
//! runs: memory follows the migrations on this node, not the cluster.

use std::{
    collections::{BTreeMap, VecDeque},
    path::Path,
    time::Duration,
};

use serde_json::Value;

use crate::{
    cluster::watch::Change,
    config::{endpoints::endpoints_from_vmi, Endpoint},
    intent::VmSize,
};

/// Judged migrations remembered, so a VMI that keeps its finished
/// `migrationState` is not taken for a new migration.
const JUDGED_CAP: usize = 1024;

/// This node's part in a migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// How a migration ended, as the API said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    /// The VMI left this node's view (deleted, or its labels moved on)
    /// before it said how the migration ended.
    Left,
    /// Nothing moved for a long time and the API said nothing (a lost update).
    Idle,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Left => "left this node",
            Outcome::Idle => "idle, no news from the API",
        }
    }
}

/// One migration that touches this node.
#[derive(Clone, Debug)]
pub struct Migration {
    pub namespace: String,
    pub name: String,
    pub vmi_uid: String,
    pub migration_uid: String,
    pub side: Side,
    pub source_node: String,
    pub target_node: String,
    pub endpoints: Vec<Endpoint>,
    pub size: Option<VmSize>,
    /// Since when (collection time) and how it ended.
    pub ended: Option<(Duration, Outcome)>,
}

impl Migration {
    /// `namespace/name`, as reports name the migration.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the caller should do about a change.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// New endpoints of a migration: into the data plane, now.
    Load {
        key: String,
        endpoints: Vec<Endpoint>,
    },
    /// Worth a line in the log.
    Note(String),
}

#[derive(Debug)]
pub struct Tracker {
    node: String,
    pub migrations: BTreeMap<String, Migration>,
    judged: VecDeque<String>,
}

/// The string at `pointer` in an API object, empty when absent.
pub(super) fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Tracker {
    pub fn new(node: &str) -> Self {
        Tracker {
            node: node.to_string(),
            migrations: BTreeMap::new(),
            judged: VecDeque::new(),
        }
    }

    /// Every endpoint of the migrations in flight.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.migrations
            .values()
            .flat_map(|m| m.endpoints.iter().cloned())
            .collect()
    }

    /// A migration was judged: it is forgotten, and remembered as done.
    pub fn judged(&mut self, key: &str) {
        self.migrations.remove(key);
        self.judged.push_back(key.to_string());
        if self.judged.len() > JUDGED_CAP {
            self.judged.pop_front();
        }
    }

    /// Takes in one VMI change seen at `at`.
    pub fn apply(&mut self, change: Change, at: Duration) -> Vec<Action> {
        let (vmi, deleted) = match change {
            Change::Applied(vmi) => (vmi, false),
            Change::Deleted(vmi) => (vmi, true),
        };
        let state = &vmi["status"]["migrationState"];
        let namespace = text(&vmi, "/metadata/namespace");
        let name = text(&vmi, "/metadata/name");
        let vmi_uid = text(&vmi, "/metadata/uid");
        let migration_uid = text(state, "/migrationUid");
        let key = format!("{namespace}/{name}/{migration_uid}");
        let mut actions = Vec::new();
        if state.is_null() {
            if deleted {
                self.left(&namespace, &name, at);
            }
            return actions;
        }
        let (source_node, target_node) = (text(state, "/sourceNode"), text(state, "/targetNode"));
        let side = if target_node == self.node {
            Side::Target
        } else if source_node == self.node {
            Side::Source
        } else {
            // Not this node's (any more): whatever was in flight here left.
            self.left(&namespace, &name, at);
            return actions;
        };
        let outcome = if state["failed"].as_bool() == Some(true) {
            Some(Outcome::Failed)
        } else if state["completed"].as_bool() == Some(true) {
            Some(Outcome::Completed)
        } else if deleted {
            Some(Outcome::Left)
        } else {
            None
        };
        if !self.migrations.contains_key(&key) {
            if outcome.is_some() || self.judged.contains(&key) {
                // Finished before this agent saw it move: nothing to judge.
                return actions;
            }
            actions.push(Action::Note(format!(
                "migration of {namespace}/{name} (migration {migration_uid}): {} -> {}, this node is the {}",
                source_node,
                target_node,
                side.as_str()
            )));
            self.migrations.insert(
                key.clone(),
                Migration {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    vmi_uid,
                    migration_uid,
                    side,
                    source_node,
                    target_node,
                    endpoints: Vec::new(),
                    size: None,
                    ended: None,
                },
            );
        }
        let migration = self.migrations.get_mut(&key).expect("just inserted");
        if migration.size.is_none() {
            match VmSize::of_vmi(&vmi) {
                Ok(size) => migration.size = size,
                Err(why) => actions.push(Action::Note(format!(
                    "VirtualMachineInstance {namespace}/{name}: {why}"
                ))),
            }
        }
        if !state["targetNodeAddress"].is_null()
            && !state["targetDirectMigrationNodePorts"].is_null()
        {
            // Named after this migration, not only its VMI: its series and
            // report are its own, a second migration of the VMI another's.
            let named = endpoints_from_vmi(&vmi, Path::new("cluster")).map(|endpoints| {
                endpoints
                    .into_iter()
                    .map(|e| Endpoint {
                        migration: Some(key.clone()),
                        ..e
                    })
                    .collect::<Vec<_>>()
            });
            match named {
                Ok(endpoints) if endpoints != migration.endpoints => {
                    migration.endpoints = endpoints.clone();
                    actions.push(Action::Load {
                        key: key.clone(),
                        endpoints,
                    });
                }
                Ok(_) => {}
                Err(error) => actions.push(Action::Note(error.to_string())),
            }
        }
        if let (Some(outcome), None) = (outcome, migration.ended) {
            migration.ended = Some((at, outcome));
        }
        actions
    }

    /// The VMI's migrations here left this node's view.
    fn left(&mut self, namespace: &str, name: &str, at: Duration) {
        for migration in self.migrations.values_mut() {
            if migration.namespace == namespace
                && migration.name == name
                && migration.ended.is_none()
            {
                migration.ended = Some((at, Outcome::Left));
            }
        }
    }

    /// Marks a migration ended for want of news (see [`Outcome::Idle`]).
    pub fn idle(&mut self, key: &str, at: Duration) {
        if let Some(migration) = self.migrations.get_mut(key) {
            migration.ended.get_or_insert((at, Outcome::Idle));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vmi(state: Value) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": { "name": "vm", "namespace": "prod", "uid": "vmi-uid" },
            "spec": { "domain": { "memory": { "guest": "2Gi" } } },
            "status": { "migrationState": state },
        })
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_migration_is_tracked_from_preparing_to_completed() {
        let mut tracker = Tracker::new("node-b");
        let preparing =
            vmi(json!({ "migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b" }));
        let actions = tracker.apply(Change::Applied(preparing), at(1));
        assert!(matches!(&actions[..], [Action::Note(n)] if n.contains("this node is the target")));
        let listening = vmi(
            json!({ "migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b",
            "targetNodeAddress": "10.200.5.12", "targetDirectMigrationNodePorts": { "41000": 49152 } }),
        );
        let actions = tracker.apply(Change::Applied(listening.clone()), at(2));
        let [Action::Load { key, endpoints }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(key, "prod/vm/m1");
        assert_eq!(endpoints[0].addr, "10.200.5.12:41000".parse().unwrap());
        assert_eq!(endpoints[0].migration.as_deref(), Some("prod/vm/m1"));
        // The same endpoints again are no news.
        assert!(tracker.apply(Change::Applied(listening), at(3)).is_empty());
        let done = vmi(
            json!({ "migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b",
            "targetNodeAddress": "10.200.5.12", "targetDirectMigrationNodePorts": { "41000": 49152 },
            "completed": true }),
        );
        tracker.apply(Change::Applied(done.clone()), at(4));
        let migration = &tracker.migrations["prod/vm/m1"];
        assert_eq!(migration.ended, Some((at(4), Outcome::Completed)));
        assert_eq!(migration.side, Side::Target);
        assert_eq!(migration.size.as_ref().unwrap().bytes, 2 << 30);
        tracker.judged("prod/vm/m1");
        // Judged: later updates of the finished VMI are not a new migration.
        assert!(tracker.apply(Change::Applied(done), at(5)).is_empty());
        assert!(tracker.migrations.is_empty());
    }

    #[test]
    fn other_nodes_and_finished_migrations_are_not_tracked() {
        let mut tracker = Tracker::new("node-c");
        let elsewhere =
            vmi(json!({ "migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b" }));
        assert!(tracker.apply(Change::Applied(elsewhere), at(1)).is_empty());
        let finished = vmi(
            json!({ "migrationUid": "m2", "sourceNode": "node-c", "targetNode": "node-b", "completed": true }),
        );
        assert!(tracker.apply(Change::Applied(finished), at(1)).is_empty());
        assert!(tracker.migrations.is_empty());
    }

    #[test]
    fn a_vmi_leaving_the_view_ends_its_migration_and_bad_ports_are_said() {
        let mut tracker = Tracker::new("node-a");
        let bad = vmi(
            json!({ "migrationUid": "m1", "sourceNode": "node-a", "targetNode": "node-b",
            "targetNodeAddress": "10.200.5.12", "targetDirectMigrationNodePorts": { "x": 49152 } }),
        );
        let actions = tracker.apply(Change::Applied(bad.clone()), at(1));
        assert!(
            matches!(&actions[..], [Action::Note(_), Action::Note(n)] if n.contains("cluster: VirtualMachineInstance prod/vm: ") && n.contains("not a TCP port")),
            "{actions:?}"
        );
        tracker.apply(Change::Deleted(bad), at(2));
        assert_eq!(
            tracker.migrations["prod/vm/m1"].ended,
            Some((at(2), Outcome::Left))
        );
    }
}
