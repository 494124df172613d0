//! A throwaway PostgreSQL server per test: `initdb` into a temp dir, the
//! server on a free 127.0.0.1 port (its Unix socket in the temp dir too),
//! stopped by its PID when dropped. Found through `pg_config --bindir`, else
//! the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql`). Without
//! them a test skips with a note, except under CI (`CI` set), where a
//! missing server is a failure: CI must not pass by testing nothing.
//!
//! As root, `initdb` refuses to run, so every server command runs as the
//! `postgres` user (`runuser`, util-linux) and the temp dir is handed to it.
//! `fsync=off`: the data is thrown away, and a commit costs no disk flush.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A user that logs in with a password over TCP (the others are trusted).
pub const PASSWORD_USER: &str = "kgpass";
pub const PASSWORD: &str = "pw-s3cret-never-printed";

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    pid: Option<u32>,
    as_postgres: bool,
    /// The host name URLs use (`localhost` for TLS, matching the certificate).
    host: &'static str,
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file() && dir.join("pg_ctl").is_file()
}

/// The server binaries' folder, if PostgreSQL is installed.
fn bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn chown_postgres(path: &Path) {
    let st = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success(), "chown {} to postgres failed", path.display());
}

impl PgServer {
    /// A plaintext server, or `None` (with a note) where PostgreSQL is not
    /// installed and this is not CI.
    pub fn start() -> Option<PgServer> {
        Self::launch(None)
    }

    /// A server with `ssl=on` presenting `cert_pem`/`key_pem` (for
    /// `localhost`); its URLs name `localhost`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<PgServer> {
        Self::launch(Some((cert_pem, key_pem)))
    }

    fn launch(tls: Option<(&str, &str)>) -> Option<PgServer> {
        let Some(bin) = bindir() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin); \
                     CI must run the PostgreSQL tests: install Debian's postgresql (.ci/run does)"
                );
            }
            eprintln!(
                "skipping: PostgreSQL server binaries not found (install Debian's postgresql)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            chown_postgres(dir.path());
        }
        let mut server = PgServer {
            dir,
            bin,
            port: free_port(),
            pid: None,
            as_postgres,
            host: if tls.is_some() {
                "localhost"
            } else {
                "127.0.0.1"
            },
        };
        let out = server
            .cmd("initdb")
            .arg("-D")
            .arg(server.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
            server.port,
            server.dir.path().display()
        );
        if let Some((cert, key)) = tls {
            let data = server.data();
            std::fs::write(data.join("server.crt"), cert).expect("cert");
            let key_path = data.join("server.key");
            std::fs::write(&key_path, key).expect("key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .expect("key mode");
            if as_postgres {
                chown_postgres(&data);
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let data = server.data();
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("postgresql.conf");
        // The password user first: pg_hba.conf takes the first matching line.
        let hba = data.join("pg_hba.conf");
        let trusted = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n{trusted}"),
        )
        .expect("pg_hba.conf");
        server.start_again();
        server.psql(
            "postgres",
            &format!("CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        );
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts (again) on the same port and data dir; returns once it
    /// accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.pid.is_none(), "already running");
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl start runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        let pidfile =
            std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        self.pid = Some(
            pidfile
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
                .expect("a PID on the first line of postmaster.pid"),
        );
        // pg_ctl -w waited for the socket; one query proves TCP works too.
        self.psql("postgres", "SELECT 1");
    }

    /// Stops the server (fast: sessions are ended, nothing is kept open).
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            Self::signal_and_wait(pid, "INT");
        }
    }

    /// Sends `sig` to `pid` (this server's postmaster) and waits, bounded,
    /// until it is gone.
    #[expect(
        clippy::disallowed_methods,
        reason = "synchronous harness polling another process; no tokio worker is blocked (tests call it from their own thread)"
    )]
    fn signal_and_wait(pid: u32, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie nobody reaped yet: either way not serving.
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if state.is_empty() || zombie {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as the trusted superuser.
    pub fn url_for(&self, db: &str) -> String {
        let mode = if self.host == "localhost" {
            "verify-full"
        } else {
            "disable"
        };
        format!(
            "postgres://postgres@{}:{}/{db}?sslmode={mode}",
            self.host, self.port
        )
    }

    /// URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// URL of `db` as [`PASSWORD_USER`], password included.
    pub fn password_url(&self, db: &str) -> String {
        format!(
            "postgres://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Creates database `name` and returns its URL: one per test.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_for(name)
    }

    /// Runs `sql` in `db` with psql (over the Unix socket, as the
    /// superuser) and returns what it printed, unaligned, tuples only.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // Immediate: the data is thrown away with the temp dir.
            Self::signal_and_wait(pid, "QUIT");
        }
    }
}
