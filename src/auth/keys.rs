//! The API key lifecycle (SPEC §4): create, revoke, roll, usage and
//! retention. Every change is written to the store first (durable), then
//! applied to the in-memory index, so a key returned to a client survives a
//! crash right after, and a revocation answers 401 on the very next use.
//!
//! These functions block on the store; async callers run them in
//! `spawn_blocking`.
//!
//! The last-admin-key rule: a revoke or roll that would leave no live,
//! unexpired key able to use the admin API (YAML-declared keys count) is
//! refused with `409 last_admin_key` unless forced, because nothing else
//! could then repair it over the API. A key that was rolled over never
//! counts as remaining: it lives on only for the roll's grace, so counting
//! it would let "roll A, revoke its successor" end the last admin once the
//! grace runs out, with no 409 ever. A roll keeps an admin alive through
//! its successor (same client, roles and expiry), so rolling the last
//! admin key is allowed; a key is rolled once (roll its successor next),
//! so no successor's life is cut to a predecessor's grace.
//! `keygate admin-key --reset` is the way back in.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::declared::ConfigKeys;
use crate::auth::index::to_ms;
use crate::auth::{KeyIndex, KeyRecord, KeySource, effective_roles, grants, key};
use crate::config::BUILTIN_ADMIN;
use crate::config::Config;
use crate::config::units::format_duration;
use crate::secret::Secret;
use crate::store::{Store, StoreError, StoredKey, StoredUsage, Usage, WriteError, write_private};

const META_BOOTSTRAPPED: &str = "bootstrapped";
/// Set by `keygate admin-key --reset` to the id of the key it wrote; a
/// running gateway polls it to pick that key up without a restart.
const META_ADMIN_RESET: &str = "admin_key_reset";
pub const INITIAL_ADMIN_FILE: &str = "initial-admin.key";

/// What the key lifecycle works on: the API key index, the store, the key
/// write lock, and the published config with its declared keys. The
/// gateway's shared state provides it; the lifecycle never sees more.
pub trait KeyContext: Send + Sync {
    fn index(&self) -> &KeyIndex;
    fn store(&self) -> &dyn Store;
    /// The key write lock, recovered from poison: it guards `()`, no data,
    /// and every change re-reads the store and the index under it, so a
    /// panic while it was held must not turn every later revoke and roll
    /// into a 500 (or stop `admin-key --reset` reaching a running gateway).
    fn writes(&self) -> MutexGuard<'_, ()>;
    /// The published config and the keys it declares, as of now.
    fn view(&self) -> KeyView;
}

/// The published config and the keys it declares, loaded together.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub config: Arc<Config>,
    pub declared: Arc<ConfigKeys>,
}

/// The longest `expires_in`, `grace` or `keys.max_ttl` accepted. Defined
/// with the config (which bounds `max_ttl` by it) because config sits
/// below this module.
pub use crate::config::units::{MAX_KEY_DURATION, MAX_KEY_DURATION_TEXT};

/// Why a key change was refused or failed. The text of a refusal is the
/// admin API's message (`error.rs` picks the status and code); the
/// failures (store, randomness, key file) are logged and answered as
/// `internal`. No variant holds a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A duration from the admin API (`field` is `expires_in` or `grace`).
    #[error("{field}: {problem}")]
    BadDuration {
        field: &'static str,
        problem: DurationProblem,
    },
    #[error("unknown client `{0}`")]
    UnknownClient(String),
    #[error("name must be 1 to 100 characters without control characters")]
    BadName,
    #[error("roles, when given, must name at least one role")]
    NoRoles,
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    #[error("client `{client}` does not hold role `{role}`; a key never exceeds its client")]
    RoleNotHeld { client: String, role: String },
    #[error("expires_in must be more than zero")]
    ZeroExpiry,
    #[error("expires_in {text} is over keys.max_ttl ({})", format_duration(*max))]
    OverMaxTtl { text: String, max: Duration },
    /// Now plus the lifetime is past what the clock can hold.
    #[error("expires_in is too large")]
    ExpiryTooLarge,
    #[error("grace is too large")]
    GraceTooLarge,
    #[error("no key with id `{0}`")]
    NotFound(String),
    /// Unknown to the store by the time of the write, or revoked before:
    /// of concurrent revokes exactly one succeeds.
    #[error("key `{0}` is already revoked")]
    AlreadyRevoked(String),
    #[error("this key is declared in the config file; remove it there")]
    DeclaredNotRevocable,
    #[error("keys declared in the config file are rolled there")]
    DeclaredNotRollable,
    #[error("a revoked key cannot be rolled")]
    RevokedNotRollable,
    #[error("an expired key cannot be rolled")]
    ExpiredNotRollable,
    #[error("this key was already rolled (successor `{successor}`); roll the successor instead")]
    AlreadyRolled { successor: String },
    /// The store found the key revoked or expired at the write.
    #[error("the key was revoked or expired before it could be rolled")]
    EndedBeforeRoll,
    /// The change would end the last live admin key; refused unless forced.
    #[error("this would leave no live key that can use the admin API")]
    LastAdminKey,
    /// `keys.max_ttl` is over [`MAX_KEY_DURATION`] (validation prevents it).
    #[error("keys.max_ttl is over the longest allowed, {MAX_KEY_DURATION_TEXT}")]
    MaxTtlTooLong,
    #[error("no randomness for a key: {0}")]
    Randomness(#[from] getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The admin key file could not be written.
    #[error(transparent)]
    KeyFile(#[from] WriteError),
    /// `admin-key --reset` stored the key but could not mark the store.
    #[error(
        "the key is stored but a running gateway was not told ({0}); restart it to use the key"
    )]
    ResetNotAnnounced(#[source] StoreError),
}

impl KeyError {
    /// Another writer held the store and nothing was done: worth "try
    /// again". Not so for [`KeyError::ResetNotAnnounced`]: that key exists
    /// already, and trying again would mint another.
    pub fn is_busy(&self) -> bool {
        match self {
            KeyError::Store(e) => e.is_busy(),
            KeyError::ResetNotAnnounced(_) => false,
            KeyError::BadDuration { .. }
            | KeyError::UnknownClient(_)
            | KeyError::BadName
            | KeyError::NoRoles
            | KeyError::UnknownRole(_)
            | KeyError::RoleNotHeld { .. }
            | KeyError::ZeroExpiry
            | KeyError::OverMaxTtl { .. }
            | KeyError::ExpiryTooLarge
            | KeyError::GraceTooLarge
            | KeyError::NotFound(_)
            | KeyError::AlreadyRevoked(_)
            | KeyError::DeclaredNotRevocable
            | KeyError::DeclaredNotRollable
            | KeyError::RevokedNotRollable
            | KeyError::ExpiredNotRollable
            | KeyError::AlreadyRolled { .. }
            | KeyError::EndedBeforeRoll
            | KeyError::LastAdminKey
            | KeyError::MaxTtlTooLong
            | KeyError::Randomness(_)
            | KeyError::KeyFile(_) => false,
        }
    }
}

/// What is wrong with a key lifetime or roll grace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    /// Unreadable, or too long to be one (long input is not echoed back).
    #[error("not a duration (write it like 500ms, 30s, 12h or 90d)")]
    Unreadable,
    #[error("`{0}` is negative; write zero or more, like 30s, 12h or 90d")]
    Negative(String),
    #[error("`{0}` is too large; the longest allowed is {max}", max = MAX_KEY_DURATION_TEXT)]
    TooLarge(String),
    /// The duration parser's own words.
    #[error("{0}")]
    Invalid(String),
}

/// Parses a key lifetime or roll grace from the admin API, refusing what a
/// plain duration parse would take badly: a sign, an overflowing number,
/// anything over [`MAX_KEY_DURATION`]. `field` names the input in errors.
pub fn parse_key_duration(field: &'static str, text: &str) -> Result<Duration, KeyError> {
    let t = text.trim();
    let bad = |problem| KeyError::BadDuration { field, problem };
    // Long input is not echoed back: a duration is never that long.
    if t.len() > 32 {
        return Err(bad(DurationProblem::Unreadable));
    }
    if t.starts_with('-') {
        return Err(bad(DurationProblem::Negative(t.to_string())));
    }
    // 16 digits or more is over the bound in every unit (10^15 ms is
    // already 31 700 years) and may not even fit a u64.
    if t.bytes().take_while(u8::is_ascii_digit).count() > 15 {
        return Err(bad(DurationProblem::TooLarge(t.to_string())));
    }
    let d = crate::config::units::parse_duration(t)
        .map_err(|why| bad(DurationProblem::Invalid(why)))?;
    if d > MAX_KEY_DURATION {
        return Err(bad(DurationProblem::TooLarge(t.to_string())));
    }
    Ok(d)
}

/// What `POST /api/v1/keys` asks for, validated here.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub client: String,
    pub name: String,
    pub expires_in: Option<String>,
    pub roles: Option<Vec<String>>,
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn record_from(k: &StoredKey) -> Arc<KeyRecord> {
    Arc::new(KeyRecord {
        id: k.id.clone(),
        name: k.name.clone(),
        client: k.client.clone(),
        roles: k.roles.clone(),
        display_prefix: k.display_prefix.clone(),
        created_at: from_ms(k.created_ms),
        expires_ms: AtomicU64::new(k.expires_ms.unwrap_or(0)),
        revoked_at: Mutex::new(k.revoked_ms.map(from_ms)),
        source: KeySource::Api,
        digest: k.digest,
        rolled_from: k.rolled_from.clone(),
        last_used_ms: AtomicU64::new(0),
        uses: AtomicU64::new(0),
        persisted_uses: AtomicU64::new(0),
    })
}

/// A fresh public key id: `key_` + 20 base62 characters.
fn new_id() -> Result<String, KeyError> {
    let k = key::generate("key_")?;
    Ok(k.expose()[..24].to_string())
}

/// Loads stored keys and persisted usage into the index (at start).
pub fn load(shared: &dyn KeyContext) -> Result<usize, StoreError> {
    let stored = shared.store().load_keys()?;
    let n = stored.len();
    for k in &stored {
        shared.index().insert(record_from(k));
    }
    let by_id: HashMap<String, Arc<KeyRecord>> = shared
        .index()
        .all()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for u in shared.store().load_usage()? {
        if let Some(r) = by_id.get(&u.id) {
            r.last_used_ms.store(u.last_used_ms, Ordering::Relaxed);
            r.uses.store(u.uses, Ordering::Relaxed);
            r.persisted_uses.store(u.uses, Ordering::Relaxed);
        }
    }
    Ok(n)
}

fn check_name(name: &str) -> Result<(), KeyError> {
    // Characters, as the message says, not bytes: a name in any script
    // gets the same 100.
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(KeyError::BadName);
    }
    Ok(())
}

/// Creates a key: validated against the running config, stored durably,
/// then indexed. Returns the plaintext (shown once) and the record.
pub fn create(
    shared: &dyn KeyContext,
    req: &NewKey,
    now: SystemTime,
) -> Result<(Secret, Arc<KeyRecord>), KeyError> {
    let snap = shared.view();
    let cfg = &snap.config;
    let client = cfg
        .clients
        .get(&req.client)
        .ok_or_else(|| KeyError::UnknownClient(req.client.clone()))?;
    check_name(&req.name)?;
    if let Some(roles) = &req.roles {
        if roles.is_empty() {
            return Err(KeyError::NoRoles);
        }
        for r in roles {
            if !cfg.roles.contains_key(r) {
                return Err(KeyError::UnknownRole(r.clone()));
            }
            if !client.roles.contains(r) {
                return Err(KeyError::RoleNotHeld {
                    client: client.name.clone(),
                    role: r.clone(),
                });
            }
        }
    }
    let ttl = match &req.expires_in {
        Some(text) => {
            let d = parse_key_duration("expires_in", text)?;
            if d.is_zero() {
                return Err(KeyError::ZeroExpiry);
            }
            if let Some(max) = cfg.keys.max_ttl
                && d > max
            {
                return Err(KeyError::OverMaxTtl {
                    text: text.clone(),
                    max,
                });
            }
            Some(d)
        }
        None => cfg.keys.max_ttl,
    };
    let expires = ttl
        .map(|d| now.checked_add(d).ok_or(KeyError::ExpiryTooLarge))
        .transpose()?;
    issue(
        shared,
        &cfg.keys.prefix,
        &client.name,
        &req.name,
        req.roles.clone(),
        expires,
        None,
        now,
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one private constructor for create, roll and bootstrap; a parameter struct would only restate these names"
)]
fn issue(
    shared: &dyn KeyContext,
    prefix: &str,
    client: &str,
    name: &str,
    roles: Option<Vec<String>>,
    expires: Option<SystemTime>,
    rolled_from: Option<(&KeyRecord, SystemTime)>,
    now: SystemTime,
) -> Result<(Secret, Arc<KeyRecord>), KeyError> {
    let secret = key::generate(prefix)?;
    let stored = StoredKey {
        id: new_id()?,
        digest: key::digest(secret.expose()),
        name: name.to_string(),
        client: client.to_string(),
        roles,
        display_prefix: key::display_prefix(secret.expose()),
        created_ms: to_ms(now),
        expires_ms: expires.map(to_ms),
        revoked_ms: None,
        rolled_from: rolled_from.map(|(r, _)| r.id.clone()),
    };
    match rolled_from {
        None => shared.store().insert_key(&stored)?,
        Some((old, old_expiry)) => {
            if !shared.store().roll(&old.id, to_ms(old_expiry), &stored)? {
                return Err(KeyError::EndedBeforeRoll);
            }
        }
    }
    let record = record_from(&stored);
    shared.index().insert(Arc::clone(&record));
    if let Some((old, old_expiry)) = rolled_from {
        old.set_expires_at(Some(old_expiry));
    }
    Ok((secret, record))
}

fn find(shared: &dyn KeyContext, id: &str) -> Result<Arc<KeyRecord>, KeyError> {
    shared
        .index()
        .find_id(&shared.view().declared, id)
        .ok_or_else(|| KeyError::NotFound(id.to_string()))
}

/// Whether `r` is live now and its client's current roles include an
/// admin role.
fn is_live_admin(snap: &KeyView, r: &KeyRecord, now: SystemTime) -> bool {
    r.revoked_at().is_none()
        && !r.is_expired(now)
        && effective_roles(&snap.config.clients, r)
            .is_some_and(|roles| grants::is_admin(&snap.config.roles, roles))
}

/// The last-admin-key rule: after ending the keys in `ending`, does some
/// live key (API or YAML) still hold admin rights, not counting keys that
/// were rolled over (whatever became of their successor)? Those are
/// ending already, at the end of their grace. Call with
/// `shared.key_writes` held so the answer stays true until the write.
fn admin_remains(shared: &dyn KeyContext, ending: &[String], now: SystemTime) -> bool {
    remains(shared, &shared.view(), ending, now)
}

/// Whether some live key would still hold admin rights under `next` (a
/// config about to be published, with its declared keys). Call with
/// `shared.key_writes` held.
pub fn admin_remains_in(shared: &dyn KeyContext, next: &KeyView, now: SystemTime) -> bool {
    remains(shared, next, &[], now)
}

fn remains(shared: &dyn KeyContext, snap: &KeyView, ending: &[String], now: SystemTime) -> bool {
    let all = shared.index().all_with(&snap.declared);
    let rolled_over: HashSet<&str> = all
        .iter()
        .filter_map(|r| r.rolled_from.as_deref())
        .collect();
    all.iter().any(|r| {
        !ending.contains(&r.id)
            && !rolled_over.contains(r.id.as_str())
            && is_live_admin(snap, r, now)
    })
}

/// A successor of `id`, if the key was rolled before (live or not).
fn successor_of(shared: &dyn KeyContext, id: &str) -> Option<Arc<KeyRecord>> {
    shared
        .index()
        .all()
        .into_iter()
        .find(|r| r.rolled_from.as_deref() == Some(id))
}

/// Revokes now, together with every live key rolled from this one (a
/// successor continues the key it replaced); the very next use of any of
/// them answers 401. A key that is unknown or already revoked answers 404,
/// so of concurrent revokes exactly one gets the 204. Refused with
/// `last_admin_key` when it would end the last live admin key, unless
/// `force`. Returns the ids revoked, `id` first (for the audit log).
pub fn revoke(
    shared: &dyn KeyContext,
    id: &str,
    force: bool,
    now: SystemTime,
) -> Result<Vec<String>, KeyError> {
    let _writes = shared.writes();
    let record = find(shared, id)?;
    if record.source == KeySource::Config {
        return Err(KeyError::DeclaredNotRevocable);
    }
    if record.revoked_at().is_some() {
        return Err(KeyError::AlreadyRevoked(id.to_string()));
    }
    let mut ending = shared.store().live_successors(id)?;
    ending.push(id.to_string());
    if !force && !admin_remains(shared, &ending, now) {
        return Err(KeyError::LastAdminKey);
    }
    let revoked = shared
        .store()
        .revoke_chain(id, to_ms(now))?
        .ok_or_else(|| KeyError::AlreadyRevoked(id.to_string()))?;
    for r in shared
        .index()
        .all()
        .iter()
        .filter(|r| revoked.contains(&r.id))
    {
        crate::lock::lock(&r.revoked_at).get_or_insert(now);
    }
    Ok(revoked)
}

/// Issues a successor with the same client, name and roles. The old key
/// keeps working for `grace`, and the successor never outlives the
/// original's expiry. A key is rolled once: rolling it again would give a
/// successor that dies with the first grace (and a fresh "remaining"
/// admin key that is nothing of the sort). The successor holds the old
/// key's rights, so a roll ends an admin key only in name; the
/// last-admin-key rule is still checked on the state after the roll.
pub fn roll(
    shared: &dyn KeyContext,
    id: &str,
    grace: Duration,
    force: bool,
    now: SystemTime,
) -> Result<(Secret, Arc<KeyRecord>), KeyError> {
    let _writes = shared.writes();
    let old = find(shared, id)?;
    if old.source == KeySource::Config {
        return Err(KeyError::DeclaredNotRollable);
    }
    if old.revoked_at().is_some() {
        return Err(KeyError::RevokedNotRollable);
    }
    if old.is_expired(now) {
        return Err(KeyError::ExpiredNotRollable);
    }
    if let Some(next) = successor_of(shared, &old.id) {
        return Err(KeyError::AlreadyRolled {
            successor: next.id.clone(),
        });
    }
    // `grace` is at most MAX_KEY_DURATION, so this cannot overflow; were it
    // to, refusing beats ending the old key now.
    let grace_end = now.checked_add(grace).ok_or(KeyError::GraceTooLarge)?;
    let old_expiry = match old.expires_at() {
        Some(e) if e < grace_end => e,
        _ => grace_end,
    };
    let snap = shared.view();
    // After the roll the old key is a rolled-over predecessor, which never
    // counts; the successor has its client, roles and expiry, so it is a
    // live admin exactly when the old key is one now.
    let ending = [old.id.clone()];
    if !force && !is_live_admin(&snap, &old, now) && !admin_remains(shared, &ending, now) {
        return Err(KeyError::LastAdminKey);
    }
    issue(
        shared,
        &snap.config.keys.prefix,
        &old.client,
        &old.name,
        old.roles.clone(),
        old.expires_at(),
        Some((&old, old_expiry)),
        now,
    )
}

/// Writes usage that moved since the last flush, in one transaction.
pub fn flush_usage(shared: &dyn KeyContext) -> Result<usize, StoreError> {
    let moved: Vec<(Arc<KeyRecord>, u64)> = shared
        .index()
        .all()
        .into_iter()
        .filter_map(|r| {
            let uses = r.uses.load(Ordering::Relaxed);
            (uses != r.persisted_uses.load(Ordering::Relaxed)).then_some((r, uses))
        })
        .collect();
    if moved.is_empty() {
        return Ok(0);
    }
    // Deltas: the store adds them up, so replicas flushing one key (and a
    // flush racing a restart) never overwrite each other's counts.
    let batch: Vec<Usage<'_>> = moved
        .iter()
        .map(|(r, uses)| Usage {
            id: &r.id,
            last_used_ms: r.last_used_ms.load(Ordering::Relaxed),
            uses: uses.saturating_sub(r.persisted_uses.load(Ordering::Relaxed)),
        })
        .collect();
    shared.store().record_usage(&batch)?;
    for (r, uses) in &moved {
        r.persisted_uses.store(*uses, Ordering::Relaxed);
    }
    Ok(moved.len())
}

/// Deletes keys revoked or expired longer than `retention` ago.
pub fn purge(
    shared: &dyn KeyContext,
    retention: Duration,
    now: SystemTime,
) -> Result<usize, StoreError> {
    let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
    let n = shared.store().purge_ended_before(to_ms(cutoff))?;
    shared.index().retain(|r| {
        r.source == KeySource::Config
            || !(r.revoked_at().is_some_and(|t| t < cutoff)
                || r.expires_at().is_some_and(|t| t < cutoff))
    });
    Ok(n)
}

/// Whether some live key may use the admin API (rolled-over keys in their
/// grace do not count).
pub fn admin_key_exists(shared: &dyn KeyContext, now: SystemTime) -> bool {
    admin_remains(shared, &[], now)
}

/// Mints a key for the built-in `keygate-admin` client: the file
/// `<store_dir>/initial-admin.key` (mode 0600) first, then the store. A
/// crash between the two leaves a key nobody can use, never a stored key
/// nobody was given.
fn mint_admin_key(
    store: &dyn Store,
    prefix: &str,
    max_ttl: Option<Duration>,
    store_dir: &Path,
    name: &str,
    now: SystemTime,
) -> Result<(PathBuf, StoredKey), KeyError> {
    // keys.max_ttl bounds every key, the bootstrap and reset ones included:
    // an operator who sets it expects no key to live longer. Validation
    // bounds it by MAX_KEY_DURATION; were it larger anyway, refusing beats
    // a key that silently never expires.
    let expires_ms = max_ttl
        .map(|d| {
            now.checked_add(d)
                .filter(|_| d <= MAX_KEY_DURATION)
                .map(to_ms)
                .ok_or(KeyError::MaxTtlTooLong)
        })
        .transpose()?;
    let secret = key::generate(prefix)?;
    let path = store_dir.join(INITIAL_ADMIN_FILE);
    write_private(&path, &format!("{}\n", secret.expose()))?;
    let stored = StoredKey {
        id: new_id()?,
        digest: key::digest(secret.expose()),
        name: name.into(),
        client: BUILTIN_ADMIN.into(),
        roles: None,
        display_prefix: key::display_prefix(secret.expose()),
        created_ms: to_ms(now),
        expires_ms,
        revoked_ms: None,
        rolled_from: None,
    };
    store.insert_key(&stored)?;
    Ok((path, stored))
}

/// On the very first start with no admin-capable key anywhere, creates one
/// for the built-in `keygate-admin` client and writes it to
/// `initial-admin.key` (mode 0600) beside the store. Returns that path.
/// Runs once per store: later starts never mint another. With
/// `keys.max_ttl` set it expires like any key created then.
pub fn bootstrap(
    shared: &dyn KeyContext,
    store_dir: &Path,
    now: SystemTime,
) -> Result<Option<PathBuf>, KeyError> {
    if shared.store().get_meta(META_BOOTSTRAPPED)?.is_some() {
        return Ok(None);
    }
    if admin_key_exists(shared, now) {
        shared
            .store()
            .set_meta(META_BOOTSTRAPPED, "existing-admin-key")?;
        return Ok(None);
    }
    // Replicas starting together on one empty database: one claims the
    // bootstrap, the others see its claim and mint nothing. (Were the
    // claimant to die before minting, `keygate admin-key --reset` is the
    // way in, as for any lost admin key.)
    let claim = format!("claimed:{}", new_id()?);
    if shared.store().init_meta(META_BOOTSTRAPPED, &claim)? != claim {
        return Ok(None);
    }
    let (prefix, max_ttl) = {
        let snap = shared.view();
        (snap.config.keys.prefix.clone(), snap.config.keys.max_ttl)
    };
    let (path, stored) = mint_admin_key(
        shared.store(),
        &prefix,
        max_ttl,
        store_dir,
        "initial-admin",
        now,
    )?;
    shared.index().insert(record_from(&stored));
    shared.store().set_meta(META_BOOTSTRAPPED, &stored.id)?;
    Ok(Some(path))
}

/// `keygate admin-key --reset`: the way back in after the last admin key
/// was lost, revoked with `force`, or expired. Writes a fresh key for
/// `keygate-admin` the way the first start does, run on the host against
/// the store (SQLite WAL lets it write while the gateway runs), then marks
/// the store so a running gateway picks the key up (see
/// [`pick_up_admin_reset`]). Returns the file written and the key's id.
pub fn reset_admin_key(
    store: &dyn Store,
    prefix: &str,
    max_ttl: Option<Duration>,
    store_dir: &Path,
    now: SystemTime,
) -> Result<(PathBuf, String), KeyError> {
    let (path, stored) = mint_admin_key(store, prefix, max_ttl, store_dir, "reset-admin", now)?;
    store
        .set_meta(META_ADMIN_RESET, &stored.id)
        .map_err(KeyError::ResetNotAnnounced)?;
    Ok((path, stored.id))
}

/// Applies a key change another replica made (SPEC §8): `load` reads the
/// key's row as now stored (`None` when it is gone, purged), under the key
/// write lock, so no local revoke or roll lands between the read and its
/// use. A new key is added; a held one takes the stored revocation and a
/// shorter expiry (a roll). Nothing is ever undone here: no row makes a
/// revoked key live again or lengthens a key's life.
pub fn apply_stored(
    shared: &dyn KeyContext,
    id: &str,
    load: impl FnOnce() -> Result<Option<StoredKey>, StoreError>,
) -> Result<(), StoreError> {
    let _writes = shared.writes();
    let stored = load()?;
    let held = shared
        .index()
        .all()
        .into_iter()
        .find(|r| r.id == id && r.source == KeySource::Api);
    match (held, stored) {
        (None, Some(k)) => shared.index().insert(record_from(&k)),
        (Some(r), Some(k)) => {
            if let Some(at) = k.revoked_ms {
                crate::lock::lock(&r.revoked_at).get_or_insert(from_ms(at));
            }
            if let Some(e) = k.expires_ms {
                let held = r.expires_ms.load(Ordering::Relaxed);
                r.expires_ms
                    .store(if held == 0 { e } else { held.min(e) }, Ordering::Relaxed);
            }
        }
        (Some(r), None) => shared.index().remove(&r.digest),
        (None, None) => {}
    }
    Ok(())
}

/// Takes in usage other replicas flushed (SPEC §8: `last_used_at` a few
/// seconds behind everywhere): counts become the stored total plus what
/// this replica has not flushed yet.
pub fn merge_usage(shared: &dyn KeyContext, stored: &[StoredUsage]) {
    let by_id: HashMap<&str, &StoredUsage> = stored.iter().map(|u| (u.id.as_str(), u)).collect();
    for r in shared.index().all() {
        let Some(u) = by_id.get(r.id.as_str()) else {
            continue;
        };
        r.last_used_ms.fetch_max(u.last_used_ms, Ordering::Relaxed);
        let was = r.persisted_uses.swap(u.uses, Ordering::Relaxed);
        if u.uses >= was {
            r.uses.fetch_add(u.uses - was, Ordering::Relaxed);
        } else {
            r.uses.fetch_sub(
                (was - u.uses).min(r.uses.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
    }
}

/// Polled by the running gateway: when `keygate admin-key --reset` marked
/// the store since `seen`, adds the stored keys the index does not hold
/// (records already held keep their usage data). Returns the new mark.
pub fn pick_up_admin_reset(
    shared: &dyn KeyContext,
    seen: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let mark = shared.store().get_meta(META_ADMIN_RESET)?;
    if mark.is_none() || mark.as_deref() == seen {
        return Ok(mark);
    }
    let _writes = shared.writes();
    let held: std::collections::HashSet<[u8; 32]> =
        shared.index().all().iter().map(|r| r.digest).collect();
    let mut added = 0;
    for k in shared.store().load_keys()? {
        if !held.contains(&k.digest) {
            shared.index().insert(record_from(&k));
            added += 1;
        }
    }
    if added > 0 {
        tracing::warn!(
            key_id = mark.as_deref().unwrap_or_default(),
            added,
            "admin key written by `keygate admin-key --reset` is now in use"
        );
    }
    Ok(mark)
}

/// A key's metadata as the admin API shows it; never the key or its hash.
#[derive(Debug, serde::Serialize)]
pub struct KeyMetadata {
    pub id: String,
    pub name: String,
    pub client: String,
    /// The key's first characters, enough to recognise it.
    pub prefix: String,
    pub roles: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub uses: u64,
    pub source: KeySource,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

/// `r`'s metadata at `now`; roles it does not name are its client's.
pub fn metadata(shared: &dyn KeyContext, r: &KeyRecord, now: SystemTime) -> KeyMetadata {
    use crate::clock::rfc3339;
    let snap = shared.view();
    let roles = r
        .roles
        .clone()
        .or_else(|| snap.config.clients.get(&r.client).map(|c| c.roles.clone()))
        .unwrap_or_default();
    let state = if r.revoked_at().is_some() {
        "revoked"
    } else if r.is_expired(now) {
        "expired"
    } else {
        "active"
    };
    KeyMetadata {
        id: r.id.clone(),
        name: r.name.clone(),
        client: r.client.clone(),
        prefix: r.display_prefix.clone(),
        roles,
        created_at: rfc3339(r.created_at),
        expires_at: r.expires_at().map(rfc3339),
        last_used_at: r.last_used_at().map(rfc3339),
        revoked_at: r.revoked_at().map(rfc3339),
        uses: r.uses.load(Ordering::Relaxed),
        source: r.source,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_name_is_1_to_100_characters_in_any_script() {
        assert!(
            check_name(&"é".repeat(100)).is_ok(),
            "200 bytes, 100 characters"
        );
        assert!(check_name(&"é".repeat(101)).is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        for bad in ["", "  ", "a\nb", "a\u{85}b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    /// The lifecycle's whole world: an index, a SQLite store, the write
    /// lock and a config.
    struct Cx {
        index: KeyIndex,
        store: crate::store::sqlite::SqliteStore,
        key_writes: Mutex<()>,
        view: KeyView,
    }

    impl KeyContext for Cx {
        fn index(&self) -> &KeyIndex {
            &self.index
        }
        fn store(&self) -> &dyn Store {
            &self.store
        }
        fn writes(&self) -> MutexGuard<'_, ()> {
            crate::lock::lock(&self.key_writes)
        }
        fn view(&self) -> KeyView {
            self.view.clone()
        }
    }

    /// A context on a SQLite store in `dir`, with the config's built-in
    /// `keygate-admin` client and one plain client.
    fn shared_in(dir: &Path) -> Cx {
        let path = dir.join("keygate.yaml");
        let yaml = "roles: { r: {} }\nclients: { app: { roles: [r] } }\n";
        std::fs::write(&path, yaml).expect("write");
        let config = crate::config::from_text(yaml, &path).expect("config");
        let declared = crate::auth::declared::declared_keys(&config, &ConfigKeys::new());
        Cx {
            index: KeyIndex::new(),
            store: crate::store::sqlite::SqliteStore::open(&dir.join("k.db")).expect("store"),
            key_writes: Mutex::new(()),
            view: KeyView {
                config: Arc::new(config),
                declared: Arc::new(declared),
            },
        }
    }

    #[test]
    fn a_panic_holding_the_key_write_lock_does_not_end_key_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = Arc::new(shared_in(dir.path()));
        let now = SystemTime::now();
        assert!(
            bootstrap(&*shared, dir.path(), now)
                .expect("bootstrap")
                .is_some()
        );
        let req = NewKey {
            client: "app".into(),
            name: "n".into(),
            expires_in: None,
            roles: None,
        };
        let (_, a) = create(&*shared, &req, now).expect("create");
        let (_, b) = create(&*shared, &req, now).expect("create");
        let s2 = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _g = s2.key_writes.lock().expect("lock");
            panic!("poison the key write lock");
        })
        .join();
        assert!(shared.key_writes.is_poisoned());
        // Revoke, roll and the reset pick-up all still work.
        assert!(revoke(&*shared, &a.id, false, now).is_ok());
        assert!(roll(&*shared, &b.id, Duration::ZERO, false, now).is_ok());
        assert!(pick_up_admin_reset(&*shared, None).is_ok());
        reset_admin_key(shared.store(), "kg_", None, dir.path(), now).expect("reset");
        assert!(
            pick_up_admin_reset(&*shared, None)
                .expect("pick up")
                .is_some()
        );
    }

    #[test]
    fn a_rolled_over_admin_key_never_counts_as_remaining() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shared_in(dir.path());
        let now = SystemTime::now();
        bootstrap(&shared, dir.path(), now).expect("bootstrap");
        let a = shared.index().all().pop().expect("the bootstrap key");
        let (_, b) = roll(&shared, &a.id, Duration::from_secs(3600), false, now).expect("roll");
        assert!(
            matches!(
                revoke(&shared, &b.id, false, now),
                Err(KeyError::LastAdminKey)
            ),
            "only the rolled-over key would remain"
        );
        match roll(&shared, &a.id, Duration::from_secs(3600), false, now) {
            Err(KeyError::AlreadyRolled { successor }) => assert_eq!(successor, b.id),
            other => panic!("a second roll of one key: {other:?}"),
        }
        assert!(revoke(&shared, &b.id, true, now).is_ok());
        assert!(!admin_key_exists(&shared, now));
    }

    #[test]
    fn key_durations_are_bounded_and_never_negative() {
        let ok = |t: &str| parse_key_duration("grace", t).map_err(|e| e.to_string());
        assert_eq!(ok("0s"), Ok(Duration::ZERO));
        assert_eq!(ok("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(ok("36500d"), Ok(MAX_KEY_DURATION));
        for bad in [
            "-5s",
            "-1",
            "36501d",
            "9999999999999999s",
            "99999999999999999d",
            "99999999999999999999",
            "18446744073709551615ms",
            "soon",
            "",
        ] {
            match parse_key_duration("grace", bad) {
                Err(e @ KeyError::BadDuration { field: "grace", .. }) => {
                    assert!(e.to_string().starts_with("grace: "), "{e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let long = "1".repeat(40);
        match ok(&long) {
            Err(m) => assert!(!m.contains(&long), "not echoed: {m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            KeyError::MaxTtlTooLong.to_string(),
            format!("keys.max_ttl is over the longest allowed, {MAX_KEY_DURATION_TEXT}")
        );
        // The bound keeps every time form in range.
        let far = SystemTime::now() + MAX_KEY_DURATION;
        assert!(i64::try_from(to_ms(far)).is_ok());
    }
}
