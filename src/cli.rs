//! The admin API's command-line clients: `keygate keys …`, `tokens …`,
//! `connectors …`, `roles …`, `clients …`, `audit` and `export`. Thin on
//! purpose: the gateway validates (one validator, JSON pointers in its
//! `422`), so the CLI only turns flags into the API's JSON, sends it, and
//! prints the answer as a table or as the API's own JSON (`--json`).
//!
//! Secrets stay off the command line, which every user can read through
//! `ps` and `/proc/PID/cmdline`: the admin key comes from
//! `KEYGATE_ADMIN_KEY` only, and a token's value only from stdin
//! (`--value-stdin`, `tokens set`) or a file (`-f FILE`). Nothing here
//! prints a value: the API never sends one back.
//!
//! Deliberately not here: any check the gateway makes (names, headers,
//! URLs). A second copy of those rules would drift from the first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderMap, IF_MATCH};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

pub const ADMIN_KEY_ENV: &str = "KEYGATE_ADMIN_KEY";

/// Items asked for per page when a list pages (the API's largest page):
/// few round trips for a big store, harmless where the API does not page.
const PAGE_LIMIT: usize = 1000;

pub struct AdminClient {
    base: String,
    key: String,
}

/// One admin API answer, whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; `Null` when it is not JSON (a `204`, a proxy's
    /// HTML error page).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `ETag`, as sent (`"3"`), for a later `If-Match`.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get(ETAG).and_then(|v| v.to_str().ok())
    }
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

    /// Sends one request (the body as JSON, `If-Match` when given) and
    /// returns the whole answer.
    #[expect(
        clippy::disallowed_methods,
        reason = "the admin API's answer: a key list or an export grows with the store, and the operator chose the URL; capping it would cut a real listing"
    )]
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<Answer, String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.key))
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, application/yaml");
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, tag);
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| format!("bad admin URL: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends one request; returns the status and the JSON body (or Null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let a = self.send(method, path, body, None).await?;
        Ok((a.status, a.json()))
    }
}

impl AdminClient {
    /// Every page of an admin list whose items are in `field`, following
    /// `next_cursor`, as one answer (`{field: [...], "next_cursor": null}`).
    /// The first status other than 200 is returned as it came. Where the
    /// API does not page (no `next_cursor`), this is one request.
    pub async fn list_all(&self, path: &str, field: &str) -> Result<(StatusCode, Value), String> {
        follow_pages(field, None, |cursor, limit| {
            let url = format!("{path}?{}", page_query(&[], cursor.as_deref(), limit));
            async move { self.call(Method::GET, &url, None).await }
        })
        .await
    }

    /// The audit log from `since` (RFC 3339), at most `limit` records,
    /// oldest first, following `next_cursor`.
    pub async fn audit(
        &self,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(StatusCode, Value), String> {
        let extra: Vec<(&str, &str)> = since.map(|s| ("since", s)).into_iter().collect();
        follow_pages("records", limit, |cursor, page| {
            let query = page_query(&extra, cursor.as_deref(), page);
            let url = format!("/api/v1/audit?{query}");
            async move { self.call(Method::GET, &url, None).await }
        })
        .await
    }
}

/// `since=…&limit=…&cursor=…`, each value percent-encoded.
fn page_query(extra: &[(&str, &str)], cursor: Option<&str>, limit: usize) -> String {
    let limit = limit.to_string();
    extra
        .iter()
        .copied()
        .chain([("limit", limit.as_str())])
        .chain(cursor.map(|c| ("cursor", c)))
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Fetches pages until `next_cursor` is `null` or absent (or `cap` items
/// are in), and answers as one page: `{field: [all items],
/// "next_cursor": …}`, the cursor `null` unless `cap` stopped it early.
/// `fetch(cursor, limit)` gets one page. A cursor handed out twice would
/// loop forever, so it is an error.
pub async fn follow_pages<F, Fut>(
    field: &str,
    cap: Option<usize>,
    mut fetch: F,
) -> Result<(StatusCode, Value), String>
where
    F: FnMut(Option<String>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), String>>,
{
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = BTreeSet::new();
    let next_cursor = loop {
        let want = cap.map_or(PAGE_LIMIT, |c| {
            c.saturating_sub(items.len()).min(PAGE_LIMIT)
        });
        if want == 0 {
            break cursor;
        }
        let (status, v) = fetch(cursor.clone(), want).await?;
        if status != StatusCode::OK {
            return Ok((status, v));
        }
        let mut page = v[field].as_array().cloned().unwrap_or_default();
        if let Some(c) = cap {
            page.truncate(c.saturating_sub(items.len()));
        }
        items.extend(page);
        match v["next_cursor"].as_str() {
            Some(next) if seen.insert(next.to_string()) => cursor = Some(next.to_string()),
            Some(_) => {
                return Err(format!(
                    "the admin API handed out the same `{field}` cursor twice"
                ));
            }
            None => break None,
        }
    };
    let mut out = Map::new();
    out.insert(field.to_string(), Value::Array(items));
    out.insert(
        "next_cursor".into(),
        next_cursor.map_or(Value::Null, Value::String),
    );
    Ok((StatusCode::OK, Value::Object(out)))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// query value (a `+` in an RFC 3339 offset would otherwise read as a
/// space) or a path segment.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints an admin error as `keygate: 403 forbidden: …` and fails. A
/// `422` lists each problem on its own line as `  <pointer>: <message>`,
/// the pointer into the definition sent (the config file's shape), or
/// into the whole catalog when the problem lies outside it.
pub fn fail(status: StatusCode, body: &Value) -> ExitCode {
    eprintln!("{}", error_text(status, body));
    ExitCode::FAILURE
}

fn error_text(status: StatusCode, body: &Value) -> String {
    let e = &body["error"];
    let mut out = format!(
        "keygate: {} {}: {}",
        status.as_u16(),
        e["code"]
            .as_str()
            .or_else(|| status.canonical_reason())
            .unwrap_or("error"),
        e["message"].as_str().unwrap_or("")
    );
    for p in e["problems"].as_array().into_iter().flatten() {
        let place = [&p["pointer"], &p["at"]]
            .into_iter()
            .filter_map(Value::as_str)
            .find(|s| !s.is_empty())
            .unwrap_or("(the whole definition)");
        out.push_str(&format!(
            "\n  {place}: {}",
            p["message"].as_str().unwrap_or("")
        ));
    }
    if status == StatusCode::PRECONDITION_FAILED {
        out.push_str(
            "\nIt is at another version now: `show` it, and repeat with that version if the change still applies.",
        );
    }
    out
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
    ("SOURCE", "source"),
    ("LAST ERROR", "last_error"),
];

/// Reads a token value from stdin: one trailing newline (LF or CRLF) is
/// dropped, as `echo` and editors add one.
pub fn read_value_from_stdin() -> Result<String, String> {
    read_stdin_value("keygate tokens set NAME")
}

/// [`read_value_from_stdin`] for the command `usage` (named in the error
/// when stdin is empty). At a terminal it says what it waits for, since a
/// silent wait looks like a hang; the value is still read as typed, so
/// piping it in is the way that keeps it out of the scrollback too.
pub fn read_stdin_value(usage: &str) -> Result<String, String> {
    use std::io::{IsTerminal, Read};
    if std::io::stdin().is_terminal() {
        eprintln!("keygate: reading the value from stdin; end it with Ctrl-D");
    }
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
    let v = buf.strip_suffix('\n').unwrap_or(&buf);
    let v = v.strip_suffix('\r').unwrap_or(v);
    if v.is_empty() {
        return Err(format!(
            "no value on stdin (pipe it in: `printf %s \"$VALUE\" | {usage}`)"
        ));
    }
    Ok(v.to_string())
}

// ---- The run-time catalog ----

/// A catalog section: where its routes are and what its objects are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tokens,
    Connectors,
    Roles,
    Clients,
}

impl Section {
    /// The section's key in the config file, the API path and the list
    /// answer's field: all three are the same word.
    pub const fn key(self) -> &'static str {
        match self {
            Section::Tokens => "tokens",
            Section::Connectors => "connectors",
            Section::Roles => "roles",
            Section::Clients => "clients",
        }
    }

    pub const fn one(self) -> &'static str {
        match self {
            Section::Tokens => "token",
            Section::Connectors => "connector",
            Section::Roles => "role",
            Section::Clients => "client",
        }
    }

    pub fn path(self, name: &str) -> String {
        format!("/api/v1/{}/{}", self.key(), escape(name))
    }
}

/// Whether flags describe a new object or a merge patch of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    /// An RFC 7396 merge patch: absent fields stay, `null` removes one.
    Update,
}

/// `--type` of a token, spelled as in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenType {
    Text,
    #[value(name = "http_request")]
    HttpRequest,
    User,
}

impl TokenType {
    const fn as_str(self) -> &'static str {
        match self {
            TokenType::Text => "text",
            TokenType::HttpRequest => "http_request",
            TokenType::User => "user",
        }
    }
}

/// `-f FILE`: a definition in the config file's shape.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DefinitionFile {
    /// Read the definition from FILE (YAML or JSON, `-` for stdin), in the
    /// config file's shape: the fields alone, or a config file or export
    /// holding the object. Flags override its fields. For `update` it is a
    /// merge patch: fields it leaves out stay, `null` removes one.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl DefinitionFile {
    fn read(&self, section: Section, name: &str) -> Result<Map<String, Value>, String> {
        match &self.file {
            Some(path) => read_definition(path, section, name),
            None => Ok(Map::new()),
        }
    }

    fn is_stdin(&self) -> bool {
        self.file.as_deref() == Some(Path::new("-"))
    }
}

/// Reads a definition file (or stdin for `-`). It may be the object's
/// fields alone, the object under its name (`stripe: {…}`), or a whole
/// config file or `keygate export` holding it (`tokens: {stripe: {…}}`),
/// so an object can move between the file and the API. A `name` field
/// must be the command's NAME.
///
/// YAML goes through `keygate::config::parse_yaml`, the crate's one YAML
/// entry (JSON is YAML, so it takes JSON too), with its strictness:
/// duplicate keys are refused, not silently collapsed.
pub fn read_definition(
    path: &Path,
    section: Section,
    name: &str,
) -> Result<Map<String, Value>, String> {
    use std::io::Read;
    let (text, shown) = if path == Path::new("-") {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map_err(|e| format!("cannot read the definition from stdin: {e}"))?;
        (buf, PathBuf::from("<stdin>"))
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        (text, path.to_path_buf())
    };
    let doc: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        keygate::config::parse_yaml(&text).map_err(|errs| errs.render(&shown))?
    };
    definition_of(doc, section, name).map_err(|why| format!("{}: {why}", shown.display()))
}

/// The object's own fields out of a parsed definition file.
fn definition_of(doc: Value, section: Section, name: &str) -> Result<Map<String, Value>, String> {
    let Value::Object(mut map) = doc else {
        return Err(format!(
            "a {} definition must be a mapping of its fields",
            section.one()
        ));
    };
    // A whole config file (or export): the section holds the object. No
    // object has a field named like its own section, so this cannot take
    // a definition's field for a section.
    if let Some(Value::Object(objects)) = map.get(section.key()) {
        match objects.get(name) {
            Some(Value::Object(obj)) => map = obj.clone(),
            _ => return Err(format!("it has no {} named `{name}`", section.one())),
        }
    } else if map.len() == 1
        && let Some(Value::Object(obj)) = map.get(name)
    {
        // The object under its name, as copied from under `tokens:`.
        map = obj.clone();
    }
    match map.remove("name") {
        None => {}
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(format!(
                "it names the {} {other}, the command `{name}`",
                section.one()
            ));
        }
    }
    Ok(map)
}

/// `--if-match 3` (or `"3"`, as an `ETag` reads) → `"3"`.
pub fn if_match(version: Option<&str>) -> Result<Option<String>, String> {
    let Some(v) = version else {
        return Ok(None);
    };
    let bare = v.trim().trim_matches('"');
    if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "--if-match takes a version number (the `version` that `show` prints), not `{v}`"
        ));
    }
    Ok(Some(format!("\"{bare}\"")))
}

fn put(def: &mut Map<String, Value>, field: &str, value: Option<&str>) {
    if let Some(v) = value {
        def.insert(field.into(), Value::String(v.to_string()));
    }
}

/// The flags `tokens create` and `tokens update` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenFlags {
    /// How the value is obtained.
    #[arg(long = "type", value_enum)]
    pub kind: Option<TokenType>,
    /// The request header the value goes into (default Authorization).
    #[arg(long)]
    pub header: Option<String>,
    /// Put before the value, with a space (`Bearer`).
    #[arg(long)]
    pub prefix: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The gateway reads the value from its environment variable VAR.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["value_file", "value_stdin"])]
    pub value_env: Option<String>,
    /// The gateway reads (and watches) the value in PATH on its own host;
    /// a relative PATH is from its config file's folder.
    #[arg(long, value_name = "PATH", conflicts_with = "value_stdin")]
    pub value_file: Option<String>,
    /// Read the value from stdin and store it sealed in the gateway's store
    /// (never give a value as an argument: `ps` shows arguments to all).
    #[arg(long)]
    pub value_stdin: bool,
    #[command(flatten)]
    pub file: DefinitionFile,
}

impl TokenFlags {
    pub fn definition(&self, name: &str, mode: Mode) -> Result<Map<String, Value>, String> {
        if self.value_stdin && self.file.is_stdin() {
            return Err("stdin can carry the definition (-f -) or the value (--value-stdin), not both: put the definition in a file".into());
        }
        let mut def = self.file.read(Section::Tokens, name)?;
        put(&mut def, "type", self.kind.map(TokenType::as_str));
        put(&mut def, "header", self.header.as_deref());
        put(&mut def, "prefix", self.prefix.as_deref());
        put(&mut def, "description", self.description.as_deref());
        if let Some(var) = &self.value_env {
            def.insert("value".into(), json!({ "env": var }));
        }
        if let Some(path) = &self.value_file {
            def.insert("value".into(), json!({ "file": path }));
        }
        if self.value_stdin {
            let usage = format!("keygate tokens {} {name} --value-stdin", mode.verb());
            def.insert("value".into(), Value::String(read_stdin_value(&usage)?));
        }
        if mode == Mode::Update
            && let Some(Value::Object(source)) = def.get_mut("value")
        {
            // A value source is one of `env` or `file`: a merge patch that
            // names one must remove the other, or the two would merge.
            for other in ["env", "file"] {
                source.entry(other).or_insert(Value::Null);
            }
        }
        Ok(def)
    }
}

impl Mode {
    const fn verb(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Update => "update",
        }
    }
}

/// The flags `connectors create` and `connectors update` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectorFlags {
    /// The upstream base URL (`https://api.stripe.com`).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// A token to inject (repeatable); on update the list replaces the
    /// connector's (use attach/detach to change one).
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// A static header, `'Name: value'` (repeatable); `'Name:'` removes
    /// one on update. Not for secrets (argv is public): use a token.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub file: DefinitionFile,
}

impl ConnectorFlags {
    pub fn definition(&self, name: &str, mode: Mode) -> Result<Map<String, Value>, String> {
        let mut def = self.file.read(Section::Connectors, name)?;
        put(&mut def, "upstream", self.upstream.as_deref());
        put(&mut def, "description", self.description.as_deref());
        if !self.tokens.is_empty() {
            def.insert("tokens".into(), json!(self.tokens));
        }
        if !self.headers.is_empty() {
            let slot = def
                .entry("headers")
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(headers) = slot {
                for h in &self.headers {
                    let (n, v) = parse_header(h)?;
                    match (v, mode) {
                        (Some(v), _) => headers.insert(n, Value::String(v)),
                        (None, Mode::Update) => headers.insert(n, Value::Null),
                        (None, Mode::Create) => headers.remove(&n),
                    };
                }
            }
        }
        if mode == Mode::Create && !def.contains_key("upstream") {
            return Err(format!(
                "connectors create {name} needs --upstream URL (or an `upstream:` in -f FILE)"
            ));
        }
        Ok(def)
    }
}

/// `'Name: value'` → (`Name`, `Some(value)`); `'Name:'` → (`Name`, `None`),
/// as curl's `-H 'Name:'` removes a header.
fn parse_header(text: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header takes 'Name: value', not `{text}`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("--header `{text}` has no name before the `:`"));
    }
    let value = value.trim();
    Ok((
        name.to_string(),
        (!value.is_empty()).then(|| value.to_string()),
    ))
}

/// The flags `roles create` and `roles update` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RoleFlags {
    /// The role opens the admin API.
    #[arg(long, conflicts_with = "no_admin")]
    pub admin: bool,
    /// The role no longer opens the admin API (update).
    #[arg(long)]
    pub no_admin: bool,
    /// A grant, `CONNECTOR[:METHODS[:PATHS]]` with comma-separated methods
    /// and path patterns (`billing:GET,POST:/v1/charges/*`; empty or `*`
    /// for all); repeatable; on update the list replaces the role's.
    #[arg(long = "allow", value_name = "CONNECTOR[:METHODS[:PATHS]]")]
    pub allow: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub file: DefinitionFile,
}

impl RoleFlags {
    pub fn definition(&self, name: &str) -> Result<Map<String, Value>, String> {
        let mut def = self.file.read(Section::Roles, name)?;
        put(&mut def, "description", self.description.as_deref());
        if self.admin || self.no_admin {
            def.insert("admin".into(), Value::Bool(self.admin));
        }
        if !self.allow.is_empty() {
            let grants = self
                .allow
                .iter()
                .map(|a| parse_grant(a))
                .collect::<Result<Vec<_>, _>>()?;
            def.insert("allow".into(), Value::Array(grants));
        }
        Ok(def)
    }
}

/// `billing:GET,POST:/v1/*` → `{connector, methods, paths}` as the config
/// file writes a grant; an empty or `*` part is left out (all).
fn parse_grant(text: &str) -> Result<Value, String> {
    let mut parts = text.splitn(3, ':');
    let connector = parts.next().unwrap_or_default().trim();
    if connector.is_empty() {
        return Err(format!(
            "--allow takes CONNECTOR[:METHODS[:PATHS]], not `{text}`"
        ));
    }
    let mut grant = Map::new();
    grant.insert("connector".into(), Value::String(connector.into()));
    for field in ["methods", "paths"] {
        let list: Vec<&str> = parts
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if !list.is_empty() && list != ["*"] {
            grant.insert(field.into(), json!(list));
        }
    }
    Ok(Value::Object(grant))
}

/// The flags `clients create` and `clients update` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientFlags {
    /// A role the client holds (repeatable); on update the list replaces
    /// the client's.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub file: DefinitionFile,
}

impl ClientFlags {
    pub fn definition(&self, name: &str) -> Result<Map<String, Value>, String> {
        let mut def = self.file.read(Section::Clients, name)?;
        put(&mut def, "description", self.description.as_deref());
        if !self.roles.is_empty() {
            def.insert("roles".into(), json!(self.roles));
        }
        Ok(def)
    }
}

/// `POST /api/v1/{section}` with the definition and its name.
pub async fn create(
    client: &AdminClient,
    section: Section,
    name: &str,
    mut def: Map<String, Value>,
    json: bool,
) -> Result<ExitCode, String> {
    def.insert("name".into(), Value::String(name.to_string()));
    let (status, v) = client
        .call(
            Method::POST,
            &format!("/api/v1/{}", section.key()),
            Some(Value::Object(def)),
        )
        .await?;
    Ok(finish(status, StatusCode::CREATED, &v, json, |v| {
        print_line(&format!(
            "created {} {name} (version {})",
            section.one(),
            version_of(section, v)
        ))?;
        no_value_hint(section, name, v);
        Ok(())
    }))
}

/// `?confirm=true&force=true`: the flags that are set, or nothing.
pub fn query(flags: &[(&str, bool)]) -> String {
    let set: Vec<String> = flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| format!("{k}=true"))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// `PATCH /api/v1/{section}/{name}` with a merge patch, and `query`
/// (`?force=true`).
pub async fn update(
    client: &AdminClient,
    section: Section,
    name: &str,
    patch: Map<String, Value>,
    query: &str,
    if_match: Option<&str>,
    json: bool,
) -> Result<ExitCode, String> {
    if patch.is_empty() {
        return Err(format!(
            "nothing to change: give flags or -f FILE (see keygate {} update --help)",
            section.key()
        ));
    }
    let a = client
        .send(
            Method::PATCH,
            &format!("{}{query}", section.path(name)),
            Some(Value::Object(patch)),
            if_match,
        )
        .await?;
    let v = a.json();
    if refused_without_flag(a.status, &v, section) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(finish(a.status, StatusCode::OK, &v, json, |v| {
        print_line(&format!(
            "updated {} {name} (version {})",
            section.one(),
            version_of(section, v)
        ))?;
        no_value_hint(section, name, v);
        Ok(())
    }))
}

/// `DELETE /api/v1/{section}/{name}`, with `query` (`?confirm=true`).
pub async fn delete(
    client: &AdminClient,
    section: Section,
    name: &str,
    query: &str,
    if_match: Option<&str>,
) -> Result<ExitCode, String> {
    let a = client
        .send(
            Method::DELETE,
            &format!("{}{query}", section.path(name)),
            None,
            if_match,
        )
        .await?;
    let v = a.json();
    if refused_without_flag(a.status, &v, section) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(finish(a.status, StatusCode::NO_CONTENT, &v, false, |_| {
        print_line(&format!("deleted {} {name}", section.one()))
    }))
}

/// The refusals a flag of the command overrides: prints the error and
/// names the flag. `true` if it was one of them.
fn refused_without_flag(status: StatusCode, v: &Value, section: Section) -> bool {
    let hint = match v["error"]["code"].as_str() {
        Some("confirmation_required") => format!(
            "Repeat with --confirm to revoke them with the {}.",
            section.one()
        ),
        Some("last_admin_key") => "Repeat with --force to go ahead anyway; the admin API then stays locked until `keygate admin-key --reset` on the gateway's host.".to_string(),
        _ => return false,
    };
    fail(status, v);
    eprintln!("{hint}");
    true
}

/// `GET /api/v1/{section}/{name}`, as `FIELD  value` lines.
pub async fn show(
    client: &AdminClient,
    section: Section,
    name: &str,
    json: bool,
) -> Result<ExitCode, String> {
    let (status, v) = client.call(Method::GET, &section.path(name), None).await?;
    Ok(finish(status, StatusCode::OK, &v, json, |v| {
        print_line(&details(&detail_rows(section, v)))
    }))
}

/// Every object of a section (every page), as a table.
pub async fn list(client: &AdminClient, section: Section, json: bool) -> Result<ExitCode, String> {
    let (status, v) = client
        .list_all(&format!("/api/v1/{}", section.key()), section.key())
        .await?;
    Ok(finish(status, StatusCode::OK, &v, json, |v| {
        print_line(&list_table(section, v))
    }))
}

/// The object's version after a change (`-` for the file's objects,
/// which have none).
fn version_of(section: Section, v: &Value) -> String {
    let field = match section {
        Section::Tokens => "definition_version",
        Section::Connectors | Section::Roles | Section::Clients => "version",
    };
    text(&v[field])
}

/// A `text` token without a value serves nothing yet: say how to give it one.
fn no_value_hint(section: Section, name: &str, v: &Value) {
    if section == Section::Tokens
        && v["value_source"]["kind"] == "admin"
        && v["state"] == "unavailable"
    {
        eprintln!(
            "Token {name} has no value yet: `printf %s \"$VALUE\" | keygate tokens set {name}`"
        );
    }
}

/// A list answer as a table; nested fields are flattened to names first.
pub fn list_table(section: Section, v: &Value) -> String {
    let items: Vec<Value> = v[section.key()]
        .as_array()
        .map(|a| a.iter().map(|it| flatten(section, it)).collect())
        .unwrap_or_default();
    let columns = match section {
        Section::Tokens => TOKEN_COLUMNS,
        Section::Connectors => CONNECTOR_COLUMNS,
        Section::Roles => ROLE_COLUMNS,
        Section::Clients => CLIENT_COLUMNS,
    };
    table(&items, columns)
}

/// One item with its nested parts made table text: a connector's tokens
/// and a client's roles by name, a role's grants as `--allow` writes them.
fn flatten(section: Section, item: &Value) -> Value {
    let mut out = item.clone();
    match section {
        Section::Connectors => out["tokens"] = names(&item["tokens"]),
        Section::Clients => out["roles"] = names(&item["roles"]),
        Section::Roles => out["allow"] = grants(&item["allow"]),
        Section::Tokens => {}
    }
    out
}

fn names(list: &Value) -> Value {
    Value::Array(
        list.as_array()
            .into_iter()
            .flatten()
            .map(|it| it["name"].clone())
            .collect(),
    )
}

/// Grants as `connector:METHODS:PATHS` (`--allow`'s own syntax).
fn grants(list: &Value) -> Value {
    let part = |v: &Value| match v.as_array() {
        Some(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        None => "*".into(),
    };
    Value::Array(
        list.as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                let mut s = text(&g["connector"]);
                if !g["methods"].is_null() || !g["paths"].is_null() {
                    s = format!("{s}:{}", part(&g["methods"]));
                }
                if !g["paths"].is_null() {
                    s = format!("{s}:{}", part(&g["paths"]));
                }
                Value::String(s)
            })
            .collect(),
    )
}

pub const CONNECTOR_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("UPSTREAM", "upstream"),
    ("TOKENS", "tokens"),
    ("AUTH", "auth"),
    ("LISTEN", "listen"),
    ("SOURCE", "source"),
    ("VERSION", "version"),
];

pub const ROLE_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("ADMIN", "admin"),
    ("ALLOW", "allow"),
    ("SOURCE", "source"),
    ("VERSION", "version"),
    ("DESCRIPTION", "description"),
];

pub const CLIENT_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("ROLES", "roles"),
    ("SOURCE", "source"),
    ("VERSION", "version"),
    ("DESCRIPTION", "description"),
];

/// What `show` prints for one object, in order.
fn detail_rows(section: Section, v: &Value) -> Vec<(&'static str, String)> {
    let f = |k: &str| text(&v[k]);
    let owner = || match v["file"].as_str() {
        Some(file) => format!("{} ({file})", f("source")),
        None => f("source"),
    };
    match section {
        Section::Tokens => vec![
            ("name", f("name")),
            ("type", f("type")),
            ("description", f("description")),
            ("header", f("header")),
            ("prefix", f("prefix")),
            ("source", owner()),
            ("version", f("definition_version")),
            ("value from", value_source(&v["value_source"])),
            ("state", f("state")),
            ("value version", f("version")),
            ("fingerprint", f("fingerprint")),
            ("value updated", f("updated_at")),
            ("expires", f("expires_at")),
            ("last error", f("last_error")),
        ],
        Section::Connectors => vec![
            ("name", f("name")),
            ("description", f("description")),
            ("upstream", f("upstream")),
            ("listen", f("listen")),
            ("auth", f("auth")),
            (
                "tokens",
                v["tokens"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| match t["prefix"].as_str() {
                        Some(p) => format!("{} ({}: {p} …)", text(&t["name"]), text(&t["header"])),
                        None => format!("{} ({})", text(&t["name"]), text(&t["header"])),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("static headers", f("static_headers")),
            (
                "timeouts",
                format!(
                    "connect {}, response {}",
                    text(&v["timeouts"]["connect"]),
                    text(&v["timeouts"]["response"])
                ),
            ),
            ("max request body", f("max_request_body")),
            ("source", owner()),
            ("version", f("version")),
            ("updated", f("updated_at")),
        ],
        Section::Roles => vec![
            ("name", f("name")),
            ("description", f("description")),
            ("admin", f("admin")),
            ("allow", text(&grants(&v["allow"]))),
            ("source", owner()),
            ("version", f("version")),
            ("updated", f("updated_at")),
        ],
        Section::Clients => vec![
            ("name", f("name")),
            ("description", f("description")),
            ("roles", text(&names(&v["roles"]))),
            ("source", owner()),
            ("version", f("version")),
            ("updated", f("updated_at")),
        ],
    }
}

/// Where a token's value comes from, as one phrase (`env STRIPE_KEY`).
fn value_source(v: &Value) -> String {
    let kind = match v["kind"].as_str() {
        Some("admin") => "set at run time (sealed in the store)".to_string(),
        Some("literal") => "literal in the config file".to_string(),
        Some("caller") => "the caller's header".to_string(),
        Some("http_request") => "token endpoint".to_string(),
        _ => text(&v["kind"]),
    };
    match v.as_object() {
        Some(m) => m
            .iter()
            .find(|(k, _)| k.as_str() != "kind")
            .map_or(kind.clone(), |(_, detail)| {
                format!("{kind} {}", text(detail))
            }),
        None => kind,
    }
}

/// `label  value` lines, the labels aligned.
fn details(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(l, v)| format!("{l:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- Attach and detach ----

/// The connector's tokens with `change` applied: `attach` appends the
/// ones not there yet, `detach` removes the named ones. Returns the new
/// list and the names that changed nothing (already attached, or not
/// attached), which the command mentions rather than fails on: the end
/// state asked for holds.
pub fn retoken(current: &[String], change: &[String], attach: bool) -> (Vec<String>, Vec<String>) {
    let mut list = current.to_vec();
    let mut idle = Vec::new();
    for t in change {
        let present = list.contains(t);
        match (attach, present) {
            (true, false) => list.push(t.clone()),
            (false, true) => list.retain(|x| x != t),
            (true, true) | (false, false) => {
                if !idle.contains(t) {
                    idle.push(t.clone());
                }
            }
        }
    }
    (list, idle)
}

/// `connectors attach|detach NAME TOKEN…`: reads the connector, computes
/// its new token list and puts it with `If-Match` of the version read, so
/// a change another operator made in between is refused (`412`), not
/// overwritten.
pub async fn attach(
    client: &AdminClient,
    name: &str,
    tokens: &[String],
    attach: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let path = Section::Connectors.path(name);
    let got = client.send(Method::GET, &path, None, None).await?;
    let v = got.json();
    if got.status != StatusCode::OK {
        return Ok(fail(got.status, &v));
    }
    let current: Vec<String> = v["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    let (next, idle) = retoken(&current, tokens, attach);
    for t in &idle {
        if attach {
            eprintln!("keygate: token {t} is already attached to {name}");
        } else {
            eprintln!("keygate: token {t} is not attached to {name}");
        }
    }
    if next == current {
        return Ok(finish(StatusCode::OK, StatusCode::OK, &v, json, |_| {
            print_line(&format!(
                "connector {name} unchanged: {}",
                text(&json!(next))
            ))
        }));
    }
    let put = client
        .send(
            Method::PUT,
            &format!("{path}/tokens"),
            Some(json!({ "tokens": next })),
            got.etag(),
        )
        .await?;
    let v = put.json();
    if put.status == StatusCode::PRECONDITION_FAILED {
        let code = fail(put.status, &v);
        eprintln!(
            "Connector {name} changed while this command ran; nothing was changed: run it again."
        );
        return Ok(code);
    }
    Ok(finish(put.status, StatusCode::OK, &v, json, |v| {
        print_line(&format!(
            "connector {name} (version {}) tokens: {}",
            text(&v["version"]),
            text(&names(&v["tokens"]))
        ))
    }))
}

// ---- Audit and export ----

/// The audit list as a table: who (client and key id), what (action on
/// an object), and how (versions and value fingerprints, before -> after).
pub fn audit_table(v: &Value) -> String {
    let arrow = |a: &Value, b: &Value| {
        if a.is_null() && b.is_null() {
            "-".to_string()
        } else {
            format!("{}->{}", text(a), text(b))
        }
    };
    let rows: Vec<Value> = v["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            json!({
                "time": r["at"],
                "client": r["actor"]["client"],
                "key": r["actor"]["key_id"],
                "action": r["action"],
                "object": format!("{}/{}", text(&r["object"]["kind"]), text(&r["object"]["name"])),
                "versions": arrow(&r["version_before"], &r["version_after"]),
                "fingerprints": arrow(&r["fingerprint_before"], &r["fingerprint_after"]),
                "detail": r["detail"],
            })
        })
        .collect();
    table(&rows, AUDIT_COLUMNS)
}

pub const AUDIT_COLUMNS: &[(&str, &str)] = &[
    ("TIME", "time"),
    ("ACTOR", "client"),
    ("KEY", "key"),
    ("ACTION", "action"),
    ("OBJECT", "object"),
    ("VERSIONS", "versions"),
    ("FINGERPRINTS", "fingerprints"),
    ("DETAIL", "detail"),
];

/// `keygate audit`: the log from `since`, at most `limit` records.
pub async fn audit(
    client: &AdminClient,
    since: Option<&str>,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode, String> {
    let (status, v) = client.audit(since, limit).await?;
    if status == StatusCode::NOT_FOUND && v["error"]["code"] == "not_found" {
        let code = fail(status, &v);
        eprintln!(
            "This gateway has no audit log route (/api/v1/audit): it is older than this CLI."
        );
        return Ok(code);
    }
    Ok(finish(status, StatusCode::OK, &v, json, |v| {
        print_line(&audit_table(v))?;
        if !v["next_cursor"].is_null() {
            eprintln!("More records follow: raise --limit, or start later with --since.");
        }
        Ok(())
    }))
}

/// `keygate export`: the effective catalog as YAML on stdout, exactly as
/// the API sent it (it is a config file `keygate check` accepts).
pub async fn export(client: &AdminClient) -> Result<ExitCode, String> {
    let a = client
        .send(Method::GET, "/api/v1/export", None, None)
        .await?;
    if a.status != StatusCode::OK {
        return Ok(fail(a.status, &a.json()));
    }
    if let Some(vars) = a
        .headers
        .get("keygate-export-env")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        eprintln!("keygate: the export reads these variables where it runs: {vars}");
    }
    Ok(print_raw(&a.body).err().unwrap_or(ExitCode::SUCCESS))
}

/// Writes bytes to stdout as they are, with [`print_line`]'s handling of
/// a reader that went away.
fn print_raw(bytes: &[u8]) -> Result<(), ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                ExitCode::SUCCESS
            } else {
                eprintln!("keygate: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages served from memory: `(status, answer)` per call, and the
    /// `(cursor, limit)` each call was asked with.
    async fn run_pages(
        field: &str,
        cap: Option<usize>,
        pages: Vec<Value>,
    ) -> (
        Result<(StatusCode, Value), String>,
        Vec<(Option<String>, usize)>,
    ) {
        let asked = std::cell::RefCell::new(Vec::new());
        let pages = std::cell::RefCell::new(pages.into_iter());
        let result = follow_pages(field, cap, |cursor, limit| {
            asked.borrow_mut().push((cursor, limit));
            let next = pages.borrow_mut().next();
            async move {
                match next {
                    Some(v) if v["error"].is_object() => Ok((StatusCode::BAD_REQUEST, v)),
                    Some(v) => Ok((StatusCode::OK, v)),
                    None => Err("asked for a page past the last".to_string()),
                }
            }
        })
        .await;
        (result, asked.into_inner())
    }

    #[tokio::test]
    async fn lists_follow_next_cursor_until_null() {
        let (r, asked) = run_pages(
            "keys",
            None,
            vec![
                json!({"keys": [{"id": "a"}, {"id": "b"}], "next_cursor": "62"}),
                json!({"keys": [{"id": "c"}], "next_cursor": "63"}),
                json!({"keys": [], "next_cursor": null}),
            ],
        )
        .await;
        let (status, v) = r.expect("pages");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["keys"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["next_cursor"], Value::Null);
        assert_eq!(
            asked,
            vec![
                (None, PAGE_LIMIT),
                (Some("62".into()), PAGE_LIMIT),
                (Some("63".into()), PAGE_LIMIT)
            ]
        );
    }

    #[tokio::test]
    async fn an_answer_without_next_cursor_is_one_page() {
        let (r, asked) = run_pages("tokens", None, vec![json!({"tokens": [{"name": "a"}]})]).await;
        let (_, v) = r.expect("page");
        assert_eq!(v["tokens"][0]["name"], "a");
        assert_eq!(asked.len(), 1);
    }

    #[tokio::test]
    async fn a_repeated_cursor_stops_instead_of_looping() {
        let page = json!({"keys": [{"id": "a"}], "next_cursor": "61"});
        let (r, _) = run_pages("keys", None, vec![page.clone(), page.clone(), page]).await;
        assert!(r.expect_err("loop").contains("same `keys` cursor twice"));
    }

    #[tokio::test]
    async fn a_cap_asks_for_what_is_left_and_keeps_the_cursor() {
        let (r, asked) = run_pages(
            "records",
            Some(3),
            vec![
                json!({"records": [1, 2], "next_cursor": "02"}),
                json!({"records": [3], "next_cursor": "03"}),
            ],
        )
        .await;
        let (_, v) = r.expect("pages");
        assert_eq!(v["records"], json!([1, 2, 3]));
        assert_eq!(v["next_cursor"], "03", "more records follow");
        assert_eq!(asked, vec![(None, 3), (Some("02".into()), 1)]);
    }

    #[tokio::test]
    async fn an_error_page_is_returned_as_it_came() {
        let (r, _) = run_pages(
            "keys",
            None,
            vec![
                json!({"keys": [1], "next_cursor": "01"}),
                json!({"error": {"code": "bad_request"}}),
            ],
        )
        .await;
        let (status, v) = r.expect("answer");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "bad_request");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            escape("2025-01-01T00:00:00+02:00"),
            "2025-01-01T00%3A00%3A00%2B02%3A00"
        );
        assert_eq!(escape("a b/c&d"), "a%20b%2Fc%26d");
        assert_eq!(escape("stripe_2.x-y~"), "stripe_2.x-y~");
        assert_eq!(
            page_query(&[("since", "2025-01-01T00:00:00Z")], Some("6162"), 10),
            "since=2025-01-01T00%3A00%3A00Z&limit=10&cursor=6162"
        );
        assert_eq!(
            query(&[("confirm", true), ("force", false)]),
            "?confirm=true"
        );
        assert_eq!(query(&[("force", false)]), "");
    }

    #[test]
    fn a_definition_may_be_bare_under_its_name_or_under_its_section() {
        let want = json!({"header": "X-A"});
        for doc in [
            json!({"header": "X-A"}),
            json!({"stripe": {"header": "X-A"}}),
            json!({"tokens": {"stripe": {"header": "X-A"}}}),
            json!({"server": {}, "tokens": {"other": {}, "stripe": {"header": "X-A"}}}),
            json!({"name": "stripe", "header": "X-A"}),
        ] {
            let got = definition_of(doc.clone(), Section::Tokens, "stripe").expect("def");
            assert_eq!(Value::Object(got), want, "{doc}");
        }
        let e = definition_of(json!({"tokens": {"other": {}}}), Section::Tokens, "stripe")
            .expect_err("wrong name");
        assert!(e.contains("no token named `stripe`"), "{e}");
        let e = definition_of(json!({"name": "other"}), Section::Tokens, "stripe")
            .expect_err("wrong name");
        assert!(e.contains("\"other\""), "{e}");
        assert!(definition_of(json!(["x"]), Section::Roles, "r").is_err());
    }

    #[test]
    fn definition_files_are_yaml_or_json_through_the_one_parser() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json_path = dir.path().join("t.json");
        std::fs::write(
            &json_path,
            "{\n\t\"header\": \"X-A\",\n\t\"value\": {\"env\": \"A\"}\n}\n",
        )
        .expect("write");
        let got = read_definition(&json_path, Section::Tokens, "t").expect("json");
        assert_eq!(
            Value::Object(got),
            json!({"header": "X-A", "value": {"env": "A"}})
        );
        let yaml_path = dir.path().join("t.yaml");
        std::fs::write(&yaml_path, "header: X-A\nheader: X-B\n").expect("write");
        let e = read_definition(&yaml_path, Section::Tokens, "t").expect_err("duplicate");
        assert!(e.contains("t.yaml:2:1: duplicate key `header`"), "{e}");
        let e = read_definition(&dir.path().join("none.yaml"), Section::Tokens, "t")
            .expect_err("missing");
        assert!(e.contains("none.yaml"), "{e}");
    }

    #[test]
    fn grants_read_like_the_config_file_writes_them() {
        assert_eq!(
            parse_grant("billing").expect("g"),
            json!({"connector": "billing"})
        );
        assert_eq!(
            parse_grant("billing:GET,POST:/v1/*,/v2/*").expect("g"),
            json!({"connector": "billing", "methods": ["GET", "POST"], "paths": ["/v1/*", "/v2/*"]})
        );
        assert_eq!(
            parse_grant("billing::/v1/a:b").expect("g"),
            json!({"connector": "billing", "paths": ["/v1/a:b"]})
        );
        assert_eq!(
            parse_grant("billing:*").expect("g"),
            json!({"connector": "billing"})
        );
        assert!(parse_grant(":GET").is_err());
        // And back, as lists print them.
        let shown = grants(&json!([
            {"connector": "a", "methods": null, "paths": null},
            {"connector": "b", "methods": ["GET"], "paths": null},
            {"connector": "c", "methods": null, "paths": ["/x"]}
        ]));
        assert_eq!(shown, json!(["a", "b:GET", "c:*:/x"]));
    }

    #[test]
    fn headers_read_as_curl_writes_them() {
        assert_eq!(
            parse_header("Stripe-Version: 2024-06-20").expect("h"),
            ("Stripe-Version".into(), Some("2024-06-20".into()))
        );
        assert_eq!(parse_header("X-Gone:").expect("h"), ("X-Gone".into(), None));
        assert!(parse_header(": v").is_err());
        assert!(parse_header("no colon").is_err());
    }

    #[test]
    fn flags_become_the_definition_or_its_merge_patch() {
        let t = TokenFlags {
            kind: Some(TokenType::HttpRequest),
            prefix: Some("Bearer".into()),
            value_env: Some("STRIPE".into()),
            ..TokenFlags::default()
        };
        assert_eq!(
            Value::Object(t.definition("s", Mode::Create).expect("def")),
            json!({"type": "http_request", "prefix": "Bearer", "value": {"env": "STRIPE"}})
        );
        // A source named in a patch removes the other kind of source.
        assert_eq!(
            Value::Object(t.definition("s", Mode::Update).expect("def"))["value"],
            json!({"env": "STRIPE", "file": null})
        );

        let c = ConnectorFlags {
            headers: vec!["X-A: 1".into(), "X-B:".into()],
            ..ConnectorFlags::default()
        };
        assert_eq!(
            Value::Object(c.definition("c", Mode::Update).expect("patch")),
            json!({"headers": {"X-A": "1", "X-B": null}})
        );
        let e = c.definition("c", Mode::Create).expect_err("no upstream");
        assert!(e.contains("--upstream"), "{e}");

        let r = RoleFlags {
            no_admin: true,
            allow: vec!["billing:GET".into()],
            ..RoleFlags::default()
        };
        assert_eq!(
            Value::Object(r.definition("r").expect("def")),
            json!({"admin": false, "allow": [{"connector": "billing", "methods": ["GET"]}]})
        );
        let cl = ClientFlags {
            roles: vec!["a".into(), "b".into()],
            description: Some("bot".into()),
            ..ClientFlags::default()
        };
        assert_eq!(
            Value::Object(cl.definition("c").expect("def")),
            json!({"roles": ["a", "b"], "description": "bot"})
        );
    }

    #[test]
    fn if_match_takes_a_version_as_show_prints_it_or_as_an_etag() {
        assert_eq!(if_match(Some("3")).expect("v").as_deref(), Some("\"3\""));
        assert_eq!(
            if_match(Some("\"3\"")).expect("v").as_deref(),
            Some("\"3\"")
        );
        assert_eq!(if_match(None).expect("none"), None);
        assert!(if_match(Some("W/\"3\"")).is_err());
        assert!(if_match(Some("")).is_err());
    }

    #[test]
    fn attach_and_detach_compute_the_next_list() {
        let cur = vec!["a".to_string(), "b".to_string()];
        let (next, idle) = retoken(&cur, &["c".into(), "a".into()], true);
        assert_eq!(next, ["a", "b", "c"]);
        assert_eq!(idle, ["a"]);
        let (next, idle) = retoken(&cur, &["a".into(), "z".into()], false);
        assert_eq!(next, ["b"]);
        assert_eq!(idle, ["z"]);
    }

    #[test]
    fn problems_print_one_per_line_with_their_pointer() {
        let body = json!({"error": {
            "code": "validation_failed", "message": "3 problems", "request_id": "r",
            "problems": [
                {"pointer": "/upstream", "message": "must use http or https"},
                {"pointer": "", "at": "/roles/r/allow/0", "message": "grants a missing connector"},
                {"pointer": "", "message": "elsewhere"}
            ]
        }});
        assert_eq!(
            error_text(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "keygate: 422 validation_failed: 3 problems\n  /upstream: must use http or https\n  /roles/r/allow/0: grants a missing connector\n  (the whole definition): elsewhere"
        );
        let text = error_text(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(text, "keygate: 502 Bad Gateway: ");
    }

    #[test]
    fn the_audit_table_shows_who_what_and_how_never_more() {
        let v = json!({"records": [
            {"id": 1, "at": "2025-01-01T00:00:00Z",
             "actor": {"client": "keygate-admin", "key_id": "key_1"},
             "action": "token.value.set", "object": {"kind": "token", "name": "stripe"},
             "version_before": 1, "version_after": 2,
             "fingerprint_before": "aaaaaaaa", "fingerprint_after": "bbbbbbbb", "detail": null},
            {"id": 2, "at": "2025-01-01T00:00:01Z",
             "actor": {"client": "keygate", "key_id": null},
             "action": "key.create", "object": {"kind": "key", "name": "key_2"},
             "version_before": null, "version_after": null,
             "fingerprint_before": null, "fingerprint_after": null, "detail": "roll of key_1"}
        ], "next_cursor": null});
        let t = audit_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("TIME"), "{t}");
        for want in [
            "keygate-admin",
            "key_1",
            "token.value.set",
            "token/stripe",
            "1->2",
            "aaaaaaaa->bbbbbbbb",
        ] {
            assert!(lines[1].contains(want), "{want} in {}", lines[1]);
        }
        assert!(
            lines[2].contains("key/key_2") && lines[2].contains("roll of key_1"),
            "{t}"
        );
    }

    #[test]
    fn lists_flatten_nested_parts_to_names() {
        let v = json!({"connectors": [
            {"name": "billing", "upstream": "http://u", "auth": "api_key", "listen": null,
             "tokens": [{"name": "a", "header": "x"}, {"name": "b", "header": "y"}],
             "source": "api", "version": 2}
        ]});
        let t = list_table(Section::Connectors, &v);
        assert!(t.lines().nth(1).is_some_and(|l| l.contains("a,b")), "{t}");
    }
}
