//! A YAML 1.2 reader that keeps the line and column of every value, with
//! limits for hostile input, and a lenient retry for what `oc` users paste:
//! a quoted multi-line string whose continuation lines lost their indent.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

use super::{join, Position, MAX_DEPTH, MAX_NODES};

/// Where each field of a document is: the path (`spec.config`,
/// `items[2].metadata.name`) to the position of its key or item.
pub(super) type Index = HashMap<String, Position>;

/// A parsed document: its value and where each field was.
pub(super) struct Document {
    pub value: Value,
    pub start: Position,
    pub index: Index,
    pub text_lines: HashMap<String, usize>,
}

impl Position {
    fn of(span: Span) -> Self {
        Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A container being filled, with the path of the values going into it.
enum Frame {
    Sequence {
        items: Vec<Value>,
        path: String,
        anchor: usize,
        nodes_before: usize,
    },
    Mapping {
        map: Map<String, Value>,
        path: String,
        anchor: usize,
        nodes_before: usize,
        /// The key waiting for its value.
        key: Option<String>,
        /// Mappings merged in with `<<`; explicit keys win over them.
        merges: Vec<Map<String, Value>>,
    },
}

/// The state of one parse: the open containers, anchors, the node count.
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    index: Index,
    text_lines: HashMap<String, usize>,
    root: Option<Value>,
}

type Fail = (Position, String);

/// A parse failure, with the character index the parser stopped at.
pub(super) struct ParseFail {
    pub position: Position,
    index: Option<usize>,
    pub message: String,
}

impl From<Fail> for ParseFail {
    fn from((position, message): Fail) -> Self {
        ParseFail {
            position,
            index: None,
            message,
        }
    }
}

/// Multi-line quoted scalars fixed by re-indenting, at most this many.
const MAX_REINDENTS: usize = 1000;

/// Parses `text`, accepting what libyaml (hence `oc`) accepts but the
/// YAML 1.2 parser refuses: continuation lines of a quoted scalar indented
/// no deeper than their key, as the OpenShift documentation writes
/// `config: '{` ... `}'`. Leading white space of continuation lines is
/// folded away, so indenting them further changes neither the value nor
/// any line number.
pub(super) fn parse_leniently(text: &str) -> Result<Vec<Document>, ParseFail> {
    let mut text = std::borrow::Cow::Borrowed(text);
    for _ in 0..MAX_REINDENTS {
        match parse_documents(&text) {
            Err(fail) if fail.message == "invalid indentation in quoted scalar" => {
                match fail.index.and_then(|index| reindent_quoted(&text, index)) {
                    Some(fixed) => text = std::borrow::Cow::Owned(fixed),
                    None => return Err(fail),
                }
            }
            result => return result,
        }
    }
    parse_documents(&text)
}

/// Indents the continuation lines of the quoted scalar that starts at
/// character `index` past its opening quote's column.
fn reindent_quoted(text: &str, index: usize) -> Option<String> {
    let start = text.char_indices().nth(index).map(|(byte, _)| byte)?;
    let quote = *text.as_bytes().get(start)?;
    if quote != b'\'' && quote != b'"' {
        return None;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
    let needed = text[line_start..start].chars().count() + 1;
    let bytes = text.as_bytes();
    let mut end = start + 1;
    loop {
        match bytes.get(end)? {
            b'\\' if quote == b'"' => end += 2,
            b'\'' if quote == b'\'' && bytes.get(end + 1) == Some(&b'\'') => end += 2,
            c if *c == quote => break,
            _ => end += 1,
        }
    }
    let mut fixed = String::with_capacity(text.len() + 64);
    fixed.push_str(&text[..start]);
    for (n, line) in text[start..end].split('\n').enumerate() {
        if n > 0 {
            fixed.push('\n');
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            if indent < needed && !line.trim().is_empty() {
                fixed.extend(std::iter::repeat_n(' ', needed - indent));
            }
        }
        fixed.push_str(line);
    }
    fixed.push_str(&text[end..]);
    Some(fixed)
}

pub(super) fn parse_documents(text: &str) -> Result<Vec<Document>, ParseFail> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut builder: Option<(Builder, Position)> = None;
    let mut nodes_total = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| ParseFail {
            position: Position {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            index: Some(e.marker().index()),
            message: e.info().to_string(),
        })?;
        let at = Position::of(span);
        match event {
            Event::DocumentStart(_) => {
                builder = Some((
                    Builder {
                        stack: Vec::new(),
                        anchors: HashMap::new(),
                        nodes: nodes_total,
                        index: Index::new(),
                        text_lines: HashMap::new(),
                        root: None,
                    },
                    at,
                ))
            }
            Event::DocumentEnd => {
                if let Some((b, start)) = builder.take() {
                    nodes_total = b.nodes;
                    documents.push(Document {
                        value: b.root.unwrap_or(Value::Null),
                        start,
                        index: b.index,
                        text_lines: b.text_lines,
                    });
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            event => {
                let Some((b, _)) = builder.as_mut() else {
                    return Err(ParseFail::from((
                        at,
                        "content outside a document".to_string(),
                    )));
                };
                b.event(event, at, span.end.line())
                    .map_err(ParseFail::from)?;
            }
        }
    }
    Ok(documents)
}

impl Builder {
    fn event(&mut self, event: Event, at: Position, end_line: usize) -> Result<(), Fail> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, at)?;
                let value = match self.stack.last_mut() {
                    // A key: always text, as Kubernetes reads keys.
                    Some(Frame::Mapping {
                        key: key @ None,
                        path,
                        map,
                        ..
                    }) => {
                        let child = join(path, &text);
                        if map.contains_key(text.as_ref()) {
                            let first = self.index.get(&child).map_or(0, |p| p.line);
                            return Err((
                                at,
                                format!("duplicate key {text:?} (first at line {first})"),
                            ));
                        }
                        self.index.insert(child, at);
                        *key = Some(text.into_owned());
                        return Ok(());
                    }
                    _ => {
                        let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                        if style == ScalarStyle::Plain && !tagged_str {
                            resolve_plain(&text)
                        } else {
                            Value::String(text.into_owned())
                        }
                    }
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), 1));
                }
                let path = self.child_position(at);
                // A `|` block's span starts on its first content line.
                if style == ScalarStyle::Literal || end_line == at.line {
                    self.text_lines.insert(path, at.line);
                }
                self.put(value, at)
            }
            Event::Alias(anchor) => {
                let Some((value, size)) = self.anchors.get(&anchor).cloned() else {
                    return Err((at, "alias to an unknown anchor".into()));
                };
                self.count(size, at)?;
                if let Some(Frame::Mapping { key: None, .. }) = self.stack.last() {
                    return match value {
                        Value::String(key) => self.event(
                            Event::Scalar(key.into(), ScalarStyle::Plain, 0, None),
                            at,
                            end_line,
                        ),
                        _ => Err((at, "a mapping key must be a plain value".into())),
                    };
                }
                self.child_position(at);
                self.put(value, at)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if let Some(Frame::Mapping { key: None, .. }) = self.stack.last() {
                    return Err((
                        at,
                        "a mapping key must be a plain value, not a collection".into(),
                    ));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err((at, format!("nested deeper than {MAX_DEPTH} levels")));
                }
                self.count(1, at)?;
                let path = self.child_position(at);
                let nodes_before = self.nodes;
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Sequence {
                            items: Vec::new(),
                            path,
                            anchor,
                            nodes_before,
                        }
                    } else {
                        Frame::Mapping {
                            map: Map::new(),
                            path,
                            anchor,
                            nodes_before,
                            key: None,
                            merges: Vec::new(),
                        }
                    });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, nodes_before) = match self.stack.pop() {
                    Some(Frame::Sequence {
                        items,
                        anchor,
                        nodes_before,
                        ..
                    }) => (Value::Array(items), anchor, nodes_before),
                    Some(Frame::Mapping {
                        mut map,
                        anchor,
                        nodes_before,
                        merges,
                        ..
                    }) => {
                        for (k, v) in merges.into_iter().flatten() {
                            map.entry(k).or_insert(v);
                        }
                        (Value::Object(map), anchor, nodes_before)
                    }
                    None => return Err((at, "unbalanced collection end".into())),
                };
                if anchor != 0 {
                    let size = self.nodes - nodes_before + 1;
                    self.anchors.insert(anchor, (value.clone(), size));
                }
                self.put(value, at)
            }
            _ => Ok(()),
        }
    }

    fn count(&mut self, nodes: usize, at: Position) -> Result<(), Fail> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err((
                at,
                format!("more than {MAX_NODES} values (aliases expanding without end?)"),
            ));
        }
        Ok(())
    }

    /// Records where the next value of a sequence starts; returns the
    /// value's path. Mapping values are recorded at their key.
    fn child_position(&mut self, at: Position) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Sequence { items, path, .. }) => {
                let child = format!("{path}[{}]", items.len());
                self.index.insert(child.clone(), at);
                child
            }
            Some(Frame::Mapping { path, key, .. }) => {
                join(path, key.as_deref().unwrap_or_default())
            }
        }
    }

    /// Puts a finished value into its container, or makes it the root.
    fn put(&mut self, value: Value, at: Position) -> Result<(), Fail> {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                map, key, merges, ..
            }) => {
                let key = key.take().unwrap_or_default();
                if key != "<<" {
                    map.insert(key, value);
                    return Ok(());
                }
                // YAML 1.1 merge keys, which Kubernetes' YAML reader applies.
                let sources = match value {
                    Value::Array(list) => list,
                    single => vec![single],
                };
                for source in sources {
                    let Value::Object(source) = source else {
                        return Err((at, "`<<` merges a mapping or a list of mappings".into()));
                    };
                    merges.push(source);
                }
            }
        }
        Ok(())
    }
}

/// The YAML 1.2 core schema for plain scalars: null, booleans, integers,
/// floats; anything else is a string.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = |prefix: &str, radix: u32| {
        digits
            .strip_prefix(prefix)
            .filter(|d| !d.is_empty() && !negative && text.as_bytes()[0] != b'+')
            .and_then(|d| u64::from_str_radix(d, radix).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Value::Number(n.into());
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
            return Value::Number(n.into());
        }
    }
    let float_like = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && !digits.starts_with(['e', 'E']);
    if float_like {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}
