//! No Docker engine or cluster runs here, so the deploy files are checked
//! statically against the real binary: every subcommand and flag they pass
//! exists (`--help`), every embedded config passes `keygate check`, probe
//! and container ports match the config's listeners, mounted paths match the
//! paths the config reads, and every file the Dockerfile copies exists. The
//! replica setups (`deploy/compose`, `deploy/kubernetes/replicas.yaml`) are
//! held to the same, plus what makes replicas work: one config and one
//! master key for all, nginx's upstream naming exactly the replicas' proxy
//! port, a disruption budget selecting the Deployment's pods.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

#[expect(
    unused_imports,
    reason = "this crate starts no upstream, so the harness's `Upstream` re-export goes unused"
)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

/// What the replica configs' `store.postgres.url: { env: … }` reads when no
/// compose file gives one. A name that never resolves: `check` validates,
/// it must not need the database.
const DUMMY_DATABASE_URL: &str = "postgres://keygate:dummy@db.invalid:5432/keygate?sslmode=disable";

/// Runs `keygate check` on config text as if it lived at `path`.
fn assert_config_checks(text: &str) {
    assert_config_checks_with(text, DUMMY_DATABASE_URL);
}

/// `keygate check` with `KEYGATE_DATABASE_URL` set to `database_url`.
fn assert_config_checks_with(text: &str, database_url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("keygate.yaml");
    std::fs::write(&p, text).expect("write");
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&p)
        .env("KEYGATE_DATABASE_URL", database_url)
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

/// A keygate container's probes hit `/readyz` and `/healthz` on the admin
/// listener (which must not be loopback-only, or the kubelet cannot reach
/// it), and every port it declares is a listener of its config.
fn check_probes_and_ports(path: &str, kg: &serde_yaml::Value, cfg: &serde_yaml::Value) {
    let admin_port = port_of(cfg["admin"]["listen"].as_str().expect("admin.listen"));
    let proxy_port = port_of(cfg["server"]["listen"].as_str().expect("server.listen"));
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

    check_probes_and_ports(path, kg, &cfg);

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

/// Seconds in a duration written like `30s`, `2m` or `45` (Kubernetes).
fn seconds(text: &str) -> u64 {
    let (n, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {text}"));
    match unit {
        "" | "s" => n,
        "m" => n * 60,
        _ => panic!("duration unit in {text}"),
    }
}

/// Bytes in a size written like `32MiB` (keygate) or `32m` (nginx).
fn bytes(text: &str) -> u64 {
    let (n, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("size {text}"));
    match unit {
        "" => n,
        "k" | "KiB" => n << 10,
        "m" | "MiB" => n << 20,
        "g" | "GiB" => n << 30,
        _ => panic!("size unit in {text}"),
    }
}

/// The folder keygate writes beside its config (`initial-admin.key`).
fn data_dir(config_path: &str) -> PathBuf {
    Path::new(config_path)
        .parent()
        .expect("config folder")
        .join("data")
}

/// The mount a path is read through: the deepest mount above it, as the
/// kernel resolves nested mounts.
fn covering_mount<'a>(mounts: &'a [serde_yaml::Value], file: &Path) -> &'a serde_yaml::Value {
    mounts
        .iter()
        .filter(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|mp| file.starts_with(mp))
        })
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
        .unwrap_or_else(|| panic!("{} is not mounted", file.display()))
}

fn is_subset(labels: &serde_yaml::Value, of: &serde_yaml::Value) -> bool {
    let labels = labels.as_mapping().expect("labels");
    !labels.is_empty() && labels.iter().all(|(k, v)| of.get(k) == Some(v))
}

#[test]
fn kubernetes_replicas_are_consistent() {
    let path = "deploy/kubernetes/replicas.yaml";
    let docs = docs(path);
    let of_kind = |kind: &str| -> &serde_yaml::Value {
        let mut found = docs.iter().filter(|d| d["kind"] == kind);
        let doc = found.next().unwrap_or_else(|| panic!("{path}: no {kind}"));
        assert!(found.next().is_none(), "{path}: one {kind}");
        doc
    };
    let configmap = of_kind("ConfigMap");
    let text = configmap["data"]["keygate.yaml"]
        .as_str()
        .expect("keygate.yaml in the ConfigMap");
    assert_config_checks(text);
    let cfg: serde_yaml::Value = serde_yaml::from_str(text).expect("config yaml");
    let pg = &cfg["store"]["postgres"];
    assert!(cfg["store"].get("sqlite").is_none(), "{path}: no SQLite");
    let url_env = pg["url"]["env"].as_str().expect("store.postgres.url.env");

    let deploy = of_kind("Deployment");
    assert_eq!(
        deploy["spec"]["replicas"].as_u64(),
        Some(3),
        "{path}: replicas"
    );
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    assert!(
        is_subset(&deploy["spec"]["selector"]["matchLabels"], labels),
        "{path}: the Deployment selects its pods"
    );
    let spec = &deploy["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "{path}: keygate alone in the pod");
    let kg = &containers[0];
    assert!(
        kg["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("keygate")),
        "{path}: the keygate image"
    );
    for d in &docs {
        assert!(
            !serde_yaml::to_string(d)
                .expect("yaml")
                .contains("image: postgres"),
            "{path}: the database is operated elsewhere"
        );
    }
    let args = strings(&kg["args"]);
    assert_cli(&args);
    let config_path = flag_value(&args, &["-c", "--config"]).expect("-c");
    check_probes_and_ports(path, kg, &cfg);

    // Security: non-root, read-only root; so everything written is a volume.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{path}");
    assert_eq!(
        kg["securityContext"]["readOnlyRootFilesystem"], true,
        "{path}"
    );
    assert!(
        kg["resources"]["requests"].is_mapping(),
        "{path}: resources"
    );

    let mounts = kg["volumeMounts"].as_sequence().expect("mounts");
    let volumes = spec["volumes"].as_sequence().expect("volumes");
    let volume_of = |m: &serde_yaml::Value| -> &serde_yaml::Value {
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("{path}: no volume {:?}", m["name"]))
    };
    let cfg_mount = covering_mount(mounts, Path::new(&config_path));
    assert_eq!(
        volume_of(cfg_mount)["configMap"]["name"],
        configmap["metadata"]["name"],
        "{path}: -c points at the ConfigMap"
    );
    let data = covering_mount(mounts, &data_dir(&config_path));
    assert!(
        volume_of(data).get("emptyDir").is_some() && data.get("readOnly") != Some(&true.into()),
        "{path}: data/ beside the config is a writable emptyDir"
    );

    // The master key is a file from one Secret, the same for every pod.
    let key_file = cfg["store"]["master_key"]["file"]
        .as_str()
        .expect("store.master_key.file");
    let key_mount = covering_mount(mounts, Path::new(key_file));
    let secret = &volume_of(key_mount)["secret"];
    assert!(secret.is_mapping(), "{path}: the master key is a Secret");
    let inside = Path::new(key_file)
        .strip_prefix(key_mount["mountPath"].as_str().expect("mountPath"))
        .expect("inside the mount");
    let items = secret["items"].as_sequence().expect("secret items");
    assert!(
        items
            .iter()
            .any(|i| i["path"].as_str().map(Path::new) == Some(inside)),
        "{path}: the Secret puts a key at {key_file}"
    );

    // The database URL comes from a Secret, never the manifest.
    let env = kg["env"].as_sequence().expect("env");
    let url = env
        .iter()
        .find(|e| e["name"] == url_env)
        .unwrap_or_else(|| panic!("{path}: {url_env} is not set"));
    assert!(
        url["valueFrom"]["secretKeyRef"].is_mapping(),
        "{path}: {url_env} from a Secret"
    );

    // Shutdown: the endpoint goes first (preStop), then keygate drains for
    // shutdown_grace, all before the kubelet's SIGKILL.
    let grace = seconds(cfg["server"]["shutdown_grace"].as_str().unwrap_or("30s"));
    let pre_stop = kg["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    let termination = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > pre_stop + grace,
        "{path}: {termination}s <= preStop {pre_stop}s + shutdown_grace {grace}s"
    );

    // Spread across zones, and a budget that keeps two replicas serving.
    let spread = spec["topologySpreadConstraints"]
        .as_sequence()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "topology.kubernetes.io/zone"
                && is_subset(&c["labelSelector"]["matchLabels"], labels)),
        "{path}: replicas spread across zones"
    );
    let pdb = of_kind("PodDisruptionBudget");
    assert!(
        is_subset(&pdb["spec"]["selector"]["matchLabels"], labels),
        "{path}: the PodDisruptionBudget selects the Deployment's pods"
    );
    let budget_ok = pdb["spec"]["maxUnavailable"].as_u64() == Some(1)
        || pdb["spec"]["minAvailable"]
            .as_u64()
            .is_some_and(|m| (2..3).contains(&m));
    assert!(budget_ok, "{path}: one replica down at a time");

    let svc = of_kind("Service");
    assert!(
        is_subset(&svc["spec"]["selector"], labels),
        "{path}: the Service selects the pods"
    );
    let admin_port = port_of(cfg["admin"]["listen"].as_str().expect("admin.listen"));
    let proxy_port = port_of(cfg["server"]["listen"].as_str().expect("server.listen"));
    let targets: BTreeSet<u64> = svc["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| p["targetPort"].as_u64().expect("targetPort is a number"))
        .collect();
    assert!(
        targets.contains(&u64::from(proxy_port))
            && targets.is_subset(&[u64::from(admin_port), u64::from(proxy_port)].into()),
        "{path}: the Service targets the listeners: {targets:?}"
    );
}

/// The `keygate-N` services of the compose file, by name.
fn compose_replicas(compose: &serde_yaml::Value) -> Vec<(String, &serde_yaml::Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().expect("service name");
            name.starts_with("keygate").then(|| (name.to_string(), v))
        })
        .collect()
}

/// A compose `volumes:` entry `SRC:DEST[:MODE]` whose DEST is `dest`.
fn bind_source(service: &serde_yaml::Value, dest: &str) -> Option<(String, Option<String>)> {
    strings(&service["volumes"]).into_iter().find_map(|v| {
        let mut parts = v.splitn(3, ':');
        let src = parts.next()?.to_string();
        (parts.next()? == dest).then(|| (src, parts.next().map(str::to_string)))
    })
}

/// The values of `directive` in nginx.conf, one per line it appears on.
fn nginx_directive(conf: &str, directive: &str) -> Vec<String> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.strip_prefix(directive)?.strip_prefix(' '))
        .map(|rest| rest.trim().trim_end_matches(';').trim().to_string())
        .collect()
}

#[test]
fn compose_replicas_are_consistent() {
    let path = "deploy/compose/compose.yaml";
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&read(path)).expect("compose yaml");
    compose.apply_merge().expect("merge keys");
    let services = &compose["services"];

    let replicas = compose_replicas(&compose);
    let names: Vec<&str> = replicas.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["keygate-1", "keygate-2", "keygate-3"], "{path}");

    let mut config_file = None;
    let mut database_url = None;
    let mut hostnames = BTreeSet::new();
    let mut admin_host_ports = BTreeSet::new();
    for (name, svc) in &replicas {
        let args = strings(&svc["command"]);
        assert_cli(&args);
        let config_path = flag_value(&args, &["-c", "--config"]).expect("-c");
        let (src, mode) = bind_source(svc, &config_path)
            .unwrap_or_else(|| panic!("{path}: {name} mounts no config at {config_path}"));
        assert_eq!(
            mode.as_deref(),
            Some("ro"),
            "{path}: {name} config read-only"
        );
        assert_eq!(
            config_file.get_or_insert_with(|| src.clone()),
            &src,
            "{path}: every replica reads one config"
        );
        let cfg: serde_yaml::Value =
            serde_yaml::from_str(&read(&format!("deploy/compose/{src}"))).expect("config yaml");
        let admin_port = port_of(cfg["admin"]["listen"].as_str().expect("admin.listen"));
        assert!(
            !cfg["admin"]["listen"]
                .as_str()
                .expect("listen")
                .starts_with("127."),
            "{path}: a published admin port needs a non-loopback listener"
        );

        // A distinct hostname names each replica (`replica:` is left to its
        // <hostname>-<pid> default, as one config cannot name three).
        assert!(cfg["store"]["postgres"].get("replica").is_none());
        let host = svc["hostname"].as_str().expect("hostname");
        assert_eq!(host, name, "{path}: hostname");
        hostnames.insert(host.to_string());

        // One database, reached on the private network without TLS.
        let url_env = cfg["store"]["postgres"]["url"]["env"]
            .as_str()
            .expect("store.postgres.url.env");
        let url = svc["environment"][url_env]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {name} sets no {url_env}"));
        assert!(
            url.contains("@postgres:5432/") && url.ends_with("?sslmode=disable"),
            "{path}: {url}"
        );
        assert_eq!(
            database_url.get_or_insert_with(|| url.to_string()),
            url,
            "{path}: one database"
        );
        assert_eq!(
            svc["depends_on"]["postgres"]["condition"], "service_healthy",
            "{path}: {name} starts once postgres answers"
        );

        // Readiness through /readyz on the admin listener, from inside.
        let test = strings(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            test.contains(&format!("http://127.0.0.1:{admin_port}/readyz")),
            "{path}: {name} healthcheck: {test}"
        );
        if test.contains("/busybox/") {
            assert_eq!(
                svc["build"]["target"], "debug",
                "{path}: busybox is in the debug image"
            );
            assert!(
                read("deploy/Dockerfile").contains("distroless/cc-debian12:debug-nonroot AS debug"),
                "the Dockerfile's debug target has busybox"
            );
        }

        // Only the admin port is published, and only on this host.
        for p in strings(&svc["ports"]) {
            let parts: Vec<&str> = p.split(':').collect();
            assert_eq!(
                parts.len(),
                3,
                "{path}: {name} publishes {p} with a host address"
            );
            assert_eq!(
                parts[0], "127.0.0.1",
                "{path}: {name} publishes {p} beyond this host"
            );
            assert_eq!(
                parts[2].parse::<u16>().ok(),
                Some(admin_port),
                "{path}: {p}"
            );
            assert!(
                admin_host_ports.insert(parts[1].to_string()),
                "{path}: {p} twice"
            );
        }

        // The master key: one compose secret, at the config's path.
        let secrets = strings(&svc["secrets"]);
        assert_eq!(secrets.len(), 1, "{path}: {name} secrets");
        let key_file = cfg["store"]["master_key"]["file"]
            .as_str()
            .expect("master_key.file");
        assert_eq!(
            key_file,
            format!("/run/secrets/{}", secrets[0]),
            "{path}: the master key mounted is the one the config reads"
        );
        assert!(
            compose["secrets"][secrets[0].as_str()]["file"].is_string(),
            "{path}: secret {} is a file shared by every replica",
            secrets[0]
        );

        // Written data stays on a volume: the root is read-only.
        assert_eq!(svc["read_only"], true, "{path}: {name} read-only root");
        let data = data_dir(&config_path);
        let (volume, _) = bind_source(svc, data.to_str().expect("utf-8"))
            .unwrap_or_else(|| panic!("{path}: {name} has no volume at {}", data.display()));
        assert!(
            compose["volumes"].get(volume.as_str()).is_some(),
            "{path}: {volume} is a named volume"
        );

        // Docker waits out the drain before SIGKILL.
        let grace = seconds(cfg["server"]["shutdown_grace"].as_str().unwrap_or("30s"));
        let stop = seconds(
            svc["stop_grace_period"]
                .as_str()
                .expect("stop_grace_period"),
        );
        assert!(
            stop > grace,
            "{path}: {name} stop_grace_period {stop}s <= {grace}s"
        );
    }
    assert_eq!(hostnames.len(), 3, "{path}: distinct replica names");

    let config_file = config_file.expect("config");
    let text = read(&format!("deploy/compose/{config_file}"));
    let url = database_url.expect("url");
    let interpolated = url
        .split("${")
        .enumerate()
        .map(|(i, part)| match (i, part.split_once('}')) {
            (0, _) => part.to_string(),
            (_, Some((_, rest))) => format!("dummy{rest}"),
            (_, None) => panic!("unclosed ${{ in {url}"),
        })
        .collect::<String>();
    assert_config_checks_with(&text, &interpolated);
    let cfg: serde_yaml::Value = serde_yaml::from_str(&text).expect("config yaml");
    let proxy_port = port_of(cfg["server"]["listen"].as_str().expect("server.listen"));

    // postgres: official image, pg_isready, data on a named volume.
    let pg = &services["postgres"];
    assert!(
        pg["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:")),
        "{path}"
    );
    assert!(
        strings(&pg["healthcheck"]["test"])
            .iter()
            .any(|w| w.contains("pg_isready")),
        "{path}: postgres healthcheck"
    );
    let (pgdata, _) = bind_source(pg, "/var/lib/postgresql/data").expect("postgres data volume");
    assert!(
        compose["volumes"].get(pgdata.as_str()).is_some(),
        "{path}: named volume"
    );
    // sslmode=disable is safe only where nobody else listens: postgres is on
    // internal networks only, which no other service than the replicas joins.
    for net in strings(&pg["networks"]) {
        assert_eq!(
            compose["networks"][net.as_str()]["internal"],
            true,
            "{path}: {net}"
        );
        for (name, svc) in services.as_mapping().expect("services") {
            let name = name.as_str().expect("name");
            if strings(&svc["networks"]).contains(&net) {
                assert!(
                    name == "postgres" || names.contains(&name),
                    "{path}: {name} is on the database network"
                );
            }
        }
    }
    assert!(
        strings(&pg["ports"]).is_empty(),
        "{path}: postgres is not published"
    );

    // nginx: exactly the replicas' proxy port, retries only where safe.
    let nginx = &services["nginx"];
    let (conf_src, _) = bind_source(nginx, "/etc/nginx/nginx.conf").expect("nginx.conf mount");
    let conf = read(&format!("deploy/compose/{conf_src}"));
    let upstream_names = nginx_directive(&conf, "upstream");
    assert_eq!(upstream_names.len(), 1, "nginx.conf: one upstream");
    let upstream = upstream_names[0].trim_end_matches('{').trim();
    let servers: BTreeSet<String> = nginx_directive(&conf, "server")
        .iter()
        .filter(|s| !s.starts_with('{'))
        .map(|s| s.split_whitespace().next().expect("address").to_string())
        .collect();
    let expected: BTreeSet<String> = names.iter().map(|n| format!("{n}:{proxy_port}")).collect();
    assert_eq!(servers, expected, "nginx.conf: upstream servers");
    for s in nginx_directive(&conf, "server")
        .iter()
        .filter(|s| !s.starts_with('{'))
    {
        assert!(
            s.contains("max_fails=") && s.contains("fail_timeout="),
            "nginx.conf: passive health on {s}"
        );
    }
    assert!(
        !nginx_directive(&conf, "keepalive").is_empty(),
        "nginx.conf: upstream keep-alive"
    );
    assert_eq!(
        nginx_directive(&conf, "proxy_http_version"),
        ["1.1"],
        "nginx.conf"
    );
    assert_eq!(
        nginx_directive(&conf, "proxy_pass"),
        [format!("http://{upstream}")],
        "nginx.conf: no URI part, so the target goes out as sent"
    );
    let next = nginx_directive(&conf, "proxy_next_upstream");
    assert_eq!(next.len(), 1, "nginx.conf: proxy_next_upstream");
    let next: BTreeSet<&str> = next[0].split_whitespace().collect();
    assert_eq!(
        next,
        ["error", "timeout", "http_503"].into(),
        "nginx.conf: never `non_idempotent`"
    );
    let set_headers = nginx_directive(&conf, "proxy_set_header");
    assert!(
        set_headers.iter().any(|h| h == "Connection \"\""),
        "nginx.conf: clears Connection for keep-alive"
    );
    for h in &set_headers {
        let name = h
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            ![
                "authorization",
                "x-api-key",
                "content-length",
                "transfer-encoding"
            ]
            .contains(&name.as_str()),
            "nginx.conf: {h} changes what the caller sent"
        );
    }
    assert_eq!(
        nginx_directive(&conf, "proxy_request_buffering"),
        ["off"],
        "nginx.conf"
    );
    let max_body = cfg["connectors"]
        .as_mapping()
        .expect("connectors")
        .values()
        .filter_map(|c| c["max_request_body"].as_str().map(bytes))
        .max()
        .unwrap_or(32 << 20);
    let client_max = nginx_directive(&conf, "client_max_body_size");
    assert_eq!(
        client_max.iter().map(|s| bytes(s)).collect::<Vec<_>>(),
        [max_body],
        "nginx.conf: client_max_body_size is the connectors' max_request_body"
    );
    let listens = nginx_directive(&conf, "listen");
    for p in strings(&nginx["ports"]) {
        let container = p.rsplit(':').next().expect("port");
        assert!(
            listens.iter().any(|l| l == container),
            "{path}: nginx publishes {p}, but listens on {listens:?}"
        );
    }
    assert!(!listens.is_empty(), "nginx.conf: listen");
}
