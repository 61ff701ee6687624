//! `tenantry`: the one binary of the cluster.
//!
//! - `tenantry up` — every service in one process on one port, SQLite files under `./data`.
//! - `tenantry serve SERVICE` — one service against its PostgreSQL database (production).
//! - `tenantry migrate SERVICE` — apply a service's migrations and exit (a Kubernetes Job).
//! - `tenantry token --sub … --email … [--operator]` — print a development JWT.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sea_orm_migration::MigratorTrait;
use tenantry_cli::{Node, NodeSpec, PeerUrls, ServiceKind};
use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
use tenantry_platform::config::{
    AuthConfig, DEV_JWT_SECRET, DataDirConfig, LogConfig, ServerConfig,
};
use tenantry_platform::error::ErrorChain;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry",
    version,
    about = "Partners administrate the customer accounts they manage"
)]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every service in one process on one port, with SQLite files under the data directory.
    Up(UpArgs),
    /// Run one service against its own database (production).
    Serve(ServeArgs),
    /// Apply one service's database migrations and exit.
    Migrate(MigrateArgs),
    /// Print a development user token signed with the configured HS256 secret.
    Token(TokenArgs),
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    server: ServerConfig,
    #[command(flatten)]
    data: DataDirConfig,
    #[command(flatten)]
    auth: AuthConfig,
    #[command(flatten)]
    registry: tenantry_registry::Config,
    #[command(flatten)]
    membership: tenantry_membership::Config,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    service: ServiceKind,
    /// The service's own database (`postgres://…`; `sqlite://…` works too).
    #[arg(long = "database-url", env = "TENANTRY_DATABASE_URL")]
    database_url: String,
    /// The customer registry's gRPC URL.
    #[arg(long = "registry-url", env = "TENANTRY_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Membership's gRPC URL.
    #[arg(long = "membership-url", env = "TENANTRY_MEMBERSHIP_URL")]
    membership_url: Option<String>,
    #[command(flatten)]
    server: ServerConfig,
    #[command(flatten)]
    auth: AuthConfig,
    #[command(flatten)]
    registry: tenantry_registry::Config,
    #[command(flatten)]
    membership: tenantry_membership::Config,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// The service whose migrations to apply.
    #[arg(value_enum)]
    service: ServiceKind,
    /// The service's own database.
    #[arg(long = "database-url", env = "TENANTRY_DATABASE_URL")]
    database_url: String,
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// The user's e-mail address.
    #[arg(long)]
    email: Option<String>,
    /// Given name.
    #[arg(long = "given-name")]
    given_name: Option<String>,
    /// Family name.
    #[arg(long = "family-name")]
    family_name: Option<String>,
    /// Give the token the operator role.
    #[arg(long)]
    operator: bool,
    /// Lifetime in seconds.
    #[arg(long = "ttl", default_value_t = 3600)]
    ttl_seconds: u64,
    #[command(flatten)]
    auth: AuthConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tenantry_platform::telemetry::init(&cli.log);
    let result = match cli.command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Token(args) => token(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let chain: &(dyn std::error::Error + 'static) = error.as_ref();
            tracing::error!(error = %ErrorChain(chain), "tenantry failed");
            eprintln!("error: {}", ErrorChain(chain));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    if args.auth.jwt_secret.is_none() && args.auth.jwks_url.is_none() {
        tracing::warn!("TENANTRY_JWT_SECRET is not set: using the public development secret");
        args.auth.jwt_secret = Some(DEV_JWT_SECRET.to_string());
    }
    if args.auth.internal_secret.is_none() {
        // One process: the services only need to agree with themselves.
        args.auth.internal_secret = Some(random_secret());
    }
    let data_dir = &args.data.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let services = ServiceKind::ALL
        .iter()
        .map(|kind| {
            let file = data_dir.join(format!("{}.db", kind.name()));
            (*kind, format!("sqlite://{}?mode=rwc", file.display()))
        })
        .collect();
    let spec = NodeSpec {
        services,
        auth: args.auth,
        peers: PeerUrls::default(),
        max_request_bytes: args.server.max_request_bytes,
        shutdown_grace: Duration::from_secs(args.server.shutdown_grace_seconds),
        registry: args.registry,
        membership: args.membership,
    };
    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.server.listen))?;
    let node = Node::start(spec, listener).await?;
    node.shutdown_handle().trigger_on_signals();
    let addr = node.local_addr();
    if !node.wait_ready(Duration::from_secs(60)).await {
        bail!("the services did not become ready within 60 s");
    }
    let me = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "tenantry".to_string());
    println!(
        "Tenantry is up on {addr} (all services; data in {})",
        data_dir.display()
    );
    println!("  list the API:  grpcurl -plaintext {addr} list");
    println!(
        "       or:       buf curl --protocol grpc --http2-prior-knowledge --list-methods http://{addr}"
    );
    println!("  get a token:   TOKEN=$({me} token --sub ops --email ops@example.com --operator)");
    println!(
        "  call:          grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{}}' {addr} tenantry.registry.v1.CustomerRegistryService/ListAccounts"
    );
    println!("Stop with Ctrl-C.");
    node.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.auth.jwt_secret.as_deref() == Some(DEV_JWT_SECRET) {
        bail!(
            "refusing to serve with the public development secret; set TENANTRY_JWT_SECRET or TENANTRY_JWKS_URL"
        );
    }
    let peers = PeerUrls {
        registry: args.registry_url,
        membership: args.membership_url,
    };
    let needs = match args.service {
        ServiceKind::CustomerRegistry => ("membership", peers.membership.is_none()),
        ServiceKind::Membership => ("customer-registry", peers.registry.is_none()),
    };
    if needs.1 {
        bail!(
            "{} needs the URL of {} (TENANTRY_{}_URL)",
            args.service.name(),
            needs.0,
            if needs.0 == "membership" {
                "MEMBERSHIP"
            } else {
                "REGISTRY"
            }
        );
    }
    let spec = NodeSpec {
        services: vec![(args.service, args.database_url)],
        auth: args.auth,
        peers,
        max_request_bytes: args.server.max_request_bytes,
        shutdown_grace: Duration::from_secs(args.server.shutdown_grace_seconds),
        registry: args.registry,
        membership: args.membership,
    };
    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.server.listen))?;
    let node = Node::start(spec, listener).await?;
    node.shutdown_handle().trigger_on_signals();
    tracing::info!(service = args.service.name(), address = %node.local_addr(), "serving");
    node.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let connection = tenantry_platform::db::connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    match args.service {
        ServiceKind::CustomerRegistry => tenantry_registry::Migrator::up(&connection, None).await,
        ServiceKind::Membership => tenantry_membership::Migrator::up(&connection, None).await,
    }
    .with_context(|| format!("migrations of {} failed", args.service.name()))?;
    println!("{}: migrations applied", args.service.name());
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secret = args
        .auth
        .jwt_secret
        .clone()
        .unwrap_or_else(|| DEV_JWT_SECRET.to_string());
    let now = unix_now();
    let claims = DevTokenClaims {
        sub: args.sub,
        email: args.email,
        given_name: args.given_name,
        family_name: args.family_name,
        roles: if args.operator {
            vec![args.auth.operator_role.clone()]
        } else {
            Vec::new()
        },
        iss: args.auth.issuer.clone(),
        aud: args.auth.audience.clone(),
        exp: now + args.ttl_seconds,
        iat: now,
    };
    println!("{}", mint_user_token(&secret, &claims)?);
    Ok(())
}

fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn up_parses_with_defaults() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from(["tenantry", "up"]).expect("parse");
        let super::Command::Up(args) = cli.command else {
            panic!("expected up");
        };
        assert_eq!(args.server.listen.port(), 50051);
        assert_eq!(args.data.data_dir, std::path::PathBuf::from("./data"));
    }
}
