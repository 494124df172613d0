//! Finds the line and column of a key path (`connectors.stripe.tokens[1]`) in
//! YAML text, so validation errors can say `PATH:LINE:COL`. serde_yaml gives
//! positions only for syntax errors, not for values, hence this small walker.
//! It understands block mappings and sequences plus keys inside flow
//! mappings on one line; where it loses the trail it answers the deepest
//! position it found, which still points the operator at the right block.

/// One step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Line<'t> {
    no: usize,
    indent: usize,
    body: &'t str,
}

fn significant_lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let body = raw.trim_start();
            if body.is_empty() || body.starts_with('#') || body == "---" {
                return None;
            }
            Some(Line {
                no: i + 1,
                indent: raw.len() - body.len(),
                body,
            })
        })
        .collect()
}

fn key_matches(body: &str, key: &str) -> bool {
    for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(rest) = body.strip_prefix(quoted.as_str())
            && rest.trim_start().starts_with(':')
        {
            return true;
        }
    }
    false
}

/// Byte offset of the `nth` (from 0) occurrence of `key:` as a key inside a
/// flow mapping written on one line (`{ env: A, file: b }`): it must follow
/// `{`, `,` or the line start, so `file:` is not found inside `profile:`.
/// Returns where the key starts (its quote, if quoted) and where its text
/// ends.
fn flow_key_offset(body: &str, key: &str, nth: usize) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let mut hits = 0;
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(rel) = body[from..].find(key) {
        let at = from + rel;
        from = at + key.len();
        let before = body[..at].trim_end();
        let boundary = before.is_empty() || before.ends_with('{') || before.ends_with(',');
        let (start, rest) = match (
            at.checked_sub(1).map(|i| bytes[i]),
            bytes.get(at + key.len()),
        ) {
            (Some(q @ (b'"' | b'\'')), Some(c)) if *c == q => {
                let before = body[..at - 1].trim_end();
                let boundary = before.is_empty() || before.ends_with('{') || before.ends_with(',');
                (boundary.then_some(at - 1), &body[at + key.len() + 1..])
            }
            _ => (boundary.then_some(at), &body[at + key.len()..]),
        };
        if let Some(start) = start
            && rest.trim_start().starts_with(':')
        {
            if hits == nth {
                return Some((start, at + key.len()));
            }
            hits += 1;
        }
    }
    None
}

/// The RFC 6901 JSON pointer of a path (`/connectors/stripe/tokens/1`):
/// how the admin API names the field at fault in a JSON body.
pub fn pointer(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) => out.push_str(&escape_pointer(k)),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// One reference token of a JSON pointer: `~` → `~0`, `/` → `~1`.
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Returns 1-based `(line, column)` of the deepest segment of `path` found.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    locate_nth(text, path, 0)
}

/// Like [`locate`], but the last segment, when it is a key, is its `nth`
/// occurrence (from 0) in its mapping: the position of a repeated key.
pub fn locate_nth(text: &str, path: &[Seg<'_>], nth: usize) -> Option<(usize, usize)> {
    let mut lines = significant_lines(text);
    let (mut lo, mut hi) = (0usize, lines.len());
    // `None` above the top level, where every line is a child.
    let mut parent_indent: Option<usize> = None;
    let mut found: Option<(usize, usize)> = None;
    let mut current_line: Option<usize> = None;

    for (depth, seg) in path.iter().enumerate() {
        let skip = if depth + 1 == path.len() { nth } else { 0 };
        let child_indent = lines[lo..hi]
            .iter()
            .find(|l| parent_indent.is_none_or(|p| l.indent > p))
            .map(|l| l.indent);
        let hit = child_indent.and_then(|ci| match seg {
            Seg::Key(k) => (lo..hi)
                .filter(|&i| lines[i].indent == ci && key_matches(lines[i].body, k))
                .nth(skip),
            Seg::Index(n) => (lo..hi)
                .filter(|&i| lines[i].indent == ci && lines[i].body.starts_with('-'))
                .nth(*n),
        });
        let Some(i) = hit else {
            // The rest of the path sits inside a flow mapping on the current
            // line (`a: { value: { env: X } }`): follow its keys left to
            // right there; list indices inside flow style are not resolved.
            let Some(li) = current_line else {
                return found;
            };
            let l = &lines[li];
            let mut at = l.body.find(['{', '[']).unwrap_or(0);
            for (d, s) in path.iter().enumerate().skip(depth) {
                let Seg::Key(k) = s else { continue };
                let skip = if d + 1 == path.len() { nth } else { 0 };
                let Some((start, end)) = flow_key_offset(&l.body[at..], k, skip) else {
                    break;
                };
                found = Some((l.no, l.indent + at + start + 1));
                at += end;
            }
            return found;
        };
        let ci = lines[i].indent;
        found = Some((lines[i].no, ci + 1));
        current_line = Some(i);
        let end = (i + 1..hi).find(|&j| lines[j].indent <= ci).unwrap_or(hi);
        match seg {
            Seg::Key(_) => {
                lo = i + 1;
                hi = end;
                parent_indent = Some(ci);
            }
            Seg::Index(_) => {
                // The item's own fields start on the dash line, two columns in.
                let after_dash = lines[i].body[1..].trim_start();
                let shift = lines[i].body.len() - after_dash.len();
                lines[i].indent += shift;
                lines[i].body = after_dash;
                lo = i;
                hi = end;
                parent_indent = Some(ci);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  listen: 1.2.3.4:80
tokens:
  a:
    value: { env: A_KEY }
connectors:
  stripe:
    tokens: [a]
    headers:
      X-One: \"1\"
roles:
  billing:
    allow:
      - connector: stripe
        methods: [GET]
      - connector: other
";

    #[test]
    fn finds_nested_keys() {
        use Seg::*;
        assert_eq!(locate(DOC, &[Key("server"), Key("listen")]), Some((2, 3)));
        assert_eq!(
            locate(
                DOC,
                &[
                    Key("connectors"),
                    Key("stripe"),
                    Key("headers"),
                    Key("X-One")
                ]
            ),
            Some((10, 7))
        );
        assert_eq!(
            locate(DOC, &[Key("tokens"), Key("a"), Key("value"), Key("env")]),
            Some((5, 14))
        );
    }

    #[test]
    fn finds_sequence_items() {
        use Seg::*;
        let p = [
            Key("roles"),
            Key("billing"),
            Key("allow"),
            Index(1),
            Key("connector"),
        ];
        assert_eq!(locate(DOC, &p), Some((16, 9)));
        let p = [
            Key("roles"),
            Key("billing"),
            Key("allow"),
            Index(0),
            Key("methods"),
        ];
        assert_eq!(locate(DOC, &p), Some((15, 9)));
    }

    #[test]
    fn finds_repeated_keys_in_block_and_flow_style() {
        use Seg::*;
        let doc = "a:\n  b: 1\n  b: 2\nc: { d: 1, \"d\": 2 }\n";
        assert_eq!(locate_nth(doc, &[Key("a"), Key("b")], 1), Some((3, 3)));
        assert_eq!(locate_nth(doc, &[Key("c"), Key("d")], 0), Some((4, 6)));
        assert_eq!(locate_nth(doc, &[Key("c"), Key("d")], 1), Some((4, 12)));
    }

    #[test]
    fn falls_back_to_deepest_known() {
        use Seg::*;
        assert_eq!(locate(DOC, &[Key("server"), Key("nope")]), Some((1, 1)));
        assert_eq!(locate(DOC, &[Key("nope")]), None);
    }
}
