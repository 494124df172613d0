//! No Docker engine or cluster runs here, so the deploy files are checked
//! statically against the real binary: every subcommand and flag they pass
//! exists (`--help`), every embedded config passes `keygate check`, probe
//! and container ports match the config's listeners, mounted paths match the
//! paths the config reads, and every file the Dockerfile copies exists.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

#[expect(
    unused_imports,
    reason = "this crate starts no upstream, so the harness's `Upstream` re-export goes unused"
)]
mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Asserts `args` is a valid keygate invocation: the subcommand exists and
/// every flag appears in its `--help`.
fn assert_cli(args: &[String]) {
    let sub = &args[0];
    let out = Command::new(BIN)
        .args([sub.as_str(), "--help"])
        .output()
        .expect("help");
    assert!(out.status.success(), "`keygate {sub}` is not a subcommand");
    let help = String::from_utf8_lossy(&out.stdout);
    for a in args.iter().skip(1).filter(|a| a.starts_with('-')) {
        let flag = a.split('=').next().expect("flag");
        assert!(
            help.contains(flag),
            "`keygate {sub}` has no flag {flag}:\n{help}"
        );
    }
}

fn flag_value(args: &[String], names: &[&str]) -> Option<String> {
    args.windows(2)
        .find(|w| names.contains(&w[0].as_str()))
        .map(|w| w[1].clone())
}

/// Runs `keygate check` on config text as if it lived at `path`.
fn assert_config_checks(text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("keygate.yaml");
    std::fs::write(&p, text).expect("write");
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&p)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "embedded config fails check:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn docs(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|d| serde_yaml::Value::deserialize(d).expect("yaml doc"))
        .collect()
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What `check_manifest` found to check, so each manifest's test can
/// require the checks that apply to it actually ran.
#[derive(Debug, Default)]
struct Checked {
    /// `file:` token values found mounted from a Secret volume.
    secret_files: usize,
    /// Service ports found to target a listener.
    service_ports: usize,
}

fn check_manifest(path: &str) -> Checked {
    let mut checked = Checked::default();
    let docs = docs(path);
    let configmap = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap_or_else(|| panic!("{path}: no ConfigMap"));
    let cm_name = configmap["metadata"]["name"].as_str().expect("name");
    let text = configmap["data"]["keygate.yaml"]
        .as_str()
        .expect("keygate.yaml in the ConfigMap");
    assert_config_checks(text);
    let cfg: serde_yaml::Value = serde_yaml::from_str(text).expect("config yaml");
    let admin_port = port_of(cfg["admin"]["listen"].as_str().expect("admin.listen"));
    let proxy_port = port_of(cfg["server"]["listen"].as_str().expect("server.listen"));

    let deploy = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let spec = &deploy["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    let kg = containers
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("keygate"))
        })
        .expect("keygate container");
    let args = strings(&kg["args"]);
    assert_cli(&args);
    let config_path = flag_value(&args, &["-c", "--config"]).expect("-c");

    // Probes hit the admin listener, which must not be loopback-only.
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = &kg[probe]["httpGet"];
        assert_eq!(
            p["port"].as_u64(),
            Some(u64::from(admin_port)),
            "{path}: {probe} port"
        );
        assert!(
            !cfg["admin"]["listen"]
                .as_str()
                .expect("listen")
                .starts_with("127."),
            "{path}: probes cannot reach a loopback admin listener"
        );
    }
    assert_eq!(kg["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(kg["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports = kg["ports"].as_sequence().expect("container ports");
    assert!(
        !ports.is_empty(),
        "{path}: the container declares its ports"
    );
    for port in ports {
        let p = port["containerPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("containerPort is a port number");
        assert!(
            p == admin_port || p == proxy_port,
            "{path}: container port {p} is no listener"
        );
    }

    // The ConfigMap is mounted where -c points; secret files are mounted.
    let mounts = kg["volumeMounts"].as_sequence().expect("mounts");
    let volumes = spec["volumes"].as_sequence().expect("volumes");
    let mount_for = |file: &str| -> Option<&serde_yaml::Value> {
        mounts.iter().find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|mp| Path::new(file).starts_with(mp))
        })
    };
    let cfg_mount = mount_for(&config_path).expect("config mount");
    let cfg_volume = volumes
        .iter()
        .find(|v| v["name"] == cfg_mount["name"])
        .expect("config volume");
    assert_eq!(
        cfg_volume["configMap"]["name"].as_str(),
        Some(cm_name),
        "{path}: -c points at the ConfigMap"
    );
    for (_, tok) in cfg["tokens"].as_mapping().into_iter().flatten() {
        if let Some(file) = tok["value"]["file"].as_str() {
            let m = mount_for(file).unwrap_or_else(|| panic!("{path}: {file} is not mounted"));
            let v = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .expect("volume");
            assert!(
                v.get("secret").is_some(),
                "{path}: {file} comes from a Secret volume"
            );
            checked.secret_files += 1;
        }
    }
    let sqlite = cfg["store"]["sqlite"].as_str().expect("store.sqlite");
    assert!(
        mount_for(sqlite).is_some(),
        "{path}: the store folder is a writable volume"
    );

    if let Some(svc) = docs.iter().find(|d| d["kind"] == "Service") {
        for p in svc["spec"]["ports"].as_sequence().expect("ports") {
            let t = p["targetPort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("targetPort is a port number");
            assert!(
                t == admin_port || t == proxy_port,
                "{path}: service targets {t}, no listener"
            );
            checked.service_ports += 1;
        }
    }
    checked
}

#[test]
fn kubernetes_sidecar_is_consistent() {
    let checked = check_manifest("deploy/kubernetes/sidecar.yaml");
    // The sidecar reads its upstream secret from a mounted file.
    assert!(checked.secret_files > 0, "{checked:?}");
}

#[test]
fn kubernetes_standalone_is_consistent() {
    let checked = check_manifest("deploy/kubernetes/standalone.yaml");
    // The shared gateway is reached through its Service.
    assert!(checked.service_ports >= 2, "{checked:?}");
}

#[test]
fn dockerfile_is_consistent() {
    let text = read("deploy/Dockerfile");
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
    assert!(text.contains("USER nonroot"), "runs as non-root");
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                Path::new(ROOT).join(src).exists(),
                "Dockerfile copies missing {src}"
            );
        }
    }
    let cmd_line = text.lines().find(|l| l.starts_with("CMD ")).expect("CMD");
    let args: Vec<String> =
        serde_json::from_str(cmd_line.trim_start_matches("CMD ")).expect("CMD json");
    assert_cli(&args);
    let cfg = flag_value(&args, &["-c"]).expect("-c");
    assert!(
        text.contains(&format!("COPY config/keygate.yaml {cfg}")),
        "the default config is at -c"
    );
    let shipped = read("config/keygate.yaml");
    for port in text
        .lines()
        .filter(|l| l.starts_with("EXPOSE"))
        .flat_map(|l| l.split_whitespace().skip(1))
    {
        assert!(
            shipped.contains(&format!(":{port}")),
            "EXPOSE {port} is not a listener of the shipped config"
        );
    }
}

#[test]
fn systemd_unit_is_consistent() {
    let text = read("deploy/systemd/keygate.service");
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_string()
    };
    for key in ["ExecStart", "ExecStartPre"] {
        let v = value(key);
        let mut words = v.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/keygate"));
        let args: Vec<String> = words.map(str::to_string).collect();
        assert_cli(&args);
    }
    assert_eq!(
        value("ExecReload"),
        "/bin/kill -HUP $MAINPID",
        "reload is SIGHUP"
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop: u64 = value("TimeoutStopSec").parse().expect("seconds");
    assert!(
        stop > 30,
        "systemd waits longer than the default 30s shutdown_grace"
    );
}
