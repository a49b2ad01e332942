//! `kubectl describe` output pasted where an object belongs. It is text
//! for people ("API Version:", "Migration State:", "Target Node Address:"),
//! which YAML sometimes reads (as a mapping without `kind`) and sometimes
//! cannot; either way it is not the object, and the useful answer is the
//! command that prints the object.

/// What gave the text away: the line of its first title-case key and the
/// `kubectl get` command that prints the object instead.
#[derive(Debug, PartialEq, Eq)]
pub struct Describe {
    pub line: usize,
    pub command: String,
}

/// `Some` when `text` is `kubectl describe` output: every top-level line
/// is a title-case key, at least three keys are, and some have a space in
/// them, which no Kubernetes field name has.
pub fn detect(text: &str) -> Option<Describe> {
    let (mut keys, mut spaced, mut first) = (0, 0, None);
    let (mut kind, mut name, mut namespace) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let top = !line.starts_with([' ', '\t']);
        let Some((key, value)) = title_key(trimmed) else {
            if top {
                // A top-level line that is not a title-case key: YAML or JSON.
                return None;
            }
            continue;
        };
        keys += 1;
        spaced += usize::from(key.contains(' '));
        first.get_or_insert(n + 1);
        if top {
            let value = (!value.is_empty()).then(|| value.to_string());
            match key {
                "Kind" => kind = kind.or(value),
                "Name" => name = name.or(value),
                "Namespace" => namespace = namespace.or(value),
                _ => {}
            }
        }
    }
    if keys < 3 || spaced == 0 {
        return None;
    }
    let mut command = format!(
        "kubectl get {} {}",
        kind.map_or("KIND".into(), |k| k.to_lowercase()),
        name.as_deref().unwrap_or("NAME")
    );
    if let Some(namespace) = namespace.filter(|n| n != "<none>") {
        command += &format!(" -n {namespace}");
    }
    Some(Describe {
        line: first?,
        command: command + " -o yaml",
    })
}

/// `Title Case Words: value` -> (key, value).
fn title_key(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    if !value.is_empty() && !value.starts_with([' ', '\t']) {
        return None;
    }
    let words_ok = key.split(' ').all(|word| {
        let mut chars = word.chars();
        chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_alphanumeric())
    });
    words_ok.then(|| (key, value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_text_is_told_from_objects() {
        let describe = "Name:         vm1\nNamespace:    default\nLabels:       a=b\nAPI Version:  kubevirt.io/v1\n\
                        Kind:         VirtualMachineInstance\nStatus:\n  Migration State:\n    Target Node Address:  10.0.0.1\n";
        assert_eq!(
            detect(describe),
            Some(Describe {
                line: 1,
                command: "kubectl get virtualmachineinstance vm1 -n default -o yaml".into()
            })
        );
        let fragment = "Migration State:\n    Abort Requested:  true\n    Completed:        true\n";
        assert_eq!(
            detect(fragment).unwrap().command,
            "kubectl get KIND NAME -o yaml"
        );
        for object in [
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  Some Key: x\n",
            "{\"kind\": \"X\", \"Migration State\": {}}",
            "Name: a\nKind: B\nStatus: c\n",
            "kind: X\nmetadata: {name: p}\n",
        ] {
            assert_eq!(detect(object), None, "{object}");
        }
    }
}
