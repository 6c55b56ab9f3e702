//! The `broker` command: `serve` (the default), `migrate`, `token`, `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use broker::auth::{Authenticator, Role, parse_ttl};
use broker::config::Config;
use broker::redact::{redact_all, redact_url};
use broker::server::Server;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "An instant-messaging broker that speaks STOMP over WebSocket"
)]
struct Cli {
    /// Configuration file (default: ./broker.toml when it exists, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Enable the dev token endpoint (auth.dev_login) for trying the demo client.
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve,
    /// Run the database migrations of `storage.url` and exit.
    Migrate,
    /// Print the configuration in effect, secrets redacted; exit non-zero when it is invalid.
    CheckConfig,
    /// Print a signed token for trying the broker without an identity provider.
    Token {
        /// The user id.
        #[arg(long)]
        sub: String,
        /// A role (user, system, admin, staff); repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if cli.dev {
        env.push(("BROKER_AUTH_DEV_LOGIN".into(), "true".into()));
    }
    let config = match Config::load(cli.config.as_deref(), env) {
        Ok(config) => config,
        Err(error) => {
            // A TOML error quotes the line it stopped at, which may hold a URL with a password.
            eprintln!("broker: {}", redact_all(&error.to_string(), []));
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::CheckConfig => check_config(&config),
        Command::Token { sub, roles, ttl } => token(&config, &sub, &roles, &ttl),
    }
}

fn token(config: &Config, sub: &str, roles: &[String], ttl: &str) -> ExitCode {
    let Some(ttl) = parse_ttl(ttl) else {
        eprintln!("broker: invalid --ttl {ttl:?}; use e.g. 30m, 1h, 7d");
        return ExitCode::from(2);
    };
    let mut parsed = Vec::new();
    for name in roles {
        match Role::parse(name) {
            Some(role) => parsed.push(role),
            None => {
                eprintln!("broker: unknown role {name:?}; use user, system, admin or staff");
                return ExitCode::from(2);
            }
        }
    }
    if parsed.is_empty() {
        parsed.push(Role::User);
    }
    let minted =
        Authenticator::from_config(&config.auth).and_then(|auth| auth.mint(sub, &parsed, ttl));
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("broker: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the effective configuration as TOML: passwords of URLs and every key naming a secret
/// or password are replaced.
fn check_config(config: &Config) -> ExitCode {
    fn redact(table: &mut toml::Table) {
        for (key, value) in table.iter_mut() {
            match value {
                toml::Value::Table(inner) => redact(inner),
                toml::Value::String(text)
                    if key.ends_with("secret") || key.contains("password") =>
                {
                    *text = "<redacted>".to_owned();
                }
                toml::Value::String(text) if key.ends_with("url") => *text = redact_url(text),
                _ => {}
            }
        }
    }
    let mut effective = config.effective.clone();
    redact(&mut effective);
    if !config.ignored_env.is_empty() {
        eprintln!(
            "broker: ignored (no such section): {}",
            config.ignored_env.join(", ")
        );
    }
    print!("{effective}");
    ExitCode::SUCCESS
}

fn migrate(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("broker: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(broker::store::migrate(&config.storage.url)) {
        Ok(()) => {
            println!(
                "migrations of {} are up to date",
                redact_url(&config.storage.url)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            let urls = config.service_urls();
            eprintln!(
                "broker: {}",
                redact_all(&error.to_string(), urls.iter().map(String::as_str))
            );
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    tracing_subscriber::fmt()
        // Colours only on a terminal: logs written to files and pipes stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if !config.ignored_env.is_empty() {
        tracing::warn!(
            variables = %config.ignored_env.join(", "),
            "ignoring BROKER_* environment variables that name no configuration section"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("broker: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match broker::os::raise_open_file_limit() {
        Ok(limit) => {
            tracing::info!(
                soft = limit.soft,
                hard = limit.hard,
                was = limit.was,
                "open file limit"
            );
            let wanted = config
                .server
                .max_connections
                .saturating_add(config.server.max_http_connections);
            if limit.soft < u64::try_from(wanted).unwrap_or(u64::MAX) {
                tracing::warn!(
                    soft = limit.soft,
                    wanted,
                    "the open file limit is below server.max_connections + \
                     server.max_http_connections; raise the hard limit (LimitNOFILE=, ulimit -Hn)"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
    runtime.block_on(async move {
        if config.auth.dev_login {
            tracing::warn!("auth.dev_login is on: anyone who can reach this port can mint tokens");
        }
        let urls = config.service_urls();
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!(
                    "broker: {}",
                    redact_all(&error.to_string(), urls.iter().map(String::as_str))
                );
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
