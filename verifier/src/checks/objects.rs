//! What every object gets before its kind's checks: is it a kind migverify
//! reads (a near miss is named and the content checked as the kind meant),
//! is its metadata what ObjectMeta takes, and is any value a documentation
//! placeholder left as written.

use serde_json::{Map, Value};

use super::{
    fields::{field, Ctx},
    findings::*,
    networks,
};
use crate::{
    config::documents::{join, Object},
    intent::{
        kinds::{self, recognize, Recognized},
        limits::HCO_OPENSHIFT_NAMESPACE,
    },
};

/// ObjectMeta's fields (k8s.io/apimachinery meta/v1).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "clusterName",
];

/// The objects to check: those of the kinds migverify reads, near misses
/// under the kind meant. Raises the findings about kinds and names.
pub fn recognized(objects: &[Object], findings: &mut Findings) -> Vec<Object> {
    let mut checked = Vec::new();
    for object in objects {
        if networks::is_install_config(object) {
            checked.push(object.clone());
            continue;
        }
        if object.kind.is_empty() || object.api_version.is_empty() {
            findings.object(
                object,
                INPUT_NOT_AN_OBJECT,
                if object.kind.is_empty() { "kind" } else { "apiVersion" },
                "a document without `kind` or `apiVersion` is not a Kubernetes object; nothing in it was checked"
                    .into(),
                "pass objects as `oc get KIND NAME -o yaml` prints them".into(),
            );
            continue;
        }
        let (kind, api_version) = (object.kind.as_str(), object.api_version.as_str());
        let known = match recognize(kind, api_version) {
            Recognized::Exact(known) => known,
            Recognized::NearMiss(known) => {
                // Named as the kind meant, as the rest of its findings are.
                let mut meant = object.clone();
                meant.kind = known.name.to_string();
                findings.object(
                    &meant,
                    INPUT_KIND_NEAR_MISS,
                    "kind",
                    format!(
                        "kind `{kind}` is not served: kinds are case-sensitive, and `kubectl apply` answers `no matches \
                         for kind \"{kind}\" in version \"{api_version}\"`; the content was checked as a {}",
                        known.name
                    ),
                    format!("write `kind: {}`", known.name),
                );
                known
            }
            Recognized::OtherVersion(known) => {
                findings.object(
                    object,
                    INPUT_API_VERSION_MISMATCH,
                    "apiVersion",
                    format!(
                        "{} is served as {}, not {api_version}: `kubectl apply` answers `no matches for kind \
                         \"{kind}\" in version \"{api_version}\"`; the content was checked as a {}",
                        known.name,
                        known.api_versions.join(" or "),
                        known.name
                    ),
                    format!("write `apiVersion: {}`", known.preferred()),
                );
                known
            }
            Recognized::Unknown => {
                unsupported(object, findings, "");
                continue;
            }
        };
        if known == &kinds::CONFIG_MAP && object.name.as_deref() != Some("kubevirt-config") {
            unsupported(
                object,
                findings,
                " (of ConfigMaps, only KubeVirt's legacy kubevirt-config is read)",
            );
            continue;
        }
        if field_of(&object.value, "metadata", "name").is_none() {
            findings.object(
                object,
                INPUT_NO_NAME,
                "metadata.name",
                "no `metadata.name`: other objects cannot refer to this one".into(),
                "add `metadata.name`".into(),
            );
        }
        let mut object = object.clone();
        object.kind = known.name.to_string();
        checked.push(object);
    }
    for object in &checked {
        metadata(object, findings);
        placeholders(object, findings);
    }
    checked
}

fn unsupported(object: &Object, findings: &mut Findings, why: &str) {
    let same_name = kinds::KINDS.iter().find(|k| k.name == object.kind);
    let why = match same_name {
        Some(known) if why.is_empty() => format!(
            " (migverify reads {} only as {}: this is another product's kind of that name)",
            known.name,
            known.api_versions.join(" or ")
        ),
        _ => why.to_string(),
    };
    let checked: Vec<&str> = kinds::KINDS
        .iter()
        .filter(|k| **k != &kinds::NODE)
        .map(|k| k.name)
        .collect();
    findings.object(
        object,
        INPUT_UNSUPPORTED_KIND,
        "kind",
        format!(
            "{} {} is not one migverify checks{why}; skipped",
            object.api_version, object.kind
        ),
        format!("nothing to fix; checked kinds: {}", checked.join(", ")),
    );
}

fn field_of<'v>(value: &'v Value, section: &str, key: &str) -> Option<&'v Value> {
    value.get(section)?.as_object().and_then(|m| field(m, key))
}

/// ObjectMeta as the API server takes it: known fields only, a string
/// name and namespace, string label and annotation values.
fn metadata(object: &Object, findings: &mut Findings) {
    let mut ctx = Ctx {
        object,
        findings,
        reader: "ObjectMeta",
        api: true,
    };
    let Some(root) = object.value.as_object() else {
        return;
    };
    let Some(meta) = ctx.map(root, "metadata", "") else {
        return;
    };
    // A label key at the level of `labels:` (its indentation lost) reads
    // as a field of metadata.
    let (label_like, rest): (Map<String, Value>, Map<String, Value>) = meta
        .clone()
        .into_iter()
        .partition(|(k, _)| !OBJECT_META.contains(&k.as_str()) && k.contains(['.', '/']));
    ctx.unknown_fields(&rest, OBJECT_META, "metadata", false);
    for key in label_like.keys() {
        ctx.unknown(
            &join("metadata", key),
            format!("`{key}` is a label (or annotation) key: indent it under `labels:` (or `annotations:`)"),
        );
    }
    ctx.reader = "the API server";
    ctx.str(meta, "name", "metadata");
    match field(meta, "namespace") {
        Some(Value::Object(map)) => namespace_map(&mut ctx, map),
        _ => {
            ctx.str(meta, "namespace", "metadata");
        }
    }
    for key in ["labels", "annotations"] {
        let path = join("metadata", key);
        let Some(map) = ctx.map(meta, key, "metadata") else {
            continue;
        };
        let what = format!("{} values are strings", key.trim_end_matches('s'));
        strings(&mut ctx, map, &path, &what);
    }
}

/// Raises a wrong type for every value of `map` that is not a string.
pub fn strings(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, what: &str) {
    for (key, value) in map {
        // JSON null decodes into a Go string as "".
        if value.is_string() || value.is_null() {
            continue;
        }
        let at = join(path, key);
        let shown = value.to_string();
        ctx.raise(
            FIELD_WRONG_TYPE,
            &at,
            format!(
                "`{at}` is {} ({shown}); {what}, so the API server refuses the object (YAML reads an unquoted \
                 true, 10 or ~ as a boolean, number or null)",
                crate::config::documents::kind_of(value)
            ),
            format!("quote it: `{key}: \"{}\"`", shown.trim_matches('"')),
        );
    }
}

/// `namespace: {CNVNamespace}`: YAML's flow mapping, from a documentation
/// attribute nobody substituted.
fn namespace_map(ctx: &mut Ctx, map: &Map<String, Value>) {
    let attribute = map
        .iter()
        .find(|(_, v)| v.is_null())
        .map(|(k, _)| k.as_str())
        .filter(|_| map.len() == 1);
    let (message, fix) = match attribute {
        Some(name) => (
            format!(
                "`metadata.namespace` is the mapping {{{name}: null}}: YAML reads `{{{name}}}` as a flow mapping. It \
                 is the documentation's attribute `{{{name}}}`, left unsubstituted; ObjectMeta.namespace is a \
                 string, so the API server refuses the object"
            ),
            if name.contains("CNV") {
                format!(
                    "write the namespace: `namespace: {HCO_OPENSHIFT_NAMESPACE}` (OpenShift Virtualization's; upstream \
                     HyperConverged installs in kubevirt-hyperconverged)"
                )
            } else {
                "write the namespace's name in place of the attribute".into()
            },
        ),
        None => (
            "`metadata.namespace` is a mapping; ObjectMeta.namespace is a string, so the API server refuses the \
             object"
                .into(),
            "write the namespace's name".into(),
        ),
    };
    ctx.raise(FIELD_WRONG_TYPE, "metadata.namespace", message, fix);
}

/// A documentation placeholder left in a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Placeholder<'t> {
    /// The whole value is `<something>`.
    Token(&'t str),
    /// The value ends in an asciidoc callout marker: (the value meant, `<N>`).
    Callout(&'t str, &'t str),
}

/// Whether `text` is a documentation placeholder.
pub fn placeholder(text: &str) -> Option<Placeholder<'_>> {
    let text = text.trim();
    let inner = text.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
    if let Some(inner) = inner.filter(|i| !i.trim().is_empty() && !i.contains(['<', '>'])) {
        return Some(Placeholder::Token(inner));
    }
    let (value, marker) = text.rsplit_once('<')?;
    let digits = marker.strip_suffix('>')?;
    (!digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && value.ends_with([' ', '\t'])
        && !value.trim().is_empty())
    .then(|| Placeholder::Callout(value.trim_end(), &text[value.len()..]))
}

/// Every string value of the object (not its status, which KubeVirt wrote)
/// that is a documentation placeholder.
fn placeholders(object: &Object, findings: &mut Findings) {
    let mut stack: Vec<(String, &Value)> = match object.value.as_object() {
        Some(root) => root
            .iter()
            .filter(|(k, _)| k.as_str() != "status")
            .map(|(k, v)| (join("", k), v))
            .collect(),
        None => return,
    };
    let mut found = Vec::new();
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::String(text) => {
                if let Some(p) = placeholder(text) {
                    found.push((path, text.trim().to_string(), owned(&p)));
                }
            }
            Value::Array(items) => stack.extend(
                items
                    .iter()
                    .enumerate()
                    .map(|(n, v)| (format!("{path}[{n}]"), v)),
            ),
            Value::Object(map) if path != "metadata.managedFields" => {
                stack.extend(map.iter().map(|(k, v)| (join(&path, k), v)))
            }
            _ => {}
        }
    }
    found.sort();
    for (path, text, (meant, marker)) in found {
        let what = if path == "metadata.name" || path == "metadata.namespace" {
            "no object can be named so (names are DNS-1123), and the API server refuses it"
                .to_string()
        } else if path.ends_with("liveMigrationConfig.network")
            || path.ends_with("migrations.network")
        {
            format!(
                "virt-handler would ask Multus for `{text}@migration0`, which no NetworkAttachmentDefinition can be \
                 named, and would not start"
            )
        } else {
            "the component that reads it gets the placeholder itself".to_string()
        };
        let (message, fix) = match marker {
            Some(marker) => (
                format!(
                    "`{path}` is {text:?}: `{marker}` is an asciidoc callout marker copied with the documentation's \
                     source and is part of the value as written; {what}"
                ),
                format!("delete ` {marker}`: `{meant}`"),
            ),
            None => (
                format!("`{path}` is `{text}`, a documentation placeholder left as written; {what}"),
                if what.starts_with("virt-handler") {
                    format!("replace `{text}` with the migration NetworkAttachmentDefinition's name")
                } else {
                    format!("replace `{text}` with the real value")
                },
            ),
        };
        findings.object(object, INPUT_DOC_PLACEHOLDER, &path, message, fix);
    }
}

/// (the value meant, the callout marker) of a placeholder, owned.
fn owned(p: &Placeholder) -> (String, Option<String>) {
    match p {
        Placeholder::Token(inner) => (inner.to_string(), None),
        Placeholder::Callout(value, marker) => (value.to_string(), Some(marker.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_whole_tokens_or_trailing_callouts() {
        assert_eq!(
            placeholder("<network> "),
            Some(Placeholder::Token("network"))
        );
        assert_eq!(
            placeholder("my-secondary-network  <1>"),
            Some(Placeholder::Callout("my-secondary-network", "<1>"))
        );
        for text in [
            "a<1>",
            "<>",
            "x <y>",
            "{\"a\": 1} <3>x",
            "<a> <b>",
            "10.0.0.0/24",
        ] {
            assert_eq!(placeholder(text), None, "{text}");
        }
    }
}
