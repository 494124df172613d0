//! `GET /api/v1/audit?since=&limit=&cursor=`: the audit log (see
//! `crate::audit`), oldest first by record id, paged by the store (a
//! cursor is the last id served, so records appended meanwhile show up on
//! later pages, never twice). `since` is an RFC 3339 time; records at or
//! after it are listed. Records never hold a value or a key.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::api::blocking;
use super::page::{PageQuery, cursor_for};
use super::reply::Json;
use super::router::Ctx;
use crate::clock::{rfc3339, to_ms};
use crate::error::GatewayError;
use crate::store::StoredAudit;

/// `GET /api/v1/audit`.
#[derive(Debug, Serialize)]
pub struct AuditList {
    pub records: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// One audit record as the API shows it.
#[derive(Debug, Serialize)]
pub struct AuditView {
    pub id: u64,
    pub at: String,
    pub actor: ActorView,
    /// `key.create`, `token.value.set`, `connector.update`, ...
    pub action: String,
    pub object: ObjectView,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    /// First 8 hex digits of the value's SHA-256, never the value.
    pub fingerprint_before: Option<String>,
    pub fingerprint_after: Option<String>,
    pub detail: Option<String>,
}

/// Who made the change; `key_id` is `null` for keygate itself.
#[derive(Debug, Serialize)]
pub struct ActorView {
    pub client: String,
    pub key_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ObjectView {
    /// `key`, `token`, `connector`, `role` or `client`.
    pub kind: String,
    /// The object's name, or a key's id.
    pub name: String,
}

impl From<StoredAudit> for AuditView {
    fn from(a: StoredAudit) -> Self {
        let r = a.record;
        AuditView {
            id: a.id,
            at: rfc3339(UNIX_EPOCH + Duration::from_millis(r.at_ms)),
            actor: ActorView {
                client: r.actor_client,
                key_id: r.actor_key,
            },
            action: r.action,
            object: ObjectView {
                kind: r.object_kind,
                name: r.object_name,
            },
            version_before: r.version_before,
            version_after: r.version_after,
            fingerprint_before: r.fingerprint_before,
            fingerprint_after: r.fingerprint_after,
            detail: r.detail,
        }
    }
}

pub async fn list(cx: Ctx) -> Result<Json<AuditList>, GatewayError> {
    let (q, extra) = PageQuery::<u64>::parse_with(cx.req.uri().query(), &["since"])?;
    let since = extra.get("since").map(parse_since).transpose()?;
    let shared = Arc::clone(&cx.shared);
    // One more than a page: whether it comes back says if a next page exists.
    let (after, limit) = (q.after, q.limit);
    let mut rows = blocking(move || {
        shared
            .store()
            .list_audit(since.map(to_ms), after, limit + 1)
    })
    .await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|a| cursor_for(&a.id))
    } else {
        None
    };
    Ok(Json(AuditList {
        records: rows.into_iter().map(AuditView::from).collect(),
        next_cursor,
    }))
}

/// `since`: an RFC 3339 time, `Z` or a numeric offset
/// (`2025-01-01T00:00:00Z`, `2025-01-01T02:00:00+02:00`; a `+` sent in a
/// query must be written `%2B`).
fn parse_since(text: &str) -> Result<SystemTime, GatewayError> {
    let bad = || {
        GatewayError::BadRequest("since must be an RFC 3339 time, like 2025-01-01T00:00:00Z".into())
    };
    let t = text.trim();
    if !t.is_ascii() || t.len() < 7 {
        return Err(bad());
    }
    let (local, offset) = if let Some(base) = t.strip_suffix(['Z', 'z']) {
        (base, 0i64)
    } else {
        let (base, off) = t.split_at(t.len() - 6);
        let b = off.as_bytes();
        let sign = match b[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let two = |s: &str| -> Option<i64> {
            (s.len() == 2 && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let (h, m) = match (b[3], two(&off[1..3]), two(&off[4..6])) {
            (b':', Some(h), Some(m)) if h < 24 && m < 60 => (h, m),
            _ => return Err(bad()),
        };
        (base, sign * (h * 3600 + m * 60))
    };
    if !local.contains(['T', 't']) {
        return Err(bad());
    }
    let at = humantime::parse_rfc3339_weak(&local.to_ascii_uppercase()).map_err(|_| bad())?;
    // `local` is the time at `offset`: UTC is that minus the offset.
    let shift = Duration::from_secs(offset.unsigned_abs());
    let utc = if offset >= 0 {
        at.checked_sub(shift)
    } else {
        at.checked_add(shift)
    };
    utc.ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Option<u64> {
        parse_since(text).ok().map(to_ms)
    }

    #[test]
    fn since_is_rfc3339_with_z_or_an_offset() {
        let utc = ms("2025-01-01T00:00:00Z").expect("Z");
        assert_eq!(utc, 1_735_689_600_000);
        assert_eq!(ms("2025-01-01T02:00:00+02:00"), Some(utc));
        assert_eq!(ms("2024-12-31T23:30:00-00:30"), Some(utc));
        assert_eq!(ms("2025-01-01t00:00:00z"), Some(utc));
        assert_eq!(ms("2025-01-01T00:00:00.250Z"), Some(utc + 250));
        for bad in [
            "",
            "yesterday",
            "2025-01-01",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00+2:00",
            "2025-01-01T00:00:00+24:00",
            "2025-01-01T00:00:00+02-00",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00é00:00",
            "1700000000",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }
}
