//! The `keygate` command: `run`, `check`, `keygen` (SPEC §1).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

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
}

fn init_logging(format: LogFormat) {
    let env = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let is_access = |m: &tracing::Metadata<'_>| m.target() == "keygate::access";
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
            .with_writer(std::io::stderr)
            .with_filter(filter::filter_fn(move |m| !is_access(m)))
            .with_filter(env())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter::filter_fn(move |m| !is_access(m)))
            .with_filter(env())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(access)
        .with(diag)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                println!("{}: {}", config.display(), c.summary());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{}", errs.render(&config));
                ExitCode::FAILURE
            }
        },
        Command::Keygen { prefix } => {
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                eprintln!("keygate: --prefix must be letters, digits, `_` or `-`");
                return ExitCode::FAILURE;
            }
            match key::generate(&prefix) {
                Ok(k) => {
                    println!("{}", k.expose());
                    println!("sha256: {}", hex::encode(key::digest(k.expose())));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("keygate: no randomness from the OS: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, log_format } => {
            init_logging(log_format);
            run(config)
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
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(w) = cfg.server.workers {
        rt.worker_threads(w);
    }
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
