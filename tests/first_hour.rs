//! What a new user hits in the first hour, against the real binary: the
//! README's walkthrough and examples work on the shipped config, printing
//! commands end quietly when their reader goes away (`| head -1`), and the
//! text log carries no colour codes unless a person is watching a terminal.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

#[expect(
    unused_imports,
    reason = "this crate starts no upstream, so the harness's `Upstream` re-export goes unused"
)]
mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{BIN, Gateway, get, initial_admin_key};
use http::StatusCode;

const README: &str = include_str!("../README.md");
const SHIPPED: &str = include_str!("../config/keygate.yaml");

/// Runs `keygate args…` with stdout a pipe whose reader is already gone,
/// so the first write fails with EPIPE (no race with a reader closing).
fn run_into_closed_pipe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keygate")
}

fn assert_quiet_success(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} into a closed pipe: {stderr}"
    );
    assert!(stderr.is_empty(), "{what} must end quietly: {stderr}");
}

#[test]
fn printing_commands_end_quietly_when_the_reader_goes_away() {
    assert_quiet_success("keygen", &run_into_closed_pipe(&["keygen"], &[]));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/keygate.yaml");
    assert_quiet_success(
        "check",
        &run_into_closed_pipe(&["check", "-c", shipped], &[]),
    );
}

/// The shipped config, with its listeners moved to free ports.
fn shipped_on_free_ports() -> String {
    SHIPPED
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0")
}

#[tokio::test]
async fn admin_cli_listings_end_quietly_when_the_reader_goes_away() {
    let gw = Gateway::start(&shipped_on_free_ports());
    let admin_key = initial_admin_key(&gw);
    let url = gw.admin_url("");
    let env = [("KEYGATE_ADMIN_KEY", admin_key.as_str())];
    for args in [
        ["keys", "list", "--admin-url", &url],
        ["tokens", "list", "--admin-url", &url],
    ] {
        assert_quiet_success(&args.join(" "), &run_into_closed_pipe(&args, &env));
    }
    // A new key exists nowhere else: losing it is an error that names it.
    let out = run_into_closed_pipe(
        &[
            "keys",
            "create",
            "--client",
            "billing-workflow",
            "--name",
            "lost",
            "--admin-url",
            &url,
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was created but could not be written") && stderr.contains("revoke"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(gw.finish(), Some(0));
}

/// `keygate run` on a config whose proxy port is taken: it logs one
/// ERROR line through the text log and exits, so no process outlives the
/// test. Returns what reached the terminal or pipe.
fn failing_run_log(dir: &Path, via_terminal: bool, no_color: Option<&str>) -> String {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let cfg = dir.join("k.yaml");
    std::fs::write(
        &cfg,
        format!("server: {{ listen: 127.0.0.1:{port} }}\nadmin: {{ listen: 127.0.0.1:0 }}\n"),
    )
    .expect("write");
    let run = format!("{BIN} run --log-format text -c {}", cfg.display());
    let mut cmd = if via_terminal {
        // util-linux `script` gives the command a pseudo-terminal.
        let mut c = Command::new("script");
        c.args(["-qec", &run, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("{run} 2>&1")]);
        c
    };
    cmd.env_remove("NO_COLOR").env("RUST_LOG", "info");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    drop(taken);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("ERROR"), "expected the bind error: {text}");
    text
}

#[test]
fn text_log_is_coloured_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let piped = failing_run_log(dir.path(), false, None);
    assert!(
        !piped.contains('\u{1b}'),
        "colour codes in a piped log: {piped:?}"
    );
    if Command::new("script").arg("--version").output().is_ok() {
        let tty = failing_run_log(dir.path(), true, None);
        assert!(tty.contains("\u{1b}["), "a terminal gets colour: {tty:?}");
        let tty = failing_run_log(dir.path(), true, Some("1"));
        assert!(!tty.contains('\u{1b}'), "NO_COLOR is honoured: {tty:?}");
    }
}

/// Every `keygate tokens set NAME` the README shows.
fn readme_token_set_names() -> Vec<String> {
    let mut names: Vec<String> = README
        .split("keygate tokens set ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            (!name.is_empty() && name != "NAME").then_some(name)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn readme_tokens_set_example_works_on_the_shipped_config() {
    let names = readme_token_set_names();
    assert!(!names.is_empty(), "the README shows `keygate tokens set`");
    let gw = Gateway::start(&shipped_on_free_ports());
    let admin_key = initial_admin_key(&gw);
    let url = gw.admin_url("");
    for name in &names {
        let mut child = Command::new(BIN)
            .args(["tokens", "set", name, "--admin-url", &url])
            .env("KEYGATE_ADMIN_KEY", &admin_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"sk_test_from_readme").expect("write");
        }
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "`keygate tokens set {name}` from the README fails on the shipped config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = get(
            &gw.admin_url("/api/v1/tokens"),
            &[("authorization", &format!("Bearer {admin_key}"))],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let t = common::find_in(&r.json(), "tokens", "name", name);
        assert_eq!(t["state"], "ready", "{t}");
    }
    assert_eq!(gw.finish(), Some(0));
}

/// The fenced `sh` block under the `## Walkthrough` heading.
fn walkthrough() -> &'static str {
    let start = README
        .find("## Walkthrough")
        .expect("a Walkthrough section");
    let section = &README[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    &section[..end]
}

#[test]
fn readme_opens_with_the_two_commands_and_one_walkthrough_path() {
    let first_block = README
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a first sh block");
    assert!(
        first_block.contains("run -c config/keygate.yaml"),
        "{first_block}"
    );
    assert!(first_block.contains("cargo test --locked"), "{first_block}");

    let section = walkthrough();
    // How `keygate` gets on PATH.
    assert!(
        section.contains("cargo install --path .") && section.contains("target/release"),
        "the walkthrough must say how to get `keygate` on PATH:\n{section}"
    );
    let w = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the walkthrough's sh block");
    // One build, one binary: no `cargo run` debug builds racing a release
    // build for port 8080.
    assert!(!w.contains("cargo run"), "walkthrough mixes builds:\n{w}");
    assert!(w.contains("cargo build --release"), "{w}");
    assert!(
        w.contains("export PATH=\"$PWD/target/release:$PATH\""),
        "{w}"
    );
    // Started in the background, stopped by its PID.
    assert!(w.contains("keygate run") && w.contains("$!"), "{w}");
    assert!(w.contains("kill \"$KEYGATE_PID\""), "{w}");
    // Every subcommand it uses exists.
    for line in w.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for part in line.split("keygate ").skip(1) {
            let Some(sub) = part.split_whitespace().next() else {
                continue;
            };
            if !sub.chars().all(|c| c.is_ascii_lowercase()) || sub.is_empty() {
                continue;
            }
            let ok = Command::new(BIN)
                .args([sub, "--help"])
                .output()
                .expect("help")
                .status
                .success();
            assert!(
                ok,
                "the walkthrough uses `keygate {sub}`, which does not exist"
            );
        }
    }
}
