//! The web console in a real browser (issue 14, item 5): a real keygate
//! and a real upstream on 127.0.0.1, Debian's Chromium driven headless by
//! Playwright (`playwright-core`, no browser download) from
//! `tests/console/console.test.mjs`. The script signs in, builds tokens, a
//! connector, a role, a client and a key through the pages, calls the
//! proxy with that key, swaps a value and revokes the key in the UI; this
//! harness then checks from the upstream's side what arrived.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/console/node_modules`
//! (`.ci/run` installs all three). Without them the test skips with a
//! note, except under CI (`CI` set), where that is a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, Upstream, initial_admin_key};

const CHROMIUM: &str = "/usr/bin/chromium";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        return Some("node is not installed".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    if !dir().join("node_modules/playwright-core").exists() {
        return Some(
            "tests/console/node_modules is missing (npm ci --prefix tests/console)".into(),
        );
    }
    None
}

fn yaml(up: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  yaml_token: {{ value: {{ literal: "yaml-secret-console" }}, header: X-Yaml-Token }}
connectors:
  from_yaml: {{ upstream: "{up}", tokens: [yaml_token] }}
roles:
  yaml_caller: {{ allow: [ {{ connector: from_yaml }} ] }}
clients:
  yaml_app: {{ roles: [yaml_caller] }}
"#
    )
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "waits on the node child process with a hard deadline; the upstream runs on the test's runtime meanwhile"
)]
async fn the_console_drives_the_whole_flow_in_a_real_browser() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "browser tests cannot run under CI: {why}"
        );
        eprintln!("skipping the console browser tests: {why}");
        return;
    }
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&yaml(&up.url()));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![admin_key.clone(), "yaml-secret-console".into()];
    let shots = std::env::var("SHOTS_DIR").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/console-shots")
            .display()
            .to_string()
    });
    std::fs::create_dir_all(&shots).expect("shots dir");

    // The node child runs while this runtime keeps serving the upstream,
    // so it is waited for on a blocking thread.
    let admin_url = gw.admin_url("");
    let proxy_url = gw.url("");
    let upstream_url = up.url();
    let key = admin_key.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .arg("console.test.mjs")
            .current_dir(dir())
            .env("ADMIN_URL", admin_url)
            .env("PROXY_URL", proxy_url)
            .env("UPSTREAM_URL", upstream_url)
            .env("ADMIN_KEY", key)
            .env("SHOTS_DIR", shots)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status, stdout, stderr)
    })
    .await
    .expect("node thread");
    let (status, stdout, stderr) = out;
    // The keys the script made, as it reports them, are secrets too.
    for line in stdout.lines() {
        if let Some(k) = line.strip_prefix("SECRET ") {
            gw.secrets.push(k.trim().to_string());
        }
    }
    let log: String = stdout
        .lines()
        .filter(|l| !l.starts_with("SECRET "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "browser tests failed ({status:?}):\n{log}\n{stderr}"
    );
    eprintln!("{log}");

    // What the upstream received: both tokens set in the UI, the value as
    // replaced in the UI, and never keygate's session cookie or the key.
    let seen = up.seen.lock().expect("seen").clone();
    let calls: Vec<_> = seen
        .iter()
        .filter(|s| s.uri.starts_with("/echo-headers"))
        .collect();
    assert!(calls.len() >= 2, "{} proxied calls", calls.len());
    assert_eq!(
        calls[0].header("authorization").as_deref(),
        Some("Bearer sk_live_console_1")
    );
    assert_eq!(
        calls[0].header("x-api-key").as_deref(),
        Some("crm-console-1")
    );
    assert_eq!(
        calls[calls.len() - 1].header("authorization").as_deref(),
        Some("Bearer sk_live_console_2")
    );
    for c in &calls {
        assert!(c.header("cookie").is_none());
    }
    gw.assert_no_secrets();
}
