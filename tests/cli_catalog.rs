//! The run-time catalog through the `keygate` CLI only (issue 12, item 7),
//! against the real binary: the seeds' flow end to end (create a text
//! token with prefix `Bearer` on `Authorization`, a connector, a second
//! token on `X-API-Key`, attach it, a role, a client and a key; both
//! headers reach the upstream; a value swapped through `tokens set` is on
//! the next request; detach; delete), a `422` printed as JSON pointers, a
//! stale `--if-match`, and `export` output that `keygate check` accepts.
//!
//! Values go in through stdin or a file only. Every argv the tests give
//! the CLI, and everything the CLI and the gateway print, is checked for
//! them. Only proxied requests and the upstream's record are seen outside
//! the CLI.
//!
//! `keygate audit` lists those changes with fingerprints, never values.
//!
//! Not here: a CLI list spanning several pages. The CLI asks for the
//! API's largest page (1000), so that would take 1000+ objects; the
//! cursor-following itself is unit-tested in `cli.rs`, and the API's
//! paging in `tests/paging.rs`.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{Gateway, Reply, Upstream, bearer, get, initial_admin_key};
use http::StatusCode;
use serde_json::Value;

const SECRET_A: &str = "sk_live_cli_aaaa_1111";
const SECRET_B: &str = "xk_cli_bbbb_2222";
const SECRET_C: &str = "sk_live_cli_cccc_3333";
const SECRET_D: &str = "sk_live_cli_dddd_4444";
const SECRETS: [&str; 4] = [SECRET_A, SECRET_B, SECRET_C, SECRET_D];

/// How long one CLI run may take before the test fails (it only talks to
/// the local gateway, which answers in milliseconds).
const CLI_DEADLINE: Duration = Duration::from_secs(30);

fn yaml(up: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  file-token: {{ value: {{ env: KG_CLI_FILE }}, header: X-File }}
connectors:
  file-conn: {{ upstream: "{up}", tokens: [file-token] }}
"#
    )
}

/// What one CLI run printed.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn success(self) -> Out {
        assert!(self.ok, "CLI failed: {}{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    fn failure(self) -> Out {
        assert!(!self.ok, "CLI succeeded: {}{}", self.stdout, self.stderr);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).expect("--json prints JSON")
    }
}

struct Env {
    gw: Gateway,
    up: Upstream,
    key: String,
    /// Every argument given to the CLI, for the argv check.
    argv: Mutex<Vec<String>>,
    /// Everything the CLI printed, for the output check.
    printed: Mutex<Vec<String>>,
}

impl Env {
    async fn start() -> Env {
        let up = Upstream::start().await;
        let mut gw = Gateway::start_with(&yaml(&up.url()), &[("KG_CLI_FILE", "file-v")], |_| {});
        gw.secrets.extend(SECRETS.iter().map(|s| s.to_string()));
        let key = initial_admin_key(&gw);
        Env {
            gw,
            up,
            key,
            argv: Mutex::new(Vec::new()),
            printed: Mutex::new(Vec::new()),
        }
    }

    /// Runs `keygate ARGS --admin-url …` with the admin key in the
    /// environment and `stdin` (if any) piped in, bounded by
    /// `CLI_DEADLINE`.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(common::BIN);
        cmd.args(args)
            .args(["--admin-url", &format!("http://{}", self.gw.admin)])
            .env("KEYGATE_ADMIN_KEY", &self.key)
            .env_remove("RUST_LOG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.argv
            .lock()
            .expect("lock")
            .extend(args.iter().map(|a| a.to_string()));
        let mut child = cmd.spawn().expect("spawn the CLI");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_DEADLINE) {
            Ok(out) => out.expect("CLI output"),
            Err(_) => {
                // Only the CLI process this test started, by its id.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("keygate {args:?} did not finish in {CLI_DEADLINE:?}");
            }
        };
        let out = Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let mut printed = self.printed.lock().expect("lock");
        printed.push(out.stdout.clone());
        printed.push(out.stderr.clone());
        out
    }

    /// A proxied GET through `connector` with the API key `key`.
    async fn proxied(&self, connector: &str, key: &str) -> Reply {
        get(
            &self.gw.url(&format!("/{connector}/v1/x")),
            &[("authorization", &bearer(key))],
        )
        .await
    }

    /// No value in any argv the CLI got, in anything it printed, or in
    /// anything the gateway printed.
    fn assert_no_values_anywhere(&self) {
        let argv = self.argv.lock().expect("lock").join("\n");
        let printed = self.printed.lock().expect("lock").join("\n");
        for s in SECRETS {
            assert!(!argv.contains(s), "a value was given on the command line");
            assert!(!printed.contains(s), "the CLI printed a value");
        }
        self.gw.assert_no_secrets();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_flow_through_the_cli_only() {
    let env = Env::start().await;

    // A text token: prefix Bearer, header Authorization, value from stdin.
    let out = env
        .cli(
            &[
                "tokens",
                "create",
                "stripe",
                "--type",
                "text",
                "--prefix",
                "Bearer",
                "--header",
                "Authorization",
                "--description",
                "Stripe secret key",
                "--value-stdin",
            ],
            Some(&format!("{SECRET_A}\n")),
        )
        .success();
    assert_eq!(out.stdout.trim(), "created token stripe (version 1)");
    let t = env
        .cli(&["tokens", "show", "stripe", "--json"], None)
        .success()
        .json();
    assert_eq!(t["source"], "api");
    assert_eq!(t["state"], "ready", "the value was in place before 201");
    assert_eq!(t["prefix"], "Bearer");
    assert_eq!(t["definition_version"], 1);
    let shown = env.cli(&["tokens", "show", "stripe"], None).success();
    assert!(
        shown
            .stdout
            .contains("set at run time (sealed in the store)"),
        "{}",
        shown.stdout
    );

    // A connector using it, with a static header.
    let upstream = env.up.url();
    env.cli(
        &[
            "connectors",
            "create",
            "billing",
            "--upstream",
            &upstream,
            "--token",
            "stripe",
            "--header",
            "Stripe-Version: 2024-06-20",
        ],
        None,
    )
    .success();

    // A second token on X-API-Key, its definition and value from a file.
    let file = env.gw.dir.path().join("partner.yaml");
    std::fs::write(
        &file,
        format!("type: text\nheader: X-API-Key\nvalue: {SECRET_B}\n"),
    )
    .expect("write the definition");
    let file = file.to_str().expect("utf-8 path");
    let out = env
        .cli(&["tokens", "create", "partner", "-f", file], None)
        .success();
    assert_eq!(out.stdout.trim(), "created token partner (version 1)");

    // Attach: read, add, put with If-Match of what was read.
    let out = env
        .cli(&["connectors", "attach", "billing", "partner"], None)
        .success();
    assert_eq!(
        out.stdout.trim(),
        "connector billing (version 2) tokens: stripe,partner"
    );
    let out = env
        .cli(&["connectors", "attach", "billing", "partner"], None)
        .success();
    assert!(out.stderr.contains("already attached"), "{}", out.stderr);

    // A role, a client holding it, and a key for the client.
    env.cli(
        &["roles", "create", "billing-role", "--allow", "billing:GET"],
        None,
    )
    .success();
    env.cli(
        &["clients", "create", "billing-bot", "--role", "billing-role"],
        None,
    )
    .success();
    let out = env
        .cli(
            &["keys", "create", "--client", "billing-bot", "--name", "k"],
            None,
        )
        .success();
    let app = out.stdout.trim().to_string();
    assert!(app.starts_with("kg_"), "{}", out.stdout);

    // Both headers reach the upstream, each with its prefix.
    let r = env.proxied("billing", &app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = env.up.last();
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_A}").as_str())
    );
    assert_eq!(seen.header("x-api-key").as_deref(), Some(SECRET_B));
    assert_eq!(seen.header("stripe-version").as_deref(), Some("2024-06-20"));

    // The lists show it all (every page, where the API pages).
    let list = env.cli(&["connectors", "list"], None).success().stdout;
    let row = list
        .lines()
        .find(|l| l.starts_with("billing "))
        .unwrap_or_else(|| panic!("no billing row: {list}"));
    assert!(
        row.contains("stripe,partner") && row.contains(" api "),
        "{row}"
    );
    assert!(list.contains("file-conn"), "{list}");
    let roles = env.cli(&["roles", "list"], None).success().stdout;
    assert!(roles.contains("billing:GET"), "{roles}");
    let clients = env.cli(&["clients", "list"], None).success().stdout;
    assert!(clients.contains("billing-bot"), "{clients}");
    let tokens = env.cli(&["tokens", "list"], None).success().stdout;
    assert!(
        tokens.contains("stripe") && tokens.contains("partner"),
        "{tokens}"
    );
    let keys = env.cli(&["keys", "list", "--json"], None).success().json();
    assert!(
        keys["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["client"] == "billing-bot"),
        "{keys}"
    );

    // Swap a value through stdin: the next request carries the new one.
    env.cli(&["tokens", "set", "stripe"], Some(SECRET_C))
        .success();
    env.proxied("billing", &app).await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_C}").as_str())
    );

    // `tokens update --value-stdin` swaps it the same way.
    let out = env
        .cli(
            &["tokens", "update", "stripe", "--value-stdin"],
            Some(SECRET_D),
        )
        .success();
    assert_eq!(out.stdout.trim(), "updated token stripe (version 2)");
    env.proxied("billing", &app).await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_D}").as_str())
    );

    // The export, taken while API objects exist, passes `keygate check`
    // and holds no value.
    let export = env.cli(&["export"], None).success().stdout;
    assert!(
        export.contains("billing") && export.contains("file-conn"),
        "{export}"
    );
    let path = env.gw.dir.path().join("exported.yaml");
    std::fs::write(&path, &export).expect("write the export");
    let check = Command::new(common::BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A token in use cannot go; the error names the connector.
    let out = env.cli(&["tokens", "delete", "partner"], None).failure();
    assert!(
        out.stderr.contains("409 token_in_use") && out.stderr.contains("billing"),
        "{}",
        out.stderr
    );

    // A file-owned connector is read-only through the CLI too.
    let out = env
        .cli(&["connectors", "detach", "file-conn", "file-token"], None)
        .failure();
    assert!(out.stderr.contains("config_owned"), "{}", out.stderr);

    // Detach: the next request has no X-API-Key.
    let out = env
        .cli(&["connectors", "detach", "billing", "partner"], None)
        .success();
    assert_eq!(
        out.stdout.trim(),
        "connector billing (version 3) tokens: stripe"
    );
    env.proxied("billing", &app).await;
    assert_eq!(env.up.last().header("x-api-key"), None);

    // Delete: each is gone at once.
    env.cli(&["tokens", "delete", "partner"], None).success();
    let out = env.cli(&["tokens", "show", "partner"], None).failure();
    assert!(out.stderr.contains("404"), "{}", out.stderr);

    // A client with a live key: asked to confirm, then its key goes too.
    let out = env
        .cli(&["clients", "delete", "billing-bot"], None)
        .failure();
    assert!(
        out.stderr.contains("confirmation_required") && out.stderr.contains("--confirm"),
        "{}",
        out.stderr
    );
    assert_eq!(env.proxied("billing", &app).await.status, StatusCode::OK);
    env.cli(&["clients", "delete", "billing-bot", "--confirm"], None)
        .success();
    assert_eq!(
        env.proxied("billing", &app).await.status,
        StatusCode::UNAUTHORIZED
    );
    env.cli(&["roles", "delete", "billing-role"], None)
        .success();
    let out = env
        .cli(&["connectors", "delete", "billing"], None)
        .success();
    assert_eq!(out.stdout.trim(), "deleted connector billing");
    let r = env.proxied("billing", &app).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    env.cli(&["tokens", "delete", "stripe"], None).success();
    let out = env.cli(&["tokens", "list"], None).success();
    assert!(!out.stdout.contains("stripe"), "{}", out.stdout);

    env.assert_no_values_anywhere();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_print_as_pointers_and_stale_versions_are_refused() {
    let env = Env::start().await;

    // Every problem on its own line, `  <pointer>: <message>`.
    let out = env
        .cli(
            &[
                "connectors",
                "create",
                "bad",
                "--upstream",
                "ftp://x",
                "--token",
                "file-token",
                "--token",
                "nope",
                "--header",
                "Bad Header: v",
            ],
            None,
        )
        .failure();
    assert!(
        out.stderr.contains("422 validation_failed"),
        "{}",
        out.stderr
    );
    for want in [
        "\n  /upstream: ",
        "\n  /tokens/1: ",
        "\n  /headers/Bad Header: ",
    ] {
        assert!(out.stderr.contains(want), "{want:?} in {}", out.stderr);
    }
    let out = env.cli(&["connectors", "show", "bad"], None).failure();
    assert!(
        out.stderr.contains("404"),
        "nothing was made: {}",
        out.stderr
    );

    // A value the validator refuses is named by its pointer, never shown.
    let out = env
        .cli(
            &["tokens", "create", "t", "--header", "X-T", "--value-stdin"],
            Some(&format!("{SECRET_A}\r\nInjected: 1")),
        )
        .failure();
    assert!(out.stderr.contains("\n  /value: "), "{}", out.stderr);
    assert!(!out.stderr.contains("Injected"), "{}", out.stderr);

    // A definition file's own mistakes are placed in the file.
    let file = env.gw.dir.path().join("dup.yaml");
    std::fs::write(&file, "header: X-A\nheader: X-B\n").expect("write");
    let out = env
        .cli(
            &[
                "tokens",
                "create",
                "dup",
                "-f",
                file.to_str().expect("utf-8"),
            ],
            None,
        )
        .failure();
    assert!(
        out.stderr.contains("dup.yaml:2:1: duplicate key `header`"),
        "{}",
        out.stderr
    );

    // Update is a merge patch; a stale --if-match is refused with 412.
    let file = env.gw.dir.path().join("ops.json");
    std::fs::write(
        &file,
        r#"{"ops": {"description": "first", "allow": [{"connector": "file-conn"}]}}"#,
    )
    .expect("write");
    env.cli(
        &[
            "roles",
            "create",
            "ops",
            "-f",
            file.to_str().expect("utf-8"),
        ],
        None,
    )
    .success();
    let out = env
        .cli(
            &[
                "roles",
                "update",
                "ops",
                "--description",
                "A",
                "--if-match",
                "1",
            ],
            None,
        )
        .success();
    assert_eq!(out.stdout.trim(), "updated role ops (version 2)");
    let out = env
        .cli(
            &[
                "roles",
                "update",
                "ops",
                "--description",
                "B",
                "--if-match",
                "1",
            ],
            None,
        )
        .failure();
    assert!(
        out.stderr.contains("412 precondition_failed"),
        "{}",
        out.stderr
    );
    let out = env
        .cli(&["roles", "delete", "ops", "--if-match", "1"], None)
        .failure();
    assert!(out.stderr.contains("412"), "{}", out.stderr);
    let role = env
        .cli(&["roles", "show", "ops", "--json"], None)
        .success()
        .json();
    assert_eq!(role["description"], "A");
    assert_eq!(
        role["allow"][0]["connector"], "file-conn",
        "the patch kept it"
    );
    env.cli(&["roles", "delete", "ops", "--if-match", "2"], None)
        .success();

    // A file-owned object cannot be changed through the CLI.
    let out = env
        .cli(
            &["tokens", "update", "file-token", "--prefix", "Token"],
            None,
        )
        .failure();
    assert!(out.stderr.contains("409 config_owned"), "{}", out.stderr);

    env.assert_no_values_anywhere();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_each_cli_change_with_fingerprints_never_values() {
    let env = Env::start().await;
    env.cli(
        &[
            "tokens",
            "create",
            "stripe",
            "--header",
            "X-S",
            "--value-stdin",
        ],
        Some(SECRET_A),
    )
    .success();
    env.cli(&["tokens", "set", "stripe"], Some(SECRET_B))
        .success();
    let upstream = env.up.url();
    env.cli(
        &["connectors", "create", "billing", "--upstream", &upstream],
        None,
    )
    .success();
    env.cli(&["connectors", "attach", "billing", "stripe"], None)
        .success();

    let all = env.cli(&["audit", "--json"], None).success().json();
    let records = all["records"].as_array().expect("records");
    let actions: Vec<(&str, &str)> = records
        .iter()
        .filter_map(|r| Some((r["action"].as_str()?, r["object"]["name"].as_str()?)))
        .collect();
    for want in [
        ("token.create", "stripe"),
        ("token.value.set", "stripe"),
        ("connector.create", "billing"),
        ("connector.tokens", "billing"),
    ] {
        assert!(actions.contains(&want), "{want:?} in {actions:?}");
    }
    assert_eq!(all["next_cursor"], Value::Null, "every page was followed");
    // The create sealed the first value (a record of its own); the swap
    // is the last value change, from one fingerprint to another.
    let set = records
        .iter()
        .rev()
        .find(|r| r["action"] == "token.value.set")
        .expect("the value change");
    assert_eq!(set["actor"]["client"], "keygate-admin");
    let (before, after) = (&set["fingerprint_before"], &set["fingerprint_after"]);
    assert!(
        before.is_string() && after.is_string() && before != after,
        "{set}"
    );

    // The table: who, what, how.
    let table = env.cli(&["audit"], None).success().stdout;
    let fingerprints = format!(
        "{}->{}",
        before.as_str().expect("fp"),
        after.as_str().expect("fp")
    );
    let row = table
        .lines()
        .find(|l| l.contains(&fingerprints))
        .unwrap_or_else(|| panic!("no {fingerprints} in {table}"));
    assert!(
        row.contains("keygate-admin")
            && row.contains("token.value.set")
            && row.contains("token/stripe"),
        "{row}"
    );

    // --limit stops early and says so; --since (with a `+` offset, sent
    // percent-encoded) filters by time.
    let out = env.cli(&["audit", "--limit", "2"], None).success();
    assert_eq!(out.stdout.lines().count(), 3, "header + 2: {}", out.stdout);
    assert!(out.stderr.contains("More records follow"), "{}", out.stderr);
    let out = env
        .cli(
            &["audit", "--since", "2000-01-01T00:00:00+00:00", "--json"],
            None,
        )
        .success();
    assert_eq!(
        out.json()["records"].as_array().map(Vec::len),
        Some(records.len())
    );
    let out = env
        .cli(&["audit", "--since", "2999-01-01T00:00:00Z"], None)
        .success();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "only the header: {}",
        out.stdout
    );
    let out = env.cli(&["audit", "--since", "yesterday"], None).failure();
    assert!(out.stderr.contains("400"), "{}", out.stderr);

    env.assert_no_values_anywhere();
}
