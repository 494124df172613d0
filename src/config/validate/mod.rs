//! Raw YAML mirror → typed [`Config`]. Every rule of SPEC §2 lives in this
//! folder, one section per file, and every violation is collected (with its
//! YAML position) before failing, so `keygate check` shows the operator all
//! problems in one go.
//!
//! This file runs the sections in order (server, admin, store, keys,
//! tokens, connectors, roles, clients), with the one check that spans
//! sections, listen-address clashes, right after connectors; when all
//! passed it adds the built-in `keygate-admin` role and client. The
//! sections live in:
//!
//! - `server.rs`: `server` (listeners, TLS, connection limits), `admin`,
//!   `store`, `keys`;
//! - `tokens.rs`: `tokens`, with `http_request.rs` for token endpoints;
//! - `connectors.rs`: `connectors` and the headers each one writes;
//! - `access.rs`: `roles` and `clients` with their declared keys;
//! - `fields.rs`: the rules for one field that every section shares.
//!
//! Errors come out in that order. The typed model these build is in
//! `model.rs`.

mod access;
mod connectors;
mod fields;
mod http_request;
mod server;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use fields::{is_http_token, parse_listen, valid_key_prefix};

use super::locate::{Seg, locate, pointer};
use super::model::{
    Admin, ApiDef, BUILTIN_ADMIN, Client, Config, Connector, Role, Section, Server,
};
use super::raw::RawConfig;
use super::{ConfigError, ConfigErrors};

/// Collects errors with their positions in `text` and their JSON
/// pointers. An object made through the admin API has no place in the
/// file, so its errors carry the pointer only.
struct Errors<'t> {
    text: &'t str,
    from_api: &'t BTreeMap<(Section, String), ApiDef>,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let api = match path {
            [Seg::Key(section), Seg::Key(name), ..] => Section::from_key(section)
                .is_some_and(|s| self.from_api.contains_key(&(s, (*name).to_string()))),
            _ => false,
        };
        let pos = if api { None } else { locate(self.text, path) };
        self.list.push(ConfigError {
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: message.into(),
            pointer: Some(pointer(path)),
        });
    }
}

/// Turns the raw mirror into a validated [`Config`], or every error found.
/// `from_api` names the objects of `raw` that the admin API made (laid
/// over the file by `overlay.rs`): one validator for both.
pub fn validate(
    raw: RawConfig,
    text: &str,
    path: &Path,
    from_api: &BTreeMap<(Section, String), ApiDef>,
) -> Result<Config, ConfigErrors> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut e = Errors {
        text,
        from_api,
        list: Vec::new(),
    };
    let server = server::server(&mut e, &raw.server, &base);
    let admin = server::admin(&mut e, &raw.admin, &base);
    let store = server::store(&mut e, &raw.store, &base);
    let keys = server::keys(&mut e, &raw.keys);
    let tokens = tokens::tokens(&mut e, &raw.tokens, &base);
    let connectors = connectors::connectors(&mut e, &raw, &tokens, &base);
    distinct_listeners(&mut e, &server, &admin, &connectors);
    let mut roles = access::roles(&mut e, &raw);
    let mut clients = access::clients(&mut e, &raw, keys.max_ttl);

    if !e.list.is_empty() {
        return Err(ConfigErrors(e.list));
    }
    let from_file = |section: Section, names: &mut dyn Iterator<Item = &String>| {
        names
            .filter(|n| !from_api.contains_key(&(section, (*n).clone())))
            .count()
    };
    let declared_roles = from_file(Section::Roles, &mut roles.keys());
    let declared_clients = from_file(Section::Clients, &mut clients.keys());
    roles.entry(BUILTIN_ADMIN.to_string()).or_insert_with(|| {
        Arc::new(Role {
            name: BUILTIN_ADMIN.to_string(),
            description: Some("built-in: may use the admin API".into()),
            admin: true,
            grants: Vec::new(),
        })
    });
    clients.entry(BUILTIN_ADMIN.to_string()).or_insert_with(|| {
        Arc::new(Client {
            name: BUILTIN_ADMIN.to_string(),
            description: Some("built-in: owner of the bootstrap admin key".into()),
            roles: vec![BUILTIN_ADMIN.to_string()],
            keys: Vec::new(),
        })
    });
    Ok(Config {
        path: path.to_path_buf(),
        server,
        admin,
        store,
        keys,
        tokens,
        connectors,
        roles,
        clients,
        declared_roles,
        declared_clients,
        from_api: from_api.clone(),
    })
}

/// No two listeners on one address (port 0 means "any free port": never a
/// clash); the second is reported, naming the first.
fn distinct_listeners(
    e: &mut Errors<'_>,
    server: &Server,
    admin: &Admin,
    connectors: &BTreeMap<String, Arc<Connector>>,
) {
    use Seg::Key;
    let mut addrs: Vec<(SocketAddr, Vec<Seg<'_>>)> = vec![
        (server.listen, vec![Key("server"), Key("listen")]),
        (admin.listen, vec![Key("admin"), Key("listen")]),
    ];
    for (name, c) in connectors {
        if let Some(l) = c.listen {
            addrs.push((
                l,
                vec![Key("connectors"), Key(name.as_str()), Key("listen")],
            ));
        }
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, (addr, p)) in addrs.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(*addr, i) {
            let other = &addrs[first].1;
            let other_name: Vec<&str> = other
                .iter()
                .filter_map(|s| match s {
                    Seg::Key(k) => Some(*k),
                    Seg::Index(_) => None,
                })
                .collect();
            e.at(
                p,
                format!(
                    "listen address {addr} is already used by {}",
                    other_name.join(".")
                ),
            );
        }
    }
}
