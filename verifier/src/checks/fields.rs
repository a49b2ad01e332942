//! Typed reads of an object's fields that raise a finding, instead of
//! guessing, when a field has the wrong type or is not known at all.

use serde_json::{Map, Value};

use super::findings::{Check, Findings, FIELD_UNKNOWN, FIELD_WRONG_TYPE};
use crate::config::documents::{join, kind_of, Object};

/// One object being checked and where its findings go.
pub struct Ctx<'a> {
    pub object: &'a Object,
    pub findings: &'a mut Findings,
    /// Who reads these fields, for messages: "the bridge plugin", "KubeVirt".
    pub reader: &'static str,
    /// Whether the reader is the Kubernetes API server, which prunes fields
    /// a kind does not have (a CNI plugin ignores them).
    pub api: bool,
}

impl Ctx<'_> {
    pub fn raise(&mut self, check: Check, path: &str, message: String, fix: String) {
        self.findings.object(self.object, check, path, message, fix);
    }

    fn wrong_type(&mut self, path: &str, value: &Value, expected: &str, example: &str) {
        let shown = match value {
            Value::String(s) => format!("{} ({s:?})", kind_of(value)),
            Value::Number(n) => format!("{} ({n})", kind_of(value)),
            Value::Bool(b) => format!("{} ({b})", kind_of(value)),
            _ => kind_of(value).to_string(),
        };
        self.raise(
            FIELD_WRONG_TYPE,
            path,
            format!("`{path}` is {shown}; {} expects {expected}", self.reader),
            format!("write it as {expected}, e.g. {example}"),
        );
    }

    /// A boolean field, if present and a boolean.
    pub fn bool(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        let path = join(path, key);
        match field(map, key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(&path, other, "a boolean", &format!("`\"{key}\": true`"));
                None
            }
        }
    }

    /// An integer field, if present and an integer.
    pub fn int(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<i64> {
        let path = join(path, key);
        let value = field(map, key)?;
        match value.as_i64() {
            Some(n) => Some(n),
            None if past_i64(value) => {
                self.raise(
                    FIELD_WRONG_TYPE,
                    &path,
                    format!(
                        "`{path}` {value} is past the largest 64-bit integer; {} refuses it",
                        self.reader
                    ),
                    format!("write `{key}` as an integer below 9223372036854775808"),
                );
                None
            }
            None => {
                self.wrong_type(
                    &path,
                    value,
                    "an integer",
                    &format!("`\"{key}\": 2` (no quotes, no decimals)"),
                );
                None
            }
        }
    }

    /// A string field, if present and a string.
    pub fn str<'m>(
        &mut self,
        map: &'m Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'m str> {
        let path = join(path, key);
        match field(map, key)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(
                    &path,
                    other,
                    "a string",
                    &format!("`\"{key}\": \"...\"` in quotes"),
                );
                None
            }
        }
    }

    /// A mapping field, if present and a mapping.
    pub fn map<'m>(
        &mut self,
        map: &'m Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'m Map<String, Value>> {
        let path = join(path, key);
        match field(map, key)? {
            Value::Object(m) => Some(m),
            other => {
                self.wrong_type(
                    &path,
                    other,
                    "a mapping (object)",
                    &format!("`\"{key}\": {{...}}`"),
                );
                None
            }
        }
    }

    /// A sequence field, if present and a sequence.
    pub fn list<'m>(
        &mut self,
        map: &'m Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'m Vec<Value>> {
        let path = join(path, key);
        match field(map, key)? {
            Value::Array(list) => Some(list),
            other => {
                self.wrong_type(&path, other, "a list", &format!("`\"{key}\": [...]`"));
                None
            }
        }
    }

    /// The mapping `value` at `path`, or a wrong-type finding.
    pub fn as_map<'m>(&mut self, value: &'m Value, path: &str) -> Option<&'m Map<String, Value>> {
        match value {
            Value::Object(m) => Some(m),
            other => {
                self.wrong_type(path, other, "a mapping (object)", "`{...}`");
                None
            }
        }
    }

    /// Reports every key of `map` that is not in `known`. Keys are matched
    /// as the reader matches them: Go's encoding/json (CNI plugins) ignores
    /// case, the Kubernetes API does not.
    pub fn unknown_fields(
        &mut self,
        map: &Map<String, Value>,
        known: &[&str],
        path: &str,
        ignore_case: bool,
    ) {
        for key in map.keys() {
            let matches = |k: &&str| {
                if ignore_case {
                    k.eq_ignore_ascii_case(key)
                } else {
                    *k == key
                }
            };
            if known.iter().any(matches) {
                continue;
            }
            let field_path = join(path, key);
            let fix = match closest(key, known).or_else(|| related(key, known)) {
                Some(near) => format!("did you mean `{near}`? Rename it, or remove `{key}`"),
                None => format!(
                    "remove `{key}`; {} knows: {}",
                    self.reader,
                    known.join(", ")
                ),
            };
            self.unknown(&field_path, fix);
        }
    }
}

impl Ctx<'_> {
    /// A field `path` that the reader does not have, and `fix`.
    pub fn unknown(&mut self, path: &str, fix: String) {
        let message = if self.api {
            format!(
                "`{path}` is not a field of {}: the API server prunes it (or refuses the object under strict \
                 field validation), so whatever it sets has no effect",
                self.reader
            )
        } else {
            format!(
                "`{path}` is not a field {} reads; it is ignored",
                self.reader
            )
        };
        self.raise(FIELD_UNKNOWN, path, message, fix);
    }
}

/// A number that is an integer past i64 (a u64 above it, or an integral
/// float the YAML reader had to use).
pub fn past_i64(value: &Value) -> bool {
    value.as_u64().is_some()
        || value
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.2e18)
}

/// A known field that begins as `key` does (`migrationConfiguration` ->
/// `migrations`), when no near spelling is found.
fn related<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let stem = |k: &str| k.to_ascii_lowercase().chars().take(8).collect::<String>();
    let key_stem = stem(key);
    let lower = key.to_ascii_lowercase();
    let stemmed = (key_stem.len() == 8)
        .then(|| known.iter().find(|k| stem(k) == key_stem).copied())
        .flatten();
    // `autoConverge` -> `allowAutoConverge`.
    stemmed.or_else(|| {
        (lower.len() >= 6)
            .then(|| {
                known
                    .iter()
                    .find(|k| k.to_ascii_lowercase().ends_with(&lower))
                    .copied()
            })
            .flatten()
    })
}

/// A field present and not null (JSON `null` reads as "absent" in Go).
pub fn field<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// The known field nearest to a misspelt one, if it is near enough.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (distance(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let known = ["isGateway", "ipMasq", "vlan", "completionTimeoutPerGiB"];
        assert_eq!(closest("isGatway", &known), Some("isGateway"));
        assert_eq!(
            closest("completionTimeoutPerGib", &known),
            Some("completionTimeoutPerGiB")
        );
        assert_eq!(closest("vlna", &known), Some("vlan"));
        assert_eq!(closest("somethingElse", &known), None);
        assert_eq!(
            related(
                "migrationConfiguration",
                &["developerConfiguration", "migrations"]
            ),
            Some("migrations")
        );
        assert_eq!(
            related("autoConverge", &["allowPostCopy", "allowAutoConverge"]),
            Some("allowAutoConverge")
        );
    }
}
