//! The REST semantics the replay server follows: API paths and their
//! resources, query strings, label and field selectors, status objects,
//! merge and JSON patches.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The plural a kind is served under.
pub fn plural(kind: &str) -> String {
    match kind {
        "NetworkAttachmentDefinition" => "network-attachment-definitions".into(),
        "MigrationPolicy" => "migrationpolicies".into(),
        "Endpoints" => "endpoints".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// `/api/v1` or `/apis/GROUP/VERSION` for an apiVersion.
pub(super) fn prefix(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

/// The kinds served cluster-wide only.
pub(super) fn cluster_scoped(plural: &str) -> bool {
    matches!(
        plural,
        "nodes" | "namespaces" | "networks" | "migrationpolicies" | "customresourcedefinitions"
    )
}

/// What a request path names.
#[derive(Debug, PartialEq)]
pub(super) struct Target {
    pub(super) collection: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (base, rest) = rest;
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    match rest {
        [plural] => Some(Target {
            collection: format!("{base}/{plural}"),
            namespace,
            name: None,
        }),
        [plural, name] => Some(Target {
            collection: format!("{base}/{plural}"),
            namespace,
            name: Some(name.to_string()),
        }),
        _ => None,
    }
}

pub(super) fn query(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `object` matches a label selector (`k=v`, `k==v`, `k!=v`, `k`,
/// `!k`, comma-separated).
pub(super) fn labels_match(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                labels[k].is_null()
            } else {
                !labels[term].is_null()
            }
        })
}

/// Whether `object` matches a field selector (`a.b=v`, `a.b==v`, `a.b!=v`).
pub(super) fn fields_match(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let (path, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return false;
            };
            let mut at = object;
            for key in path.trim().split('.') {
                at = &at[key];
            }
            let actual = match at {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == value.trim()) == equal
        })
}

pub(super) struct Selection {
    pub(super) collection: String,
    pub(super) namespace: Option<String>,
    pub(super) labels: Option<String>,
    pub(super) fields: Option<String>,
}

impl Selection {
    pub(super) fn matches(
        &self,
        collection: &str,
        namespace: Option<&str>,
        object: &Value,
    ) -> bool {
        collection == self.collection
            && (self.namespace.is_none() || self.namespace.as_deref() == namespace)
            && self
                .labels
                .as_deref()
                .is_none_or(|s| labels_match(object, s))
            && self
                .fields
                .as_deref()
                .is_none_or(|s| fields_match(object, s))
    }
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

pub(super) fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Error",
    }
}

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().expect("an object");
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, test.
pub(super) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("an operation without path")?;
        let (parent, last) = path.rsplit_once('/').ok_or("a path starts with /")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op["op"].as_str() {
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some(kind @ ("add" | "replace" | "remove")) => {
                let holder = target
                    .pointer_mut(parent)
                    .ok_or_else(|| format!("no {parent}"))?;
                match holder {
                    Value::Object(map) => {
                        if kind == "remove" {
                            map.remove(&last).ok_or_else(|| format!("no {path}"))?;
                        } else {
                            if kind == "replace" && !map.contains_key(&last) {
                                return Err(format!("no {path}"));
                            }
                            map.insert(last, op["value"].clone());
                        }
                    }
                    Value::Array(items) => {
                        let index = if last == "-" {
                            items.len()
                        } else {
                            last.parse().map_err(|_| format!("bad index in {path}"))?
                        };
                        match kind {
                            "remove" if index < items.len() => {
                                items.remove(index);
                            }
                            "replace" if index < items.len() => items[index] = op["value"].clone(),
                            "add" if index <= items.len() => {
                                items.insert(index, op["value"].clone())
                            }
                            _ => return Err(format!("index out of range in {path}")),
                        }
                    }
                    _ => return Err(format!("{parent} holds no fields")),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}
