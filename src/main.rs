//! The `keygate` command: `run`, `check`, `keygen`, `admin-key --reset`
//! (SPEC §1) and the admin API clients (`keys`, `tokens`, `connectors`,
//! `roles`, `clients`, `audit`, `export`; see `cli.rs`). This file holds
//! the command tree and says which client call each command is.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

mod cli;

/// mimalloc: the profile of the proxy path showed glibc malloc/free at ~8 %
/// of CPU (README "Performance"); mimalloc's thread-local free lists cut it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use http::{Method, StatusCode};
use keygate::app::App;
use keygate::auth::key;
use keygate::config;

const DEFAULT_CONFIG: &str = "config/keygate.yaml";

#[derive(Parser)]
#[command(name = "keygate", version, about = "Outbound-request auth gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Format of the diagnostic log on stderr (the access log on stdout
        /// is always JSON).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Validate a config file like `nginx -t`.
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print a fresh API key and its SHA-256 for declaring it in YAML.
    Keygen {
        #[arg(long, default_value = "kg_")]
        prefix: String,
    },
    /// Recover admin access: write a fresh admin key to initial-admin.key
    /// beside the store (run on the gateway's host; the gateway may be running).
    AdminKey {
        /// Mint a new key for the built-in keygate-admin client.
        #[arg(long, required = true)]
        reset: bool,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Define tokens, inspect them, set their values (admin API).
    ///
    /// Tokens are upstream credentials. The admin key comes from
    /// KEYGATE_ADMIN_KEY; a value only from stdin or a file, never argv.
    Tokens {
        #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Define data connectors and attach tokens to them (admin API).
    ///
    /// A connector is an upstream and the tokens injected into requests to
    /// it. The admin key comes from KEYGATE_ADMIN_KEY.
    Connectors {
        #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Define roles: what a client may call (admin API).
    ///
    /// A role grants connectors, narrowed to methods and paths, and may
    /// open the admin API. The admin key comes from KEYGATE_ADMIN_KEY.
    Roles {
        #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: RolesCommand,
    },
    /// Define clients, the callers that hold roles and keys (admin API).
    ///
    /// The admin key comes from KEYGATE_ADMIN_KEY.
    Clients {
        #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Manage API keys through the admin API (key from KEYGATE_ADMIN_KEY).
    Keys {
        #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Show the audit log: who changed what, oldest first (admin API).
    ///
    /// Values appear as fingerprints, never in plaintext. The admin key
    /// comes from KEYGATE_ADMIN_KEY.
    Audit {
        #[arg(long, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only records at or after this RFC 3339 time (2025-01-01T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// At most N records (default: all).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Print the effective catalog as YAML (admin API).
    ///
    /// The config file plus every object made through the admin API, as a
    /// file `keygate check` accepts, to move API objects into Git. Secret
    /// values appear as references, never in plaintext.
    Export {
        #[arg(long, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
    },
}

const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";

#[derive(Subcommand)]
enum TokensCommand {
    /// Every token's state, version and fingerprint (never values).
    List,
    /// One token: its definition, where its value comes from, its state.
    Show { name: String },
    /// Define a token; its value comes from stdin (--value-stdin), from a
    /// definition file (-f), or is read by the gateway (--value-env,
    /// --value-file), never from the command line.
    Create {
        name: String,
        #[command(flatten)]
        def: cli::TokenFlags,
    },
    /// Change a token made through the API (a merge patch: what you give
    /// changes, the rest stays).
    Update {
        name: String,
        #[command(flatten)]
        def: cli::TokenFlags,
        /// Only if the token is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Delete a token made through the API (refused while a connector uses it).
    Delete {
        name: String,
        /// Only if the token is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Set a run-time value, read from stdin (never from the command line).
    Set { name: String },
    /// Refresh an http_request token now.
    Refresh { name: String },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Every connector: upstream, tokens, owner.
    List,
    /// One connector (static header names, never their values).
    Show { name: String },
    /// Define a connector.
    Create {
        name: String,
        #[command(flatten)]
        def: cli::ConnectorFlags,
    },
    /// Change a connector made through the API (a merge patch).
    Update {
        name: String,
        #[command(flatten)]
        def: cli::ConnectorFlags,
        /// Only if the connector is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Add tokens to a connector (refused if it changed meanwhile).
    Attach {
        name: String,
        #[arg(required = true)]
        tokens: Vec<String>,
    },
    /// Take tokens off a connector (refused if it changed meanwhile).
    Detach {
        name: String,
        #[arg(required = true)]
        tokens: Vec<String>,
    },
    /// Delete a connector made through the API (refused while a role grants it).
    Delete {
        name: String,
        /// Only if the connector is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
}

#[derive(Subcommand)]
enum RolesCommand {
    /// Every role and what it allows.
    List,
    Show {
        name: String,
    },
    /// Define a role.
    Create {
        name: String,
        #[command(flatten)]
        def: cli::RoleFlags,
    },
    /// Change a role made through the API (a merge patch).
    Update {
        name: String,
        #[command(flatten)]
        def: cli::RoleFlags,
        /// Go ahead even if it ends the last live admin key (the admin
        /// API then stays locked until `keygate admin-key --reset`).
        #[arg(long)]
        force: bool,
        /// Only if the role is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Delete a role made through the API (refused while a client holds it).
    Delete {
        name: String,
        /// Go ahead even if it ends the last live admin key (the admin
        /// API then stays locked until `keygate admin-key --reset`).
        #[arg(long)]
        force: bool,
        /// Only if the role is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Every client and its roles.
    List,
    Show {
        name: String,
    },
    /// Define a client; give it keys with `keygate keys create --client NAME`.
    Create {
        name: String,
        #[command(flatten)]
        def: cli::ClientFlags,
    },
    /// Change a client made through the API (a merge patch).
    Update {
        name: String,
        #[command(flatten)]
        def: cli::ClientFlags,
        /// Go ahead even if it ends the last live admin key (the admin
        /// API then stays locked until `keygate admin-key --reset`).
        #[arg(long)]
        force: bool,
        /// Only if the client is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
    /// Delete a client made through the API.
    Delete {
        name: String,
        /// Revoke the client's live API keys with it (asked for when it has any).
        #[arg(long)]
        confirm: bool,
        /// Go ahead even if it ends the last live admin key (the admin
        /// API then stays locked until `keygate admin-key --reset`).
        #[arg(long)]
        force: bool,
        /// Only if the client is still at this version (from `show`).
        #[arg(long, value_name = "VERSION")]
        if_match: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once and cannot be shown again.
    Create {
        #[arg(long)]
        client: String,
        #[arg(long)]
        name: String,
        /// Lifetime like 90d or 12h (bounded by keys.max_ttl).
        #[arg(long)]
        expires_in: Option<String>,
        /// Limit the key to these of its client's roles (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List every key's metadata (never the keys).
    List,
    /// Revoke a key now (and every key rolled from it).
    Revoke {
        id: String,
        /// Revoke even the last live admin key (locks the admin API until
        /// `keygate admin-key --reset`).
        #[arg(long)]
        force: bool,
    },
    /// Issue a successor; the old key keeps working for the grace period.
    Roll {
        id: String,
        #[arg(long, default_value = "24h")]
        grace: String,
    },
}

/// Colour in the text log only for a person at a terminal: escape codes in
/// a log file, a pipe or journald are noise. `NO_COLOR` (any non-empty
/// value, https://no-color.org) turns it off even there.
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn init_logging(format: LogFormat) {
    let env = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let is_access = |m: &tracing::Metadata<'_>| m.target() == "keygate::access";
    let is_audit = |m: &tracing::Metadata<'_>| m.target() == keygate::audit::TARGET;
    // The audit log's lines: always JSON on stderr, and not subject to
    // RUST_LOG, so turning diagnostics down never drops a change record.
    let audit = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(filter::filter_fn(is_audit));
    let access = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stdout)
        .with_filter(filter::filter_fn(is_access))
        .with_filter(env());
    let diag = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_filter(filter::filter_fn(move |m| !is_access(m) && !is_audit(m)))
            .with_filter(env())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour_stderr())
            .with_writer(std::io::stderr)
            .with_filter(filter::filter_fn(move |m| !is_access(m) && !is_audit(m)))
            .with_filter(env())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(access)
        .with(audit)
        .with(diag)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => match cli::print_line(&format!("{}: {}", config.display(), c.summary())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            },
            Err(errs) => {
                eprintln!("{}", errs.render(&config));
                ExitCode::FAILURE
            }
        },
        Command::Keygen { prefix } => {
            if !config::validate::valid_key_prefix(&prefix) {
                eprintln!("keygate: --prefix must be 1 to 16 letters, digits, `_` or `-`");
                return ExitCode::FAILURE;
            }
            match key::generate(&prefix) {
                Ok(k) => {
                    let text = format!(
                        "{}\nsha256: {}",
                        k.expose(),
                        hex::encode(key::digest(k.expose()))
                    );
                    match cli::print_line(&text) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(code) => code,
                    }
                }
                Err(e) => {
                    eprintln!("keygate: no randomness from the OS: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::AdminKey { reset, config } => {
            if reset {
                admin_key_reset(&config)
            } else {
                eprintln!("keygate: admin-key needs --reset");
                ExitCode::FAILURE
            }
        }
        Command::Keys {
            admin_url,
            json,
            command,
        } => cli_runtime(keys_command(&admin_url, json, command)),
        Command::Tokens {
            admin_url,
            json,
            command,
        } => cli_runtime(tokens_command(&admin_url, json, command)),
        Command::Connectors {
            admin_url,
            json,
            command,
        } => cli_runtime(connectors_command(&admin_url, json, command)),
        Command::Roles {
            admin_url,
            json,
            command,
        } => cli_runtime(roles_command(&admin_url, json, command)),
        Command::Clients {
            admin_url,
            json,
            command,
        } => cli_runtime(clients_command(&admin_url, json, command)),
        Command::Audit {
            admin_url,
            json,
            since,
            limit,
        } => cli_runtime(async move {
            let client = cli::AdminClient::from_env(&admin_url)?;
            let limit = limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            cli::audit(&client, since.as_deref(), limit, json).await
        }),
        Command::Export { admin_url } => {
            cli_runtime(async move { cli::export(&cli::AdminClient::from_env(&admin_url)?).await })
        }
        Command::Run { config, log_format } => {
            init_logging(log_format);
            run(config)
        }
    }
}

/// Runs a CLI client future on a small runtime.
fn cli_runtime(fut: impl std::future::Future<Output = Result<ExitCode, String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keygate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn tokens_command(
    admin_url: &str,
    json: bool,
    command: TokensCommand,
) -> Result<ExitCode, String> {
    use cli::{Mode, Section::Tokens};
    let client = cli::AdminClient::from_env(admin_url)?;
    let (status, v) = match command {
        TokensCommand::List => client.list_all("/api/v1/tokens", "tokens").await?,
        TokensCommand::Show { name } => return cli::show(&client, Tokens, &name, json).await,
        TokensCommand::Create { name, def } => {
            let def = def.definition(&name, Mode::Create)?;
            return cli::create(&client, Tokens, &name, def, json).await;
        }
        TokensCommand::Update {
            name,
            def,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let patch = def.definition(&name, Mode::Update)?;
            return cli::update(&client, Tokens, &name, patch, "", tag.as_deref(), json).await;
        }
        TokensCommand::Delete { name, if_match } => {
            let tag = cli::if_match(if_match.as_deref())?;
            return cli::delete(&client, Tokens, &name, "", tag.as_deref()).await;
        }
        TokensCommand::Set { name } => {
            let value = cli::read_value_from_stdin()?;
            let body = serde_json::json!({ "value": value });
            client
                .call(
                    Method::PUT,
                    &format!("{}/value", Tokens.path(&name)),
                    Some(body),
                )
                .await?
        }
        TokensCommand::Refresh { name } => {
            client
                .call(
                    Method::POST,
                    &format!("{}/refresh", Tokens.path(&name)),
                    None,
                )
                .await?
        }
    };
    Ok(cli::finish(status, StatusCode::OK, &v, json, |v| {
        let items = match v["tokens"].as_array() {
            Some(list) => list.clone(),
            None => vec![v.clone()],
        };
        cli::print_line(&cli::table(&items, cli::TOKEN_COLUMNS))
    }))
}

async fn connectors_command(
    admin_url: &str,
    json: bool,
    command: ConnectorsCommand,
) -> Result<ExitCode, String> {
    use cli::{Mode, Section::Connectors};
    let client = cli::AdminClient::from_env(admin_url)?;
    match command {
        ConnectorsCommand::List => cli::list(&client, Connectors, json).await,
        ConnectorsCommand::Show { name } => cli::show(&client, Connectors, &name, json).await,
        ConnectorsCommand::Create { name, def } => {
            let def = def.definition(&name, Mode::Create)?;
            cli::create(&client, Connectors, &name, def, json).await
        }
        ConnectorsCommand::Update {
            name,
            def,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let patch = def.definition(&name, Mode::Update)?;
            cli::update(&client, Connectors, &name, patch, "", tag.as_deref(), json).await
        }
        ConnectorsCommand::Attach { name, tokens } => {
            cli::attach(&client, &name, &tokens, true, json).await
        }
        ConnectorsCommand::Detach { name, tokens } => {
            cli::attach(&client, &name, &tokens, false, json).await
        }
        ConnectorsCommand::Delete { name, if_match } => {
            let tag = cli::if_match(if_match.as_deref())?;
            cli::delete(&client, Connectors, &name, "", tag.as_deref()).await
        }
    }
}

async fn roles_command(
    admin_url: &str,
    json: bool,
    command: RolesCommand,
) -> Result<ExitCode, String> {
    use cli::Section::Roles;
    let client = cli::AdminClient::from_env(admin_url)?;
    match command {
        RolesCommand::List => cli::list(&client, Roles, json).await,
        RolesCommand::Show { name } => cli::show(&client, Roles, &name, json).await,
        RolesCommand::Create { name, def } => {
            let def = def.definition(&name)?;
            cli::create(&client, Roles, &name, def, json).await
        }
        RolesCommand::Update {
            name,
            def,
            force,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let patch = def.definition(&name)?;
            cli::update(
                &client,
                Roles,
                &name,
                patch,
                &cli::query(&[("force", force)]),
                tag.as_deref(),
                json,
            )
            .await
        }
        RolesCommand::Delete {
            name,
            force,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let query = cli::query(&[("force", force)]);
            cli::delete(&client, Roles, &name, &query, tag.as_deref()).await
        }
    }
}

async fn clients_command(
    admin_url: &str,
    json: bool,
    command: ClientsCommand,
) -> Result<ExitCode, String> {
    use cli::Section::Clients;
    let client = cli::AdminClient::from_env(admin_url)?;
    match command {
        ClientsCommand::List => cli::list(&client, Clients, json).await,
        ClientsCommand::Show { name } => cli::show(&client, Clients, &name, json).await,
        ClientsCommand::Create { name, def } => {
            let def = def.definition(&name)?;
            cli::create(&client, Clients, &name, def, json).await
        }
        ClientsCommand::Update {
            name,
            def,
            force,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let patch = def.definition(&name)?;
            cli::update(
                &client,
                Clients,
                &name,
                patch,
                &cli::query(&[("force", force)]),
                tag.as_deref(),
                json,
            )
            .await
        }
        ClientsCommand::Delete {
            name,
            confirm,
            force,
            if_match,
        } => {
            let tag = cli::if_match(if_match.as_deref())?;
            let query = cli::query(&[("confirm", confirm), ("force", force)]);
            cli::delete(&client, Clients, &name, &query, tag.as_deref()).await
        }
    }
}

async fn keys_command(
    admin_url: &str,
    json: bool,
    command: KeysCommand,
) -> Result<ExitCode, String> {
    let client = cli::AdminClient::from_env(admin_url)?;
    Ok(match command {
        KeysCommand::Create {
            client: owner,
            name,
            expires_in,
            roles,
        } => {
            let mut body = serde_json::json!({"client": owner, "name": name});
            if let Some(e) = expires_in {
                body["expires_in"] = e.into();
            }
            if !roles.is_empty() {
                body["roles"] = roles.into();
            }
            let (status, v) = client
                .call(Method::POST, "/api/v1/keys", Some(body))
                .await?;
            cli::finish(status, StatusCode::CREATED, &v, json, |v| {
                let id = v["id"].as_str().unwrap_or("-");
                cli::print_new_key(v["key"].as_str().unwrap_or_default(), id)?;
                eprintln!(
                    "This key is shown only once and cannot be shown again: store it now.\nid {id}  client {}  expires {}",
                    v["client"].as_str().unwrap_or("-"),
                    v["expires_at"].as_str().unwrap_or("never")
                );
                Ok(())
            })
        }
        KeysCommand::List => {
            let (status, v) = client.list_all("/api/v1/keys", "keys").await?;
            cli::finish(status, StatusCode::OK, &v, json, |v| {
                let items = v["keys"].as_array().cloned().unwrap_or_default();
                cli::print_line(&cli::table(&items, cli::KEY_COLUMNS))
            })
        }
        KeysCommand::Revoke { id, force } => {
            let query = if force { "?force=true" } else { "" };
            let (status, v) = client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/keys/{}{query}", cli::escape(&id)),
                    None,
                )
                .await?;
            cli::finish(status, StatusCode::NO_CONTENT, &v, false, |_| {
                cli::print_line(&format!("revoked {id}"))
            })
        }
        KeysCommand::Roll { id, grace } => {
            let body = serde_json::json!({"grace": grace});
            let (status, v) = client
                .call(
                    Method::POST,
                    &format!("/api/v1/keys/{}/roll", cli::escape(&id)),
                    Some(body),
                )
                .await?;
            cli::finish(status, StatusCode::CREATED, &v, json, |v| {
                let new_id = v["id"].as_str().unwrap_or("-");
                cli::print_new_key(v["key"].as_str().unwrap_or_default(), new_id)?;
                eprintln!("New key {new_id} shown only once; {id} keeps working for {grace}.");
                Ok(())
            })
        }
    })
}

/// `keygate admin-key --reset -c PATH`: writes a fresh admin key for the
/// built-in `keygate-admin` client into the store the config names and to
/// `initial-admin.key` beside it (mode 0600), the way the first start does.
/// Prints the path and the key's id, never the key. A running gateway picks
/// the key up within a few seconds; a stopped one at its next start.
fn admin_key_reset(path: &std::path::Path) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{}", errs.render(path));
            return ExitCode::FAILURE;
        }
    };
    let what = match &cfg.store.backend {
        config::Backend::Sqlite(db) => db.display().to_string(),
        config::Backend::Postgres(_) => "(PostgreSQL)".to_string(),
    };
    let locked = |busy: bool, e: &dyn std::fmt::Display| {
        if busy {
            format!(
                "the store {what} is locked by another writer; try again, or stop the gateway first"
            )
        } else {
            format!("cannot use the store {what}: {e}")
        }
    };
    let store: Box<dyn keygate::store::Store> = match &cfg.store.backend {
        config::Backend::Sqlite(db) => {
            // Refuse rather than create an empty store: a wrong -c must not
            // leave a stray database holding an admin key nothing will ever read.
            if !db.exists() {
                eprintln!(
                    "keygate: no store at {}: start the gateway once (its first start creates an admin key), or check -c",
                    db.display()
                );
                return ExitCode::FAILURE;
            }
            match keygate::store::sqlite::SqliteStore::open(db) {
                Ok(s) => Box::new(s),
                Err(e) => {
                    eprintln!("keygate: {}", locked(e.is_busy(), &e));
                    return ExitCode::FAILURE;
                }
            }
        }
        // A database server, not a file a typo could create: opening it
        // applies the schema (as the first replica's start would).
        config::Backend::Postgres(pg) => match keygate::store::postgres::PgStore::open(pg) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("keygate: {}", locked(e.is_busy(), &e));
                return ExitCode::FAILURE;
            }
        },
    };
    let dir = cfg.store.data_dir.clone();
    match keygate::auth::keys::reset_admin_key(
        store.as_ref(),
        &cfg.keys.prefix,
        cfg.keys.max_ttl,
        &dir,
        std::time::SystemTime::now(),
    ) {
        Ok((file, id)) => {
            eprintln!(
                "keygate: wrote a new admin key (id {id}, client keygate-admin) to {} (mode 0600); read it, then delete the file. A running gateway accepts it within a few seconds. Revoke lost admin keys once you are back in.",
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygate: {}", locked(e.is_busy(), &e));
            ExitCode::FAILURE
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{}", errs.render(&path));
            return ExitCode::FAILURE;
        }
    };
    // One worker: a current-thread runtime does the same job without the
    // work-stealing machinery (blocking work still goes to its own pool).
    let mut rt = match cfg.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(w) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(w);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keygate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let app = App::start(path, cfg).await?;
        app.run_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
