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

/// Returns 1-based `(line, column)` of the deepest segment of `path` found.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    let mut lines = significant_lines(text);
    let (mut lo, mut hi) = (0usize, lines.len());
    let mut parent_indent: isize = -1;
    let mut found: Option<(usize, usize)> = None;
    let mut current_line: Option<usize> = None;

    for seg in path {
        let child_indent = lines[lo..hi]
            .iter()
            .find(|l| l.indent as isize > parent_indent)
            .map(|l| l.indent);
        let hit = child_indent.and_then(|ci| match seg {
            Seg::Key(k) => {
                (lo..hi).find(|&i| lines[i].indent == ci && key_matches(lines[i].body, k))
            }
            Seg::Index(n) => (lo..hi)
                .filter(|&i| lines[i].indent == ci && lines[i].body.starts_with('-'))
                .nth(*n),
        });
        let Some(i) = hit else {
            // A key inside a flow mapping on the current line: `{ env: X }`.
            if let (Seg::Key(k), Some(li)) = (seg, current_line) {
                let l = &lines[li];
                if let Some(off) = l.body.find(&format!("{k}:")) {
                    return Some((l.no, l.indent + off + 1));
                }
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
                parent_indent = ci as isize;
            }
            Seg::Index(_) => {
                // The item's own fields start on the dash line, two columns in.
                let after_dash = lines[i].body[1..].trim_start();
                let shift = lines[i].body.len() - after_dash.len();
                lines[i].indent += shift;
                lines[i].body = after_dash;
                lo = i;
                hi = end;
                parent_indent = ci as isize;
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
    fn falls_back_to_deepest_known() {
        use Seg::*;
        assert_eq!(locate(DOC, &[Key("server"), Key("nope")]), Some((1, 1)));
        assert_eq!(locate(DOC, &[Key("nope")]), None);
    }
}
