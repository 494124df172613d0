//! Paging for the admin lists: `?limit=&cursor=`, as Kong and Stripe do.
//! `limit` is 1 to 1000 (default 100); `cursor` is the `next_cursor` of
//! the previous page, opaque to clients: the hex of the last item's sort
//! key, so it stays valid while items come and go (a page starts after
//! that key, not at an offset that shifts under inserts and deletes).
//! Every answer carries `next_cursor`, `null` on the last page.
//!
//! A bad `limit`, a cursor this list could not have given out, a
//! parameter given twice, or any parameter the route does not take is
//! `400 bad_request` with a plain message that echoes nothing the client
//! sent (a mistyped query could hold a secret).
//!
//! [`page`] pages a list held in memory (keys, tokens, connectors,
//! clients, and roles once the catalog has them); a list paged by the
//! store (the audit log) uses [`PageQuery`] and [`cursor_for`] alone.

use crate::error::GatewayError;

/// Items per page when the query names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// The longest cursor accepted, in hex digits: no key is longer than half.
const MAX_CURSOR: usize = 2048;

/// What is wrong with a list query. The texts are the `400` messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("limit must be a whole number from 1 to {MAX_LIMIT}")]
    BadLimit,
    #[error(
        "cursor is not one this list gave out; pass the `next_cursor` of the previous page, or leave it out to start over"
    )]
    BadCursor,
    #[error("`{0}` is given twice")]
    Repeated(&'static str),
    #[error("the query string is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// The route's parameters, listed so the caller can fix the query.
    #[error("unknown query parameter; this route takes only {}", list(.0))]
    Unknown(Vec<&'static str>),
}

fn list(names: &[&'static str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The admin layer's own refusals map here rather than in `error.rs`,
/// which sits below `admin` and cannot name its types. All are the
/// client's mistake: `400 bad_request`.
impl From<PageError> for GatewayError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::BadLimit
            | PageError::BadCursor
            | PageError::Repeated(_)
            | PageError::BadEncoding
            | PageError::Unknown(_) => GatewayError::BadRequest(e.to_string()),
        }
    }
}

/// A list's sort key, which is what a cursor holds. Keys must be unique
/// within a list (a name, an id, a creation time with an id) and order
/// exactly like the list: a page is the `limit` smallest keys after the
/// cursor's.
pub trait SortKey: Ord + Sized {
    /// The key as cursor text (before the hex encoding).
    fn encode(&self) -> String;
    /// The key back from cursor text; `None` if it cannot be one.
    fn decode(text: &str) -> Option<Self>;
}

/// Names: tokens, connectors, clients, roles.
impl SortKey for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
}

/// Ids: the audit log's.
impl SortKey for u64 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        digits(text)
    }
}

/// `(created ms, id)`: keys, oldest first.
impl SortKey for (u64, String) {
    fn encode(&self) -> String {
        format!("{}.{}", self.0, self.1)
    }
    fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('.')?;
        Some((digits(ms)?, id.to_string()))
    }
}

/// Plain ASCII digits only (`u64::from_str` also takes a `+`).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The cursor a page ending at `last` hands out.
pub fn cursor_for<K: SortKey>(last: &K) -> String {
    hex::encode(last.encode())
}

fn decode_cursor<K: SortKey>(text: &str) -> Result<K, PageError> {
    if text.is_empty() || text.len() > MAX_CURSOR {
        return Err(PageError::BadCursor);
    }
    let bytes = hex::decode(text).map_err(|_| PageError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| PageError::BadCursor)?;
    K::decode(&text).ok_or(PageError::BadCursor)
}

/// A list query: how many items, and after which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery<K> {
    pub limit: usize,
    /// The key the previous page ended at; `None` for the first page.
    pub after: Option<K>,
}

/// The values of the extra parameters a route named in
/// [`PageQuery::parse_with`], percent-decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extra(Vec<(&'static str, String)>);

impl Extra {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<K: SortKey> PageQuery<K> {
    /// `?limit=&cursor=` and nothing else (`query` is the URI's query).
    pub fn parse(query: Option<&str>) -> Result<Self, PageError> {
        Self::parse_with(query, &[]).map(|(q, _)| q)
    }

    /// `?limit=&cursor=` and the route's own `extra` parameters (a filter
    /// such as the audit log's `since`); anything else is refused.
    pub fn parse_with(
        query: Option<&str>,
        extra: &[&'static str],
    ) -> Result<(Self, Extra), PageError> {
        let mut limit = None;
        let mut after = None;
        let mut extras = Extra::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match percent_decode(name)?.as_str() {
                "limit" => {
                    let n = digits(&value)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or(PageError::BadLimit)?;
                    if limit.replace(n).is_some() {
                        return Err(PageError::Repeated("limit"));
                    }
                }
                "cursor" => {
                    if after.replace(decode_cursor(&value)?).is_some() {
                        return Err(PageError::Repeated("cursor"));
                    }
                }
                other => {
                    let Some(known) = extra.iter().find(|e| **e == other) else {
                        let mut names = vec!["limit", "cursor"];
                        names.extend_from_slice(extra);
                        return Err(PageError::Unknown(names));
                    };
                    if extras.get(known).is_some() {
                        return Err(PageError::Repeated(known));
                    }
                    extras.0.push((known, value));
                }
            }
        }
        let q = PageQuery {
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            after,
        };
        Ok((q, extras))
    }
}

/// `%XX` escapes decoded; the rest kept as is (`+` too: no value here
/// holds a space, and an RFC 3339 offset holds a `+`).
fn percent_decode(text: &str) -> Result<String, PageError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PageError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PageError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| PageError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PageError::BadEncoding)
}

/// One page of `items`, in the order of `key`: the `q.limit` smallest
/// keys after `q.after`, sorted, and the cursor of the next page (`None`
/// when no item is left). `items` need not be sorted; the work is one
/// pass over them plus a sort of one page, so a list of 100 000 keys is
/// not sorted whole for each page.
pub fn page<T, K: SortKey>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    q: &PageQuery<K>,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<(K, T)> = items
        .into_iter()
        .map(|t| (key(&t), t))
        .filter(|(k, _)| q.after.as_ref().is_none_or(|after| k > after))
        .collect();
    let more = rest.len() > q.limit;
    if more {
        rest.select_nth_unstable_by(q.limit, |a, b| a.0.cmp(&b.0));
        rest.truncate(q.limit);
    }
    rest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let next = if more {
        rest.last().map(|(k, _)| cursor_for(k))
    } else {
        None
    };
    (rest.into_iter().map(|(_, t)| t).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(q: Option<&str>) -> Result<PageQuery<String>, PageError> {
        PageQuery::parse(q)
    }

    #[test]
    fn limit_defaults_and_is_bounded() {
        assert_eq!(names(None).expect("none").limit, DEFAULT_LIMIT);
        assert_eq!(names(Some("")).expect("empty").limit, DEFAULT_LIMIT);
        assert_eq!(names(Some("limit=1")).expect("1").limit, 1);
        assert_eq!(names(Some("limit=1000")).expect("1000").limit, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=",
            "limit",
            "limit=-1",
            "limit=+5",
            "limit=1.5",
            "limit=ten",
            "limit=99999999999999999999999",
        ] {
            assert_eq!(names(Some(bad)), Err(PageError::BadLimit), "{bad}");
        }
    }

    #[test]
    fn bad_cursors_repeats_and_unknown_parameters_are_refused() {
        for bad in [
            "cursor=",
            "cursor=zz",
            "cursor=abc",
            "cursor=ff",
            "cursor=%zz",
        ] {
            assert!(names(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            names(Some(&format!("cursor={}", "00".repeat(MAX_CURSOR)))),
            Err(PageError::BadCursor)
        );
        // A name cursor is no id cursor.
        let c = cursor_for(&"stripe".to_string());
        assert_eq!(
            PageQuery::<u64>::parse(Some(&format!("cursor={c}"))),
            Err(PageError::BadCursor)
        );
        assert_eq!(
            PageQuery::<(u64, String)>::parse(Some(&format!("cursor={c}"))),
            Err(PageError::BadCursor)
        );
        assert_eq!(
            names(Some("limit=1&limit=2")),
            Err(PageError::Repeated("limit"))
        );
        let e = names(Some("limit=5&sk_live_secret=1")).expect_err("unknown");
        assert_eq!(e, PageError::Unknown(vec!["limit", "cursor"]));
        assert!(!e.to_string().contains("sk_live"), "{e}");
        assert_eq!(
            GatewayError::from(e).code(),
            crate::error::ErrorCode::BadRequest
        );
    }

    #[test]
    fn extra_parameters_are_decoded_and_only_those_named() {
        let (q, extra) = PageQuery::<u64>::parse_with(
            Some("since=2025-01-01T00%3A00%3A00%2B02:00&limit=5"),
            &["since"],
        )
        .expect("parse");
        assert_eq!(q.limit, 5);
        assert_eq!(extra.get("since"), Some("2025-01-01T00:00:00+02:00"));
        assert!(PageQuery::<u64>::parse_with(Some("until=x"), &["since"]).is_err());
        assert_eq!(
            PageQuery::<u64>::parse_with(Some("since=a&since=b"), &["since"]),
            Err(PageError::Repeated("since"))
        );
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        // Keys as `(ms, id)`, given out of order, some sharing a time.
        let items: Vec<(u64, String)> = (0..250u64)
            .rev()
            .map(|i| (i / 3, format!("key_{i:03}")))
            .collect();
        let mut seen = Vec::new();
        let mut query = None;
        let mut pages = 0;
        loop {
            let q = PageQuery::<(u64, String)>::parse(Some(&format!(
                "limit=100{}",
                query.as_deref().unwrap_or("")
            )))
            .expect("query");
            let (page, next) = page(items.clone(), Clone::clone, &q);
            pages += 1;
            assert!(page.len() <= 100);
            seen.extend(page);
            match next {
                Some(c) => query = Some(format!("&cursor={c}")),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "no gap, no repeat, in key order");
    }

    #[test]
    fn an_exact_last_page_has_no_next_cursor_and_items_may_vanish_between_pages() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let q = PageQuery {
            limit: 2,
            after: None,
        };
        let (first, next) = page(names.clone(), Clone::clone, &q);
        assert_eq!(first, ["a", "b"]);
        let next = next.expect("more");
        // `b` is deleted before the next page: the page still starts at `c`.
        let q = PageQuery::<String>::parse(Some(&format!("limit=2&cursor={next}"))).expect("q");
        let (second, next) = page(names.into_iter().filter(|n| n != "b"), Clone::clone, &q);
        assert_eq!(second, ["c", "d"]);
        assert_eq!(next, None);
    }
}
