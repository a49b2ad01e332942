//! Kubernetes objects as `oc get ... -o yaml|json` prints them: one document,
//! several YAML documents, or a `kind: List`, read into JSON values with the
//! line and column of every field kept, so a finding can say `file:line`.
//!
//! JSON is read by the same YAML 1.2 parser (JSON is a subset of it). The
//! reader is built for hostile input: a size limit, a nesting limit, a cap on
//! the nodes aliases may expand to, no recursion over the input's depth, and
//! every failure an error naming the file, line and column.

mod describe;
mod yaml;

use std::{collections::HashMap, fmt, io::Read, path::Path, sync::Arc};

use serde_json::Value;

use self::yaml::{parse_documents, parse_leniently, Document, Index};

/// Larger inputs are refused: a cluster's objects are a few MiB at most
/// (etcd caps one object at 1.5 MiB).
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Deeper nesting is refused; Kubernetes objects stay far below it.
pub const MAX_DEPTH: usize = 100;
/// Aliases may expand to at most this many values in one input.
pub const MAX_NODES: usize = 4_000_000;

/// A line and column, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("{source_name}: cannot read: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: larger than {limit} bytes; migverify reads Kubernetes objects, not archives", limit = MAX_INPUT_BYTES)]
    TooLarge { source_name: String },
    #[error("{source_name}: not text: {why}")]
    NotText { source_name: String, why: String },
    #[error("{source_name}: empty: no Kubernetes object in it")]
    Empty { source_name: String },
    #[error(
        "{source_name}:{line}: this is `kubectl describe` output, not a Kubernetes object: check what `{command}` prints"
    )]
    Describe {
        source_name: String,
        line: usize,
        command: String,
    },
    #[error("{source_name}:{line}:{column}: {message}")]
    Syntax {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// One Kubernetes object of the input.
#[derive(Clone, Debug)]
pub struct Object {
    /// The file it came from (`-` for standard input).
    pub source: Arc<str>,
    pub kind: String,
    pub api_version: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub value: Value,
    index: Arc<Index>,
    /// For string values whose lines map one to one onto the file's (a `|`
    /// block, or a one-line string): the file line of the string's first line.
    text_lines: Arc<HashMap<String, usize>>,
    /// Where this object sits in its document: empty, or `items[N].`.
    base: String,
    /// Positions inside one string field that holds JSON (`spec.config`).
    inner: Option<Arc<Inner>>,
}

/// Where the fields of a JSON string value are, in the file.
#[derive(Debug)]
struct Inner {
    field: String,
    first_line: usize,
    index: Index,
}

impl Object {
    /// `Kind namespace/name`, as findings name the object.
    pub fn describe(&self) -> String {
        let name = self.name.as_deref().unwrap_or("(no name)");
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{name}", self.kind),
            None => format!("{} {name}", self.kind),
        }
    }

    /// The position of `path` (relative to the object) or of its nearest
    /// enclosing field that the input has, e.g. `spec.config` for
    /// `spec.config.vlan`, which lives inside a JSON string.
    pub fn position(&self, path: &str) -> Option<Position> {
        if let Some(inner) = &self.inner {
            let within = path
                .strip_prefix(inner.field.as_str())
                .filter(|rest| rest.starts_with(['.', '[']));
            if let Some(mut rest) = within.map(|rest| rest.trim_start_matches('.')) {
                while !rest.is_empty() {
                    if let Some(p) = inner.index.get(rest) {
                        return Some(Position {
                            line: inner.first_line + p.line - 1,
                            column: p.column,
                        });
                    }
                    rest = rest.rfind(['.', '[']).map_or("", |cut| &rest[..cut]);
                }
            }
        }
        let mut path = path;
        loop {
            let key = format!("{}{}", self.base, path);
            if let Some(position) = self.index.get(key.trim_end_matches('.')) {
                return Some(*position);
            }
            if path.is_empty() {
                return None;
            }
            path = match path.rfind(['.', '[']) {
                Some(cut) => &path[..cut],
                None => "",
            };
        }
    }

    /// This object, with the fields inside the JSON held by the string
    /// `field` located in the file, where its lines map onto the file's.
    pub fn with_json_lines(&self, field: &str, json: &str) -> Object {
        let mut object = self.clone();
        let first_line = self
            .text_lines
            .get(&format!("{}{field}", self.base))
            .copied();
        if let (Some(first_line), Ok(documents)) = (first_line, parse_documents(json)) {
            if let Some(document) = documents.into_iter().next() {
                object.inner = Some(Arc::new(Inner {
                    field: field.to_string(),
                    first_line,
                    index: document.index,
                }));
            }
        }
        object
    }

    /// `file:line` of `path`, or the file alone.
    pub fn location(&self, path: &str) -> String {
        match self.position(path) {
            Some(p) => format!("{}:{}", self.source, p.line),
            None => self.source.to_string(),
        }
    }
}

/// Reads `path` (`-` is standard input) into its objects.
/// Every object of every file; `None` after saying on stderr, one line a
/// file, which could not be read.
pub fn load_all(paths: &[std::path::PathBuf]) -> Option<Vec<Object>> {
    let mut objects = Vec::new();
    let mut readable = true;
    for path in paths {
        match load_path(path) {
            Ok(found) => objects.extend(found),
            Err(e) => {
                eprintln!("migverify: {e}");
                readable = false;
            }
        }
    }
    readable.then_some(objects)
}

pub fn load_path(path: &Path) -> Result<Vec<Object>, LoadError> {
    let source_name = path.display().to_string();
    let read_error = |e: std::io::Error| LoadError::Read {
        source_name: source_name.clone(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    }
    .map_err(read_error)?;
    load_bytes(&source_name, &bytes)
}

/// Reads the objects in `bytes`, named `source_name` in errors.
pub fn load_bytes(source_name: &str, bytes: &[u8]) -> Result<Vec<Object>, LoadError> {
    let source_name = source_name.to_string();
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(LoadError::TooLarge { source_name });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| LoadError::NotText {
        source_name: source_name.clone(),
        why: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    if let Some(at) = text.find('\0') {
        return Err(LoadError::NotText {
            source_name,
            why: format!("NUL byte at byte {at} (binary data?)"),
        });
    }
    if let Some(found) = describe::detect(text) {
        return Err(LoadError::Describe {
            source_name,
            line: found.line,
            command: found.command,
        });
    }
    let source: Arc<str> = Arc::from(source_name.as_str());
    let documents = parse_leniently(text).map_err(|fail| LoadError::Syntax {
        source_name: source_name.clone(),
        line: fail.position.line,
        column: fail.position.column,
        message: fail.message,
    })?;
    let mut objects = Vec::new();
    for document in documents {
        objects.extend(split(&source, document)?);
    }
    if objects.is_empty() {
        return Err(LoadError::Empty { source_name });
    }
    Ok(objects)
}

/// The objects of one document: itself, or the items of a List.
fn split(source: &Arc<str>, document: Document) -> Result<Vec<Object>, LoadError> {
    let syntax = |position: Position, message: String| LoadError::Syntax {
        source_name: source.to_string(),
        line: position.line,
        column: position.column,
        message,
    };
    let index = Arc::new(document.index);
    let text_lines = Arc::new(document.text_lines);
    let object = |value: Value, base: String| {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        Object {
            source: source.clone(),
            kind: text(&value, "kind").unwrap_or_default(),
            api_version: text(&value, "apiVersion").unwrap_or_default(),
            name: text(&metadata, "name"),
            namespace: text(&metadata, "namespace"),
            value,
            index: index.clone(),
            text_lines: text_lines.clone(),
            base,
            inner: None,
        }
    };
    match document.value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => {
            let is_list = map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind == "List" || kind.ends_with("List"))
                && map.get("items").is_some();
            if !is_list {
                return Ok(vec![object(Value::Object(map), String::new())]);
            }
            let Some(Value::Array(items)) = map.get("items") else {
                let at = index.get("items").copied().unwrap_or(document.start);
                return Err(syntax(
                    at,
                    "`items` of a List must be a sequence of objects".into(),
                ));
            };
            let mut objects = Vec::new();
            for (n, item) in items.iter().enumerate() {
                if !item.is_object() {
                    let at = index
                        .get(&format!("items[{n}]"))
                        .copied()
                        .unwrap_or(document.start);
                    return Err(syntax(
                        at,
                        format!("items[{n}] is {}, not a Kubernetes object", kind_of(item)),
                    ));
                }
                objects.push(object(item.clone(), format!("items[{n}].")));
            }
            Ok(objects)
        }
        other => Err(syntax(
            document.start,
            format!(
                "the document is {}, not a Kubernetes object (a mapping with kind and metadata)",
                kind_of(&other)
            ),
        )),
    }
}

/// "a string", "a sequence", ... for messages about wrong types.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Appends a mapping key to a field path: `.name`, or `["odd.key"]`.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn load(text: &str) -> Result<Vec<Object>, LoadError> {
        load_bytes("in.yaml", text.as_bytes())
    }

    #[test]
    fn reads_yaml_with_positions_of_every_field() {
        let objects = load(
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: mig\n  \
             namespace: openshift-cnv\nspec:\n  config: '{\"type\": \"macvlan\"}'\n",
        )
        .unwrap();
        let nad = &objects[0];
        assert_eq!(
            nad.describe(),
            "NetworkAttachmentDefinition openshift-cnv/mig"
        );
        assert_eq!(
            nad.value["spec"]["config"],
            json!("{\"type\": \"macvlan\"}")
        );
        assert_eq!(
            nad.position("spec.config"),
            Some(Position { line: 7, column: 3 })
        );
        // Inside the JSON string: the string's own line.
        assert_eq!(nad.location("spec.config.ipam.range"), "in.yaml:7");
        assert_eq!(nad.location("metadata.name"), "in.yaml:4");
    }

    #[test]
    fn reads_multiple_documents_and_lists() {
        let text = "kind: A\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- kind: B\n  metadata:\n    name: b\n  \
                    spec:\n    x: [1, 2]\n- kind: C\n";
        let objects = load(text).unwrap();
        let kinds: Vec<_> = objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(objects[1].location("spec.x[1]"), "in.yaml:11");
        assert_eq!(objects[2].location("metadata"), "in.yaml:12");
    }

    #[test]
    fn reads_json_as_oc_prints_it() {
        let text = "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"List\",\n    \"items\": [\n        {\n            \
                    \"kind\":\"KubeVirt\",\"spec\": {\"n\": 5, \"f\": 1.5, \"b\": false, \"z\": null}\n        }\n    ]\n}\n";
        let objects = load(text).unwrap();
        assert_eq!(
            objects[0].value["spec"],
            json!({"n": 5, "f": 1.5, "b": false, "z": null})
        );
        assert_eq!(objects[0].location("spec.n"), "in.yaml:6");
    }

    #[test]
    fn resolves_plain_scalars_as_yaml_1_2() {
        let objects = load(
            "kind: X\na: 2\nb: \"2\"\nc: true\nd: ~\ne: 0x1f\nf: 1.5e3\ng: 64Mi\nh: !!str 3\ni: -7\nj: 1e\nk: .5\n",
        )
        .unwrap();
        let v = &objects[0].value;
        assert_eq!(v["a"], json!(2));
        assert_eq!(v["b"], json!("2"));
        assert_eq!(v["c"], json!(true));
        assert_eq!(v["d"], json!(null));
        assert_eq!(v["e"], json!(31));
        assert_eq!(v["f"], json!(1500.0));
        assert_eq!(v["g"], json!("64Mi"));
        assert_eq!(v["h"], json!("3"));
        assert_eq!(v["i"], json!(-7));
        assert_eq!(v["j"], json!("1e"));
        assert_eq!(v["k"], json!(0.5));
    }

    #[test]
    fn accepts_quoted_scalars_closed_at_the_keys_indentation_as_oc_does() {
        // The OpenShift documentation's layout: `}'` at the key's column.
        let text = "kind: X\nspec:\n  config: '{\n    \"a\": \"it''s\",\n  \"b\": 1\n  }'\n  other: \"x\n  y\"\nlast: 1\n";
        let objects = load(text).unwrap();
        assert_eq!(
            objects[0].value["spec"]["config"],
            json!("{ \"a\": \"it's\", \"b\": 1 }")
        );
        assert_eq!(objects[0].value["spec"]["other"], json!("x y"));
        assert_eq!(objects[0].location("last"), "in.yaml:9");
        assert_eq!(objects[0].location("spec.other"), "in.yaml:7");
    }

    #[test]
    fn fields_inside_a_json_string_get_their_file_lines() {
        let text = "kind: X\nspec:\n  config: |\n    {\n      \"a\": 1,\n      \"b\": {\"c\": 2}\n    }\n  \
                    one: '{\"a\": 1}'\n  folded: '{\n    \"a\": 1}'\n";
        let object = &load(text).unwrap()[0];
        let block = object.with_json_lines(
            "spec.config",
            object.value["spec"]["config"].as_str().unwrap(),
        );
        assert_eq!(block.location("spec.config.b.c"), "in.yaml:6");
        assert_eq!(block.location("spec.config.a"), "in.yaml:5");
        assert_eq!(block.location("spec.config.missing"), "in.yaml:3");
        let one = object.with_json_lines("spec.one", "{\"a\": 1}");
        assert_eq!(one.location("spec.one.a"), "in.yaml:8");
        // Folded lines do not map: the key's line.
        let folded = object.with_json_lines("spec.folded", "{ \"a\": 1}");
        assert_eq!(folded.location("spec.folded.a"), "in.yaml:9");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let objects =
            load("kind: X\nbase: &b {x: 1, y: 2}\ncopy: *b\nmerged:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(objects[0].value["copy"], json!({"x": 1, "y": 2}));
        assert_eq!(objects[0].value["merged"], json!({"x": 1, "y": 3}));
    }

    #[test]
    fn bad_input_is_an_error_with_file_line_and_column() {
        let err = |text: &str| load(text).unwrap_err().to_string();
        assert!(
            err("kind: X\nspec:\n  a: [1, 2\n").starts_with("in.yaml:"),
            "{}",
            err("kind: X\nspec:\n  a: [1, 2\n")
        );
        assert_eq!(
            err("kind: X\nkind: Y\n"),
            "in.yaml:2:1: duplicate key \"kind\" (first at line 1)"
        );
        assert_eq!(err(""), "in.yaml: empty: no Kubernetes object in it");
        assert_eq!(
            err("---\n...\n"),
            "in.yaml: empty: no Kubernetes object in it"
        );
        assert!(
            err("- a\n- b\n").contains("1:1: the document is a sequence, not a Kubernetes object")
        );
        assert!(err("kind: List\nitems: [3]\n").contains("items[0] is an integer"));
        assert!(err("? [a]\n: b\n").contains("must be a plain value"));
        assert!(err("a: *nothing\n").contains("unknown anchor"));
        assert!(load_bytes("bin", b"\x7fELF\x00\x01")
            .unwrap_err()
            .to_string()
            .contains("NUL byte"));
        assert!(load_bytes("bin", b"kind: \xff\xfe")
            .unwrap_err()
            .to_string()
            .contains("invalid UTF-8 at byte 6"));
    }

    #[test]
    fn refuses_what_would_exhaust_memory_or_stack() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(load(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested deeper than"));
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for n in 1..10 {
            let prev = n - 1;
            laughs += &format!("a{n}: &a{n} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n");
        }
        assert!(load(&laughs)
            .unwrap_err()
            .to_string()
            .contains("aliases expanding"));
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(matches!(
            load_bytes("big", &big),
            Err(LoadError::TooLarge { .. })
        ));
    }

    #[test]
    fn odd_keys_get_quoted_path_segments() {
        assert_eq!(
            join("metadata.labels", "kubevirt.io/x"),
            "metadata.labels[\"kubevirt.io/x\"]"
        );
        assert_eq!(join("", "spec"), "spec");
    }
}
