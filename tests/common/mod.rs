//! Shared test parts, all real: the `keygate` binary started on port 0 with
//! a YAML file in a temp dir, an upstream hyper server (HTTP or HTTPS with
//! rcgen certificates) that records what it received, and a small client.
//! Nothing here mocks keygate; every test talks to it over TCP.

#![expect(
    clippy::expect_used,
    reason = "test harness: a failed expect is the test failing, with its message"
)]
#![expect(
    dead_code,
    reason = "each test crate uses a different part of the harness"
)]

pub mod jwt;
pub mod pg;
pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use upstream::Upstream;

pub const BIN: &str = env!("CARGO_BIN_EXE_keygate");

/// Lines a process printed, collected by a reader thread.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// A running keygate process and everything it printed.
pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub connectors: HashMap<String, SocketAddr>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Values that must never appear in any output of this process.
    pub secrets: Vec<String>,
    /// Output of earlier runs (before `restart`), kept for the sweep.
    pub history: Vec<String>,
    env: Vec<(String, String)>,
}

fn pump(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if std::env::var_os("KEYGATE_TEST_ECHO").is_some() {
                eprintln!("[keygate] {line}");
            }
            into.lock().expect("log lock").push(line);
        }
    });
}

impl Gateway {
    /// Writes `yaml` to `<tmp>/keygate.yaml` and starts keygate on it.
    pub fn start(yaml: &str) -> Gateway {
        Self::start_with(yaml, &[], |_| {})
    }

    /// Like `start`, with extra environment and a hook to place files in
    /// the config folder first.
    pub fn start_with(yaml: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let config_path = dir.path().join("keygate.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Self::spawn(dir, config_path, env)
    }

    fn launch(config_path: &Path, env: &[(String, String)]) -> (Child, Lines, Lines) {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--log-format", "json", "-c"])
            .arg(config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keygate");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        pump(child.stderr.take().expect("stderr"), Arc::clone(&stderr));
        pump(child.stdout.take().expect("stdout"), Arc::clone(&stdout));
        (child, stderr, stdout)
    }

    pub fn spawn(dir: tempfile::TempDir, config_path: PathBuf, env: &[(&str, &str)]) -> Gateway {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, stderr, stdout) = Self::launch(&config_path, &env);
        let mut gw = Gateway {
            child,
            dir,
            config_path,
            proxy: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            connectors: HashMap::new(),
            stderr,
            stdout,
            secrets: Vec::new(),
            history: Vec::new(),
            env,
        };
        gw.wait_listening();
        gw
    }

    /// Starts keygate without waiting for its listeners (a replica whose
    /// database is down binds only its admin listener until it opens).
    pub fn spawn_waiting(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        env: &[(&str, &str)],
    ) -> Gateway {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, stderr, stdout) = Self::launch(&config_path, &env);
        Gateway {
            child,
            dir,
            config_path,
            proxy: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            connectors: HashMap::new(),
            stderr,
            stdout,
            secrets: Vec::new(),
            history: Vec::new(),
            env,
        }
    }

    /// The admin listener's address once logged (it may be logged before
    /// the proxy's); panics after `secs`.
    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling a child process's log"
    )]
    pub fn wait_admin(&mut self, secs: u64) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self.stderr.lock().expect("lock").iter().find_map(|line| {
                let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
                let f = &v["fields"];
                (f["message"] == "listening" && f["listener"] == "admin")
                    .then(|| f["addr"].as_str()?.parse().ok())
                    .flatten()
            });
            if let Some(addr) = found {
                self.admin = addr;
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no admin listener: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until both listeners are up (after [`Gateway::spawn_waiting`]).
    pub fn wait_started(&mut self) {
        self.wait_listening();
    }

    /// Stops the process (SIGKILL when `kill`, else SIGTERM and wait) and
    /// starts it again on the same folder, config and store.
    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling a child process; the test's in-process upstream pauses meanwhile, so keygate must not need it here"
    )]
    pub fn restart(&mut self, kill: bool) {
        if kill {
            let _ = self.child.kill();
        } else {
            self.signal("TERM");
        }
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.history
            .extend(self.stderr.lock().expect("lock").drain(..));
        self.history
            .extend(self.stdout.lock().expect("lock").drain(..));
        let (child, stderr, stdout) = Self::launch(&self.config_path, &self.env);
        self.child = child;
        self.stderr = stderr;
        self.stdout = stdout;
        self.wait_listening();
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling a child process; the test's in-process upstream pauses meanwhile, so keygate must not need it here"
    )]
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut proxy = None;
            let mut admin = None;
            for line in self.stderr.lock().expect("lock").iter() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let f = &v["fields"];
                if f["message"] != "listening" {
                    continue;
                }
                let addr: SocketAddr = f["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("addr");
                match f["listener"].as_str() {
                    Some("proxy") => proxy = Some(addr),
                    Some("admin") => admin = Some(addr),
                    Some("connector") => {
                        self.connectors
                            .insert(f["connector"].as_str().expect("name").to_string(), addr);
                    }
                    _ => {}
                }
            }
            if let (Some(p), Some(a)) = (proxy, admin) {
                self.proxy = p;
                self.admin = a;
                // Dedicated listeners are logged right after; give them a beat.
                std::thread::sleep(Duration::from_millis(50));
                self.refresh_connectors();
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("keygate exited early with {status}: {}", self.stderr_text());
            }
            assert!(
                Instant::now() < deadline,
                "keygate did not start: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Re-reads dedicated connector listener addresses from the log.
    pub fn refresh_connectors(&mut self) {
        self.connectors.clear();
        for line in self.stderr.lock().expect("lock").iter() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            if f["message"] == "listening" && f["listener"] == "connector" {
                let addr = f["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("addr");
                self.connectors
                    .insert(f["connector"].as_str().expect("name").to_string(), addr);
            }
            if f["message"] == "connector listener closed"
                && let Some(n) = f["listener"].as_str()
            {
                self.connectors.remove(n);
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().expect("lock").join("\n")
    }

    /// Access log lines (stdout), parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Rewrites the config file in place (by rename, as editors do).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.config_path.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write");
        std::fs::rename(&tmp, &self.config_path).expect("rename");
    }

    /// Waits for a stderr line containing `needle`, at most `secs`.
    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling a child process; the test's in-process upstream pauses meanwhile, so keygate must not need it here"
    )]
    pub fn wait_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self
                .stderr
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// SIGTERM, wait for exit (bounded), then assert no registered secret
    /// appears anywhere in what the process printed. Returns the exit code.
    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling a child process; the test's in-process upstream pauses meanwhile, so keygate must not need it here"
    )]
    pub fn finish(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keygate did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100)); // let the pumps drain
        self.assert_no_secrets();
        status.code()
    }

    pub fn assert_no_secrets(&self) {
        let all = format!(
            "{}\n{}\n{}",
            self.history.join("\n"),
            self.stderr_text(),
            self.stdout_text()
        );
        for s in &self.secrets {
            assert!(
                !all.contains(s.as_str()),
                "a secret leaked into keygate's output"
            );
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Only our own child, by PID.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `keygate keygen` through the real binary: (key, sha256 hex).
pub fn keygen(prefix: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["keygen", "--prefix", prefix])
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut lines = text.lines();
    let key = lines.next().expect("key line").to_string();
    let hash = lines
        .next()
        .and_then(|l| l.strip_prefix("sha256: "))
        .expect("sha256 line")
        .to_string();
    (key, hash)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn error_code(&self) -> Option<String> {
        self.headers
            .get("keygate-error")
            .map(|v| v.to_str().expect("ascii").to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A rustls client config trusting only the CA in `ca_pem`.
pub fn tls_client_config(ca_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("add");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An admin API request to `gw` authenticated with `key`, the body (if
/// any) sent as JSON.
pub async fn admin(
    gw: &Gateway,
    key: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Reply {
    let auth = bearer(key);
    let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    send(
        method,
        &gw.admin_url(path),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        b,
    )
    .await
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    send_with(&client(), method, url, headers, body).await
}

#[expect(
    clippy::disallowed_methods,
    reason = "reads a response from the gateway under test, whose size the test chose"
)]
pub async fn send_with(
    c: &TestClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body.into())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// Sends a raw HTTP/1.1 request over TCP (for targets a client library
/// would normalise) and returns the status code and the whole answer.
pub async fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The bootstrap admin key keygate wrote beside its store.
pub fn initial_admin_key(gw: &Gateway) -> String {
    let p = gw.dir.path().join("data/initial-admin.key");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A JSON server for token endpoints and JWKS: every request is counted
/// and recorded (body included), and answered by `answer(n, body)` where
/// `n` is the 1-based request number.
pub struct JsonServer {
    pub addr: SocketAddr,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Answer = Arc<dyn Fn(usize, &str) -> (u16, String) + Send + Sync>;

impl JsonServer {
    #[expect(
        clippy::disallowed_methods,
        reason = "reads a request the gateway under test sent, whose size the test chose"
    )]
    pub async fn start(answer: Answer) -> JsonServer {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (h, b) = (Arc::clone(&hits), Arc::clone(&bodies));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (h, b, answer) = (Arc::clone(&h), Arc::clone(&b), Arc::clone(&answer));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (h, b, answer) =
                                (Arc::clone(&h), Arc::clone(&b), Arc::clone(&answer));
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                let text = String::from_utf8_lossy(&body).into_owned();
                                let n = h.fetch_add(1, Ordering::SeqCst) + 1;
                                b.lock().expect("lock").push(text.clone());
                                let (status, out) = answer(n, &text);
                                let mut r = http::Response::new(Full::new(Bytes::from(out)));
                                *r.status_mut() = StatusCode::from_u16(status).expect("status");
                                r.headers_mut().insert(
                                    "content-type",
                                    "application/json".parse().expect("hv"),
                                );
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        JsonServer {
            addr,
            hits,
            bodies,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A client that trusts only `ca_pem` (HTTP/1.1 over TLS).
pub fn https_client(
    ca_pem: &str,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let cfg = tls_client_config(ca_pem);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// The item of admin listing `v[list]` whose `field` equals `value`.
pub fn find_in(v: &serde_json::Value, list: &str, field: &str, value: &str) -> serde_json::Value {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` array in {v}"))
        .iter()
        .find(|item| item[field] == value)
        .cloned()
        .unwrap_or_else(|| panic!("no {list} item with {field} = {value}"))
}

/// Every item of the paged admin list at `path` (its items in `field`),
/// fetched `limit` at a time by following `next_cursor`, with the number
/// of pages. Checks the paging contract on the way: every answer is 200
/// with `next_cursor`, no page is over `limit`, and a page that points to
/// another is full.
pub async fn admin_pages(
    gw: &Gateway,
    key: &str,
    path: &str,
    field: &str,
    limit: usize,
) -> (Vec<serde_json::Value>, usize) {
    let join = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{join}limit={limit}&cursor={c}"),
            None => format!("{path}{join}limit={limit}"),
        };
        let r = admin(gw, key, Method::GET, &url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text());
        let v = r.json();
        let page = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: no `{field}` array in {v}"));
        pages += 1;
        assert!(page.len() <= limit, "{url}: {} items", page.len());
        items.extend(page.iter().cloned());
        match &v["next_cursor"] {
            serde_json::Value::String(next) => {
                assert_eq!(page.len(), limit, "{url}: a page before the last is full");
                cursor = Some(next.clone());
            }
            serde_json::Value::Null => return (items, pages),
            other => panic!("{url}: next_cursor is {other}"),
        }
    }
}

/// The whole audit log (`query`: "" or "?since=…"), oldest first.
pub async fn audit_records(gw: &Gateway, key: &str, query: &str) -> Vec<serde_json::Value> {
    admin_pages(gw, key, &format!("/api/v1/audit{query}"), "records", 1000)
        .await
        .0
}

/// The audit lines keygate wrote on stderr (target `keygate::audit`),
/// parsed; they are JSON whatever `--log-format` says.
pub fn audit_log_lines(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.history
        .iter()
        .chain(gw.stderr.lock().expect("lock").iter())
        .filter(|l| l.contains("keygate::audit"))
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}
