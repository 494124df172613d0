//! The one reload loop. Every trigger (SIGHUP, the file watcher's checks,
//! `POST /api/v1/reload`) is a [`Request`] on one channel, and one task
//! handles them in order, so two loads never overlap and their effects
//! are never applied out of order.
//!
//! A load is: read → validate → build the new catalog aside (reusing
//! every unchanged part) and the first values of new or changed tokens →
//! bind any new dedicated ports → ONE publish → start the refreshers it
//! added and the new ports; stop the refreshers it replaced or removed and
//! release the ports of removed connectors. Any failure before the publish
//! changes nothing: the last good config keeps serving, and the error is
//! kept for status.
//!
//! A check (the watcher's event or poll tick) reloads when the config
//! file's content or a connector `ca_file`'s changed, and otherwise
//! re-reads `file:` token values, `file:` JWT secrets and the TLS pair.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::ports::Ports;
use super::watch::watch_dirs;
use crate::audit::{self, Record};
use crate::auth::keys::{self, KeyView};
use crate::clock::{now_rfc3339, to_ms};
use crate::config::{self, Config, ConfigError, Section};
use crate::config::{Limits, TlsFiles};
use crate::listen::tls::CertResolver;
use crate::objects::{self, ApiObjects, Applied, Change, ChangeError, Op, Plan};
use crate::snapshot::{self, file_digest};
use crate::state::{ReloadStatus, ReloadTrigger, Shared};
use crate::tokens::values;

/// The answer to a load: the generation published, or why nothing was.
pub type Outcome = Result<u64, Vec<ConfigError>>;

/// What the loop is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Load the config file now (and answer, if someone waits).
    Load {
        trigger: ReloadTrigger,
        reply: Option<oneshot::Sender<Outcome>>,
    },
    /// See whether anything watched changed.
    Check,
    /// Apply a catalog change from the admin API, answered once published.
    Change {
        change: Change,
        reply: oneshot::Sender<Result<Applied, ChangeError>>,
    },
    /// Export the published catalog (see `objects::Command::Export`).
    Export(oneshot::Sender<Result<String, config::export::ExportError>>),
    /// Publish catalog objects as stored (SPEC §8: changed by another
    /// replica, or by this one); read here, in the loop every local
    /// change goes through, so the row is never older than a local write.
    /// Answered once published or refused (logged); an error is a store
    /// read that failed (the follower retries the entry).
    Remote {
        objects: Vec<(Section, String)>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The state of the loop: what was last *tried* (good or refused), so a
/// check reloads on a content change, not on every touch, and retries a
/// refused load only when one of its files changes again.
pub struct Reloader {
    shared: Arc<Shared>,
    config_path: PathBuf,
    ports: Arc<tokio::sync::Mutex<Ports>>,
    /// The proxy listener's certificate, and the admin listener's.
    tls: Option<CertWatch>,
    admin_tls: Option<CertWatch>,
    /// `server:` connection limits as of start (restart-only).
    limits: Limits,
    /// SHA-256 of the config text last tried.
    config_digest: [u8; 32],
    /// The connector `ca_file`s of the config last tried and their digest.
    trust: TrustFiles,
    /// The folders the watcher watches, for the published config.
    dirs: watch::Sender<BTreeSet<PathBuf>>,
    /// The file's text as last published: catalog changes are laid over
    /// it, so a file being edited (or broken) meanwhile never blocks them
    /// and is never half-applied by them.
    yaml: String,
    /// The API-made objects as last published (and stored).
    api: ApiObjects,
}

impl Reloader {
    pub fn new(
        shared: Arc<Shared>,
        config_path: PathBuf,
        ports: Arc<tokio::sync::Mutex<Ports>>,
        certs: Certs,
        limits: Limits,
        yaml: String,
        api: ApiObjects,
    ) -> (Self, watch::Receiver<BTreeSet<PathBuf>>) {
        let config = shared.snapshot().config.clone();
        let (dirs, watched) = watch::channel(watch_dirs(&config, &config_path));
        let reloader = Reloader {
            trust: TrustFiles::of(&config),
            config_digest: digest(yaml.as_bytes()),
            yaml,
            api,
            shared,
            config_path,
            ports,
            tls: certs
                .proxy
                .map(|r| CertWatch::new(r, config.server.tls.as_ref())),
            admin_tls: certs
                .admin
                .map(|r| CertWatch::new(r, config.admin.tls.as_ref())),
            limits,
            dirs,
        };
        (reloader, watched)
    }

    /// Handles requests until every sender is gone.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        while let Some(request) = requests.recv().await {
            match request {
                Request::Load { trigger, reply } => {
                    let outcome = self.reload(trigger).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
                Request::Check => self.check().await,
                Request::Change { change, reply } => {
                    let _ = reply.send(self.change(change).await);
                }
                Request::Export(reply) => {
                    let config = Arc::clone(&self.shared.snapshot().config);
                    let _ = reply.send(config::export::export(&self.yaml, &config));
                }
                Request::Remote { objects, reply } => {
                    let _ = reply.send(self.remote(objects).await);
                }
            }
        }
    }

    /// Loads the config file and publishes it; records the outcome for
    /// status, the log and the metrics. On any error the running config
    /// stays.
    pub async fn reload(&mut self, trigger: ReloadTrigger) -> Outcome {
        let result = self.load().await;
        if trigger != ReloadTrigger::Start {
            self.shared.metrics().reload(result.is_ok());
        }
        let status = match &result {
            Ok(generation) => {
                tracing::info!(generation, trigger = trigger.as_str(), "config reloaded");
                ReloadStatus {
                    ok: true,
                    at: Some(now_rfc3339()),
                    trigger,
                    errors: Vec::new(),
                }
            }
            Err(errs) => {
                tracing::error!(trigger = trigger.as_str(), errors = %render(&self.config_path, errs), "config reload rejected; the last good config keeps serving");
                ReloadStatus {
                    ok: false,
                    at: Some(now_rfc3339()),
                    trigger,
                    errors: errs.clone(),
                }
            }
        };
        self.shared.set_reload_status(status);
        // A reload may drop a YAML admin key or an `admin: true` role. The
        // config file is the operator's to change, so it is not refused,
        // but a gateway nobody can administer must say so, and how to fix it.
        warn_if_no_admin_key(&self.shared, &self.config_path);
        result
    }

    async fn load(&mut self) -> Outcome {
        let text = std::fs::read_to_string(&self.config_path)
            .map_err(|e| vec![ConfigError::plain(format!("cannot read config file: {e}"))])?;
        self.config_digest = digest(text.as_bytes());
        let mut config = config::from_text_with(&text, &self.config_path, &self.api.overlay())
            .map_err(|e| e.0)?;
        self.trust = TrustFiles::of(&config);
        self.keep_running(&mut config);
        let generation = self.publish(Arc::new(config)).await?;
        self.yaml = text;
        Ok(generation)
    }

    /// After start, puts the restart-only settings back (see
    /// [`keep_restart_only`]) and says so if the file asked for a change.
    fn keep_running(&self, config: &mut Config) {
        let old = self.shared.snapshot();
        // At start the running config is the one being loaded.
        if old.generation > 0 && keep_restart_only(config, &old.config, &self.limits) {
            tracing::warn!(
                "server.listen, admin.listen, turning admin.tls on or off and server connection limit changes take effect at the next restart"
            );
        }
    }

    /// A catalog change: planned against the file as last published and
    /// the API objects, built and bound aside, written to the store (only
    /// if nobody changed the object since it was read), then published in
    /// the one swap. Nothing is written if anything before the swap fails.
    async fn change(&mut self, change: Change) -> Result<Applied, ChangeError> {
        let running = self.shared.snapshot();
        let (section, name) = (change.section, change.name.clone());
        let deleting = matches!(change.op, Op::Delete);
        let force = change.force;
        let (action, actor) = (change.action(), change.actor.clone());
        let plan = objects::plan(
            &self.api,
            &running.config,
            &self.yaml,
            &self.config_path,
            change,
            to_ms(SystemTime::now()),
        )?;
        let running_config = Arc::clone(&running.config);
        drop(running);
        let Plan {
            next,
            mut config,
            write,
            value,
            version_before,
            version_after,
        } = plan;
        self.keep_running(&mut config);
        if section == Section::Tokens {
            forget_stale_value(&self.shared, &running_config, &config, &name)?;
        }
        let shared = Arc::clone(&self.shared);
        let raced = name.clone();
        let rec = Record::new(&actor, action, &name).versions(version_before, version_after);
        let row = rec.to_stored();
        let commit = move |next: &KeyView| {
            // The last-admin-key rule holds for the catalog too: taking
            // `admin: true` from a role, or the role from a client, must
            // not lock every operator out, unless forced.
            let now = SystemTime::now();
            if !force
                && keys::admin_key_exists(shared.as_ref(), now)
                && !keys::admin_remains_in(shared.as_ref(), next, now)
            {
                return Err(ChangeError::LastAdminKey);
            }
            // The change and its audit record: one transaction.
            match shared
                .store_handle()
                .write_objects(std::slice::from_ref(&write), &row)
            {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(ChangeError::Raced {
                    section,
                    name: raced,
                }),
                Err(e) => Err(ChangeError::Store(e)),
            }
        };
        let config = Arc::new(config);
        let (generation, audit_id) = self
            .publish_with(Arc::clone(&config), commit)
            .await
            .map_err(|e| match e {
                Refused::Config(errs) => {
                    ChangeError::Invalid(objects::problems(section, &name, errs))
                }
                Refused::Commit(e) => e,
            })?;
        self.api = next;
        self.trust = TrustFiles::of(&config);
        tracing::info!(generation, object = %format!("{}/{name}", section.key()), "catalog change published");
        if section == Section::Tokens && deleting {
            // A token made later under this name must not inherit it.
            if let Err(e) = self.shared.store_handle().delete_token_value(&name) {
                tracing::warn!(token = %name, error = %e, "the deleted token's stored value could not be removed");
            }
        }
        audit::announce(&rec, audit_id);
        let store = self.shared.store_handle();
        if let Some(value) = value {
            // The token is published now, so its value can be: sealed,
            // stored and swapped in before the answer goes out.
            let shared = Arc::clone(&self.shared);
            let token = name.clone();
            let swapped = tokio::task::spawn_blocking(move || {
                values::set(
                    shared.runtime_values(),
                    &shared.snapshot().config.tokens,
                    &token,
                    value.expose(),
                )
            })
            .await
            .map_err(|_| ChangeError::ValueNotSet {
                token: name.clone(),
                why: "the value writer stopped".into(),
            })?
            .map_err(|e| ChangeError::ValueNotSet {
                token: name.clone(),
                why: e.to_string(),
            })?;
            audit::record(store.as_ref(), swapped.record(&actor, &name));
        }
        Ok(Applied {
            generation,
            version: version_after,
        })
    }

    /// Catalog objects as stored (changed by another replica, or a later
    /// state of this one's change): laid over the file as last published
    /// and published in one swap, like a local change but with nothing to
    /// write. A refusal here (this replica's file differs from the
    /// writer's, a port taken here) keeps the running catalog and is
    /// logged, but the objects are kept as stored, so the next reload or
    /// change publishes them once it can.
    async fn remote(&mut self, objects: Vec<(Section, String)>) -> Result<(), String> {
        let Some(replication) = self.shared.cluster().map(|c| Arc::clone(&c.replication)) else {
            return Ok(());
        };
        let wanted = objects.clone();
        let rows = tokio::task::spawn_blocking(move || {
            wanted
                .iter()
                .map(|(s, n)| replication.load_object(s.key(), n))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| format!("store task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let mut next = self.api.clone();
        for ((section, name), row) in objects.iter().zip(&rows) {
            if let Err(e) = next.apply_stored(*section, name, row) {
                tracing::error!(error = %e, "a stored catalog object is damaged; skipped");
            }
        }
        if next == self.api {
            return Ok(());
        }
        let refused = |errs: &[ConfigError], path: &Path| {
            tracing::error!(errors = %render(path, errs), "a catalog change made on another replica is refused here; the running catalog keeps serving, and the next reload retries it");
        };
        let mut config =
            match config::from_text_with(&self.yaml, &self.config_path, &next.overlay()) {
                Ok(c) => c,
                Err(e) => {
                    refused(&e.0, &self.config_path);
                    self.api = next;
                    return Ok(());
                }
            };
        self.keep_running(&mut config);
        let config = Arc::new(config);
        match self.publish(Arc::clone(&config)).await {
            Ok(generation) => {
                self.trust = TrustFiles::of(&config);
                tracing::info!(
                    generation,
                    objects = objects.len(),
                    "stored catalog change published"
                );
            }
            Err(errs) => refused(&errs, &self.config_path),
        }
        self.api = next;
        Ok(())
    }

    /// Builds `config`'s snapshot aside, binds its new ports, publishes it
    /// in one swap, then starts and stops what it added and removed.
    pub async fn publish(&mut self, config: Arc<Config>) -> Outcome {
        self.publish_with(config, |_| Ok::<(), Infallible>(()))
            .await
            .map(|(generation, ())| generation)
            .map_err(|e| match e {
                Refused::Config(errs) => errs,
                Refused::Commit(never) => match never {},
            })
    }

    /// [`Self::publish`], with `commit` run after everything that can
    /// refuse the config and before the swap: a catalog change is written
    /// to the store only once its snapshot is built and its ports bound,
    /// and published only once written.
    async fn publish_with<T, E>(
        &mut self,
        config: Arc<Config>,
        commit: impl FnOnce(&KeyView) -> Result<T, E>,
    ) -> Result<(u64, T), Refused<E>> {
        let old = self.shared.snapshot();
        let generation = old.generation + 1;
        let next = snapshot::build(
            Arc::clone(&config),
            &old,
            generation,
            self.shared.tokens(),
            self.shared.build_context(),
        )
        .await
        .map_err(Refused::Config)?;
        let mut ports = self.ports.lock().await;
        let fresh = match ports.bind(&config).await {
            Ok(fresh) => fresh,
            Err(errs) => {
                // Refused: the refreshers built for it never start.
                for r in &next.added {
                    r.stop();
                }
                return Err(Refused::Config(errs));
            }
        };
        let swapped = {
            // Under the key write lock: a revoke or roll decides the
            // last-admin-key rule on the config before this publish or
            // after it, never between, and so does `commit` (a catalog
            // change's check and store write: one short transaction). No
            // `.await` while it is held.
            let _writes = crate::auth::keys::KeyContext::writes(self.shared.as_ref());
            let view = KeyView {
                config: Arc::clone(&next.catalog.config),
                declared: Arc::clone(&next.catalog.declared_keys),
            };
            commit(&view).map(|kept| (kept, self.shared.published().publish(&next)))
        };
        let (kept, (published, replaced)) = match swapped {
            Ok(done) => done,
            Err(e) => {
                // Not written: nothing it built starts, its fresh ports
                // close as they drop.
                for r in &next.added {
                    r.stop();
                }
                return Err(Refused::Commit(e));
            }
        };
        // Background tasks start after, and stop after, the swap that adds
        // or removes them.
        for r in &next.added {
            r.start();
        }
        for (name, r) in &replaced.refreshers {
            if !published
                .refreshers
                .get(name)
                .is_some_and(|n| Arc::ptr_eq(n, r))
            {
                r.stop();
            }
        }
        ports.settle(&config, fresh);
        drop(ports);
        let attached = snapshot::attached(&config);
        for (name, why) in &published.values.errors {
            if attached.contains(name.as_str()) {
                tracing::warn!(token = %name, reason = %why, "token has no value; connectors using it answer 503");
            }
        }
        self.dirs
            .send_replace(watch_dirs(&config, &self.config_path));
        self.check_tls(&config);
        Ok((generation, kept))
    }

    /// The watcher's check: reloads the config if its content (or a
    /// connector `ca_file`'s) changed, else re-reads `file:` token values,
    /// `file:` JWT secrets and the TLS certificate.
    async fn check(&mut self) {
        let now = std::fs::read(&self.config_path).map(|b| digest(&b)).ok();
        if now.is_some_and(|n| n != self.config_digest) {
            let _ = self.reload(ReloadTrigger::Watch).await;
            return;
        }
        // The files of the config last *tried*, compared with themselves:
        // after a refused reload (a CA file that is not PEM, a port in
        // use) the running config may name other files, and comparing
        // those would differ on every poll and reload once a second.
        let reread = self.trust.reread();
        if reread != self.trust {
            self.trust = reread;
            tracing::info!("a connector ca_file changed; reloading");
            let _ = self.reload(ReloadTrigger::Watch).await;
            return;
        }
        let snap = self.shared.snapshot();
        let mut secrets = false;
        for v in snap.users.values() {
            secrets |= v.reread_secret(true);
        }
        if secrets {
            tracing::info!("user token secrets re-read from files");
        }
        if self.shared.tokens().sync_files(&snap.config.tokens) {
            let set = self.shared.tokens().load();
            for (name, why) in &set.errors {
                tracing::warn!(token = %name, reason = %why, "token has no value");
            }
            tracing::info!("token values re-read from files");
        }
        self.check_tls(&snap.config);
    }

    fn check_tls(&mut self, config: &Config) {
        if let (Some(watch), Some(files)) = (&mut self.tls, &config.server.tls)
            && let Some(result) = watch.check(files)
        {
            self.shared.update_tls_status(|st| match result {
                Ok(()) => {
                    st.loaded_at = Some(now_rfc3339());
                    st.error = None;
                    tracing::info!("TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload refused; keeping the current one");
                    st.error = Some(e.to_string());
                }
            });
        }
        if let (Some(watch), Some(files)) = (&mut self.admin_tls, &config.admin.tls) {
            match watch.check(files) {
                Some(Ok(())) => tracing::info!(listener = "admin", "TLS certificate reloaded"),
                Some(Err(e)) => tracing::error!(
                    listener = "admin",
                    error = %e,
                    "TLS certificate reload refused; keeping the current one"
                ),
                None => {}
            }
        }
    }
}

/// The certificates the listeners serve, as loaded at start.
pub struct Certs {
    pub proxy: Option<Arc<CertResolver>>,
    pub admin: Option<Arc<CertResolver>>,
}

/// A listener's certificate and the digest of the pair last tried.
struct CertWatch {
    resolver: Arc<CertResolver>,
    digest: Option<[u8; 32]>,
}

impl CertWatch {
    fn new(resolver: Arc<CertResolver>, files: Option<&TlsFiles>) -> Self {
        CertWatch {
            resolver,
            digest: files.and_then(tls_files_digest),
        }
    }

    /// Reloads the pair if its content changed since last tried: `None`
    /// when it did not. Tried once per content: a refused pair (a renewal
    /// half written, or a key that is not the certificate's) is reported,
    /// then retried when either file changes again.
    fn check(&mut self, files: &TlsFiles) -> Option<Result<(), crate::listen::tls::CertError>> {
        let now = tls_files_digest(files);
        if now.is_none() || now == self.digest {
            return None;
        }
        self.digest = now;
        Some(self.resolver.reload(files))
    }
}

/// A run-time value stored under `name` that the token as `next` defines
/// it must not inherit, forgotten before the snapshot is built (the build
/// restores stored values): a token created under the name of one long
/// gone, or one that stops taking a run-time value (its type or source
/// changed), would otherwise come up with an old credential. A deleted
/// token's value is forgotten after the publish instead, in `change`, so
/// a delete that is refused keeps it.
fn forget_stale_value(
    shared: &Shared,
    running: &Config,
    next: &Config,
    name: &str,
) -> Result<(), ChangeError> {
    let Some(token) = next.tokens.get(name) else {
        return Ok(());
    };
    let took = running.tokens.get(name).map(|t| t.takes_admin_value());
    if took.is_none() || (took == Some(true) && !token.takes_admin_value()) {
        shared.store_handle().delete_token_value(name)?;
    }
    Ok(())
}

/// Why a publish did not happen: the config was refused (built or bound),
/// or its commit step failed.
pub enum Refused<E> {
    Config(Vec<ConfigError>),
    Commit(E),
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn tls_files_digest(files: &TlsFiles) -> Option<[u8; 32]> {
    let cert = std::fs::read(&files.cert).ok()?;
    let key = std::fs::read(&files.key).ok()?;
    let mut h = Sha256::new();
    h.update(&cert);
    h.update(&key);
    Some(h.finalize().into())
}

/// The connector `ca_file`s of one config and one digest over their paths
/// and contents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TrustFiles {
    files: Vec<PathBuf>,
    digest: [u8; 32],
}

impl TrustFiles {
    fn of(config: &Config) -> Self {
        let mut files: Vec<PathBuf> = config
            .connectors
            .values()
            .filter_map(|c| c.ca_file.clone())
            .collect();
        files.sort();
        files.dedup();
        let digest = trust_digest(&files);
        TrustFiles { files, digest }
    }

    /// The same files as they are now.
    fn reread(&self) -> Self {
        TrustFiles {
            files: self.files.clone(),
            digest: trust_digest(&self.files),
        }
    }
}

fn trust_digest(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        match file_digest(f) {
            Some(d) => h.update(d),
            None => h.update([0xff]),
        }
    }
    h.finalize().into()
}

/// Logs, loudly, when no live key can use the admin API (after a start
/// or a reload), naming the command that lets the operator back in.
pub fn warn_if_no_admin_key(shared: &Shared, config_path: &Path) {
    if !keys::admin_key_exists(shared, SystemTime::now()) {
        tracing::warn!(
            recovery = %format!("keygate admin-key --reset -c {}", config_path.display()),
            "no live admin key remains: the admin API accepts no key; run `keygate admin-key --reset -c <config>` on this host to mint one"
        );
    }
}

/// Puts the values that only a restart applies back to the running ones,
/// so the published config (what the rest of keygate reads) states what
/// is in force: the sockets actually bound, never addresses only the next
/// start will use, and the connection `limits` every listener was started
/// with (dedicated ports bound later take them too). Returns whether the
/// file asked for a change.
fn keep_restart_only(config: &mut Config, running: &Config, limits: &Limits) -> bool {
    let changed = config.server.listen != running.server.listen
        || config.admin.listen != running.admin.listen
        || config.admin.tls.is_some() != running.admin.tls.is_some()
        || config.server.limits != *limits;
    config.server.listen = running.server.listen;
    config.admin.listen = running.admin.listen;
    // The admin listener speaks TLS or not from its start; a renewed pair
    // at new paths is taken, turning TLS on or off is not.
    if config.admin.tls.is_some() != running.admin.tls.is_some() {
        config.admin.tls = running.admin.tls.clone();
    }
    config.server.limits = limits.clone();
    changed
}

pub fn render(path: &Path, errs: &[ConfigError]) -> String {
    config::ConfigErrors(errs.to_vec()).render(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_publishes_the_running_listen_and_limits() {
        let path = Path::new("/tmp/keygate.yaml");
        let running = config::from_text(
            "server: { listen: 127.0.0.1:8080, max_connections: 20 }\n",
            path,
        )
        .expect("running");
        let mut next = config::from_text(
            "server: { listen: 127.0.0.1:9090, max_connections: 5, idle_timeout: 5s }\n",
            path,
        )
        .expect("next");
        let started = running.server.limits.clone();
        assert!(keep_restart_only(&mut next, &running, &started));
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(
            next.server.limits, started,
            "limits not applied must not be published"
        );
        // Nothing asked for: nothing to warn about.
        let mut same = config::from_text(
            "server: { listen: 127.0.0.1:8080, max_connections: 20 }\n",
            path,
        )
        .expect("same");
        assert!(!keep_restart_only(&mut same, &running, &started));
    }
}
