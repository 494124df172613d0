//! Path grants: `/v1/charges/**`, `/v1/customers/*`. `*` matches exactly one
//! non-empty segment, `**` any number of segments including none (so
//! `/v1/charges/**` also allows `/v1/charges` itself). Everything else is
//! literal and case-sensitive, as URL paths are.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    One,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    parts: Vec<Part>,
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path pattern `{text}` must start with /"));
        };
        let parts = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/')
                .map(|seg| match seg {
                    "*" => Ok(Part::One),
                    "**" => Ok(Part::Any),
                    s if s.contains('*') => Err(format!(
                        "path pattern `{text}`: `*` must stand alone in its segment"
                    )),
                    s => Ok(Part::Literal(s.to_string())),
                })
                .collect::<Result<_, _>>()?
        };
        Ok(PathPattern {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `path` is the upstream-relative path, starting with `/`, no query.
    pub fn matches(&self, path: &str) -> bool {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let segs: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        match_parts(&self.parts, &segs)
    }
}

fn match_parts(parts: &[Part], segs: &[&str]) -> bool {
    match parts.split_first() {
        None => segs.is_empty(),
        Some((Part::Any, tail)) => (0..=segs.len()).any(|skip| match_parts(tail, &segs[skip..])),
        Some((Part::One, tail)) => {
            matches!(segs.first(), Some(s) if !s.is_empty()) && match_parts(tail, &segs[1..])
        }
        Some((Part::Literal(l), tail)) => {
            segs.first() == Some(&l.as_str()) && match_parts(tail, &segs[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).expect("pattern")
    }

    #[test]
    fn single_segment_wildcard() {
        let pat = p("/v1/customers/*");
        assert!(pat.matches("/v1/customers/cus_1"));
        assert!(!pat.matches("/v1/customers"));
        assert!(!pat.matches("/v1/customers/"));
        assert!(!pat.matches("/v1/customers/cus_1/cards"));
    }

    #[test]
    fn any_depth_wildcard() {
        let pat = p("/v1/charges/**");
        assert!(pat.matches("/v1/charges"));
        assert!(pat.matches("/v1/charges/ch_1"));
        assert!(pat.matches("/v1/charges/ch_1/refunds"));
        assert!(!pat.matches("/v1/chargesX"));
        assert!(!pat.matches("/v2/charges/ch_1"));
        assert!(p("/**").matches("/anything/at/all"));
        assert!(p("/a/**/z").matches("/a/b/c/z"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(PathPattern::parse("v1/x").is_err());
        assert!(PathPattern::parse("/v1/ch*").is_err());
    }
}
