//! `keygate keys …` and `keygate tokens …`: thin clients of the admin API.
//! The admin key comes from `KEYGATE_ADMIN_KEY` only (argv is visible to
//! every user through `ps`); values for `tokens set` come from stdin.

use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const ADMIN_KEY_ENV: &str = "KEYGATE_ADMIN_KEY";

pub struct AdminClient {
    base: String,
    key: String,
}

impl AdminClient {
    pub fn from_env(base: &str) -> Result<Self, String> {
        let key = std::env::var(ADMIN_KEY_ENV).map_err(|_| {
            format!(
                "set {ADMIN_KEY_ENV} to an admin API key (see initial-admin.key beside the store)"
            )
        })?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// Sends one request; returns the status and the JSON body (or Null).
    #[expect(
        clippy::disallowed_methods,
        reason = "the admin API's answer: a key list grows with the store, and the operator chose the URL; capping it would cut a real listing"
    )]
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| format!("bad admin URL: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

impl AdminClient {
    /// Every page of an admin list whose items are in `field`, following
    /// `next_cursor`, as one answer (`{field: [...], "next_cursor": null}`).
    /// The first status other than 200 is returned as it came.
    pub async fn list_all(&self, path: &str, field: &str) -> Result<(StatusCode, Value), String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                // Cursors are hex: nothing to escape.
                Some(c) => format!("{path}?limit=1000&cursor={c}"),
                None => format!("{path}?limit=1000"),
            };
            let (status, v) = self.call(Method::GET, &query, None).await?;
            if status != StatusCode::OK {
                return Ok((status, v));
            }
            items.extend(v[field].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
                Some(_) => {
                    return Err(format!(
                        "{path}: the admin API handed out the same cursor twice"
                    ));
                }
                None => break,
            }
        }
        let mut out = serde_json::Map::new();
        out.insert(field.to_string(), Value::Array(items));
        out.insert("next_cursor".into(), Value::Null);
        Ok((StatusCode::OK, Value::Object(out)))
    }
}

/// Prints an admin error as `keygate: 403 forbidden: …` and fails.
pub fn fail(status: StatusCode, body: &Value) -> ExitCode {
    let e = &body["error"];
    eprintln!(
        "keygate: {} {}: {}",
        status.as_u16(),
        e["code"].as_str().unwrap_or("error"),
        e["message"].as_str().unwrap_or("")
    );
    ExitCode::FAILURE
}

/// How every admin command ends: an unexpected status fails with the API's
/// error; otherwise the API's JSON (`--json`) or the human form is printed.
pub fn finish(
    status: StatusCode,
    want: StatusCode,
    v: &Value,
    json: bool,
    human: impl FnOnce(&Value) -> Result<(), ExitCode>,
) -> ExitCode {
    if status != want {
        return fail(status, v);
    }
    let printed = if json {
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        match v["key"].as_str() {
            Some(_) => print_new_key(&text, v["id"].as_str().unwrap_or("-")),
            None => print_line(&text),
        }
    } else {
        human(v)
    };
    printed.err().unwrap_or(ExitCode::SUCCESS)
}

/// Writes `text` and a newline to stdout, without `println!`'s panic.
fn write_line(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Prints one line of a command's output. A reader that went away
/// (`keygate keygen | head -1`) ends the command quietly with success, as
/// any Unix filter does (Rust ignores SIGPIPE, so `println!` would panic
/// with exit 101); any other write failure (a full disk) is reported,
/// since the output was lost.
pub fn print_line(text: &str) -> Result<(), ExitCode> {
    write_line(text).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            ExitCode::SUCCESS
        } else {
            eprintln!("keygate: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Prints a new API key, which exists nowhere else: if it cannot be
/// written, even to a closed pipe, the command fails and says which key
/// to revoke instead of ending quietly.
pub fn print_new_key(text: &str, id: &str) -> Result<(), ExitCode> {
    write_line(text).map_err(|e| {
        eprintln!(
            "keygate: key {id} was created but could not be written to stdout ({e}); revoke it: keygate keys revoke {id}"
        );
        ExitCode::FAILURE
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A plain aligned table: one header row, one row per item.
pub fn table(items: &[Value], columns: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| columns.iter().map(|(_, k)| text(&it[*k])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(columns.iter().map(|(h, _)| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

pub const KEY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("CLIENT", "client"),
    ("PREFIX", "prefix"),
    ("ROLES", "roles"),
    ("STATE", "state"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
    ("SOURCE", "source"),
];

pub const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("TYPE", "type"),
    ("HEADER", "header"),
    ("PREFIX", "prefix"),
    ("STATE", "state"),
    ("VERSION", "version"),
    ("FINGERPRINT", "fingerprint"),
    ("UPDATED", "updated_at"),
    ("LAST ERROR", "last_error"),
];

/// Reads a token value from stdin: one trailing newline (LF or CRLF) is
/// dropped, as `echo` and editors add one.
pub fn read_value_from_stdin() -> Result<String, String> {
    use std::io::Read;
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
    let v = buf.strip_suffix('\n').unwrap_or(&buf);
    let v = v.strip_suffix('\r').unwrap_or(v);
    if v.is_empty() {
        return Err(
            "no value on stdin (pipe it in: `printf %s \"$VALUE\" | keygate tokens set NAME`)"
                .into(),
        );
    }
    Ok(v.to_string())
}
