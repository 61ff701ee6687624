//! `tenantry`: the one binary of the cluster.
//!
//! - `tenantry up` — every service in one process on one port, SQLite files under `./data`.
//! - `tenantry serve SERVICE` — one service against its PostgreSQL database (production).
//! - `tenantry migrate SERVICE` — apply a service's migrations and exit (a Kubernetes Job).
//! - `tenantry token --sub … --email … [--operator]` — print a development JWT.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tenantry_cli::{EventsSpec, Node, NodeSpec, PeerUrls, ServiceKind};
use tenantry_events::Peer;
use tenantry_events::{AmqpConfig, FreshnessSettings, RetryPolicy};
use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
use tenantry_platform::config::{
    AuthConfig, DEV_JWT_SECRET, DataDirConfig, LogConfig, ServerConfig,
};
use tenantry_platform::db;
use tenantry_platform::error::ErrorChain;
use tenantry_platform::retention::RetentionConfig;
use tenantry_platform::view::ViewSettings;

#[derive(Parser)]
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

#[derive(Subcommand)]
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

#[derive(Args)]
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
    #[command(flatten)]
    invitation: tenantry_invitation::Config,
    #[command(flatten)]
    mail: tenantry_mail::MailConfig,
    #[command(flatten)]
    notification: tenantry_notification::Config,
    #[command(flatten)]
    audit: tenantry_audit::Config,
    #[command(flatten)]
    events: EventsArgs,
    #[command(flatten)]
    retention: RetentionConfig,
}

#[derive(Args)]
struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    service: ServiceKind,
    /// The service's own database (`postgres://…`; `sqlite://…` works too).
    #[arg(
        long = "database-url",
        env = "TENANTRY_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: String,
    /// PostgreSQL connections this process keeps open at most (1–1000; SQLite always uses one).
    /// Keep replicas × pool size below the server's `max_connections`.
    #[arg(
        long = "database-pool-size",
        env = "TENANTRY_DATABASE_POOL_SIZE",
        default_value_t = db::DEFAULT_POOL_SIZE,
        value_parser = db::parse_pool_size
    )]
    database_pool_size: u32,
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
    #[command(flatten)]
    invitation: tenantry_invitation::Config,
    #[command(flatten)]
    mail: tenantry_mail::MailConfig,
    #[command(flatten)]
    notification: tenantry_notification::Config,
    #[command(flatten)]
    audit: tenantry_audit::Config,
    #[command(flatten)]
    events: EventsArgs,
    #[command(flatten)]
    retention: RetentionConfig,
    /// Where e-mails are written as `.eml` files when no SMTP URL is set.
    #[arg(long = "mail-dir", env = "TENANTRY_MAIL_DIR", default_value = "./mail")]
    mail_dir: std::path::PathBuf,
}

/// How events travel between the services.
#[derive(Args, Clone)]
struct EventsArgs {
    /// RabbitMQ URL; without it `up` uses an in-process bus (`serve` requires it).
    #[arg(long = "amqp-url", env = "TENANTRY_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// The topic exchange every event is published to.
    #[arg(
        long = "amqp-exchange",
        env = "TENANTRY_AMQP_EXCHANGE",
        default_value = "tenantry.events"
    )]
    amqp_exchange: String,
    /// Prefix of the exchange and queue names (to share one vhost between clusters).
    #[arg(long = "amqp-prefix", env = "TENANTRY_AMQP_PREFIX", default_value = "")]
    amqp_prefix: String,
    /// Unacknowledged deliveries per consumer.
    #[arg(
        long = "amqp-prefetch",
        env = "TENANTRY_AMQP_PREFETCH",
        default_value_t = 32
    )]
    amqp_prefetch: u16,
    /// Most deliveries a consumer handles in one transaction (1 = one at a time).
    #[arg(
        long = "consumer-batch-size",
        env = "TENANTRY_CONSUMER_BATCH_SIZE",
        default_value_t = 16,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000)
    )]
    consumer_batch_size: usize,
    /// How long a consumer waits for more deliveries to fill a batch, in milliseconds.
    #[arg(
        long = "consumer-batch-linger-ms",
        env = "TENANTRY_CONSUMER_BATCH_LINGER_MS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(0..=1000)
    )]
    consumer_batch_linger_ms: u64,
    /// Tries of an event handler before the event goes to the dead-letter queue.
    #[arg(
        long = "event-max-attempts",
        env = "TENANTRY_EVENT_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    max_attempts: u32,
    /// First retry delay in milliseconds (doubling per try, at most 60 s).
    #[arg(
        long = "event-retry-delay-ms",
        env = "TENANTRY_EVENT_RETRY_DELAY_MS",
        default_value_t = 1000
    )]
    retry_delay_ms: u64,
    /// Most answers each local view keeps (authorization decisions, account facts); 0 turns
    /// the local view off (every call asks membership and the database).
    #[arg(
        long = "view-capacity",
        env = "TENANTRY_VIEW_CAPACITY",
        default_value_t = 200_000
    )]
    view_capacity: usize,
    /// The oldest cached answer ever served, in seconds, whatever the events say (a backstop).
    #[arg(
        long = "view-max-age-seconds",
        env = "TENANTRY_VIEW_MAX_AGE_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    view_max_age_seconds: u64,
    /// A view serves cached answers only while every replica that can revoke access has sent a
    /// heartbeat within this many milliseconds; heartbeats go out every quarter of it.
    #[arg(
        long = "view-heartbeat-timeout-ms",
        env = "TENANTRY_VIEW_HEARTBEAT_TIMEOUT_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    view_heartbeat_timeout_ms: u64,
    /// How long a revoking call waits for the broker's confirm before it silences this
    /// replica's heartbeats instead, in milliseconds.
    #[arg(
        long = "revocation-confirm-wait-ms",
        env = "TENANTRY_REVOCATION_CONFIRM_WAIT_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..=60_000)
    )]
    confirm_wait_ms: u64,
}

impl EventsArgs {
    fn spec(&self) -> EventsSpec {
        let timeout = Duration::from_millis(self.view_heartbeat_timeout_ms);
        let freshness = FreshnessSettings {
            heartbeat_every: timeout / 4,
            heartbeat_timeout: timeout,
            forget_after: (timeout * 30).max(Duration::from_secs(30)),
            confirm_wait: Duration::from_millis(self.confirm_wait_ms),
            ..FreshnessSettings::default()
        };
        let retry = RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base_delay: Duration::from_millis(self.retry_delay_ms),
            max_delay: Duration::from_secs(60),
        };
        EventsSpec {
            amqp: self.amqp_url.as_ref().map(|url| AmqpConfig {
                url: url.clone(),
                exchange: self.amqp_exchange.clone(),
                queue_prefix: self.amqp_prefix.clone(),
                prefetch: self.amqp_prefetch,
                retry: retry.clone(),
                batch_size: self.consumer_batch_size,
                batch_linger: Duration::from_millis(self.consumer_batch_linger_ms),
                ..AmqpConfig::default()
            }),
            retry,
            view: ViewSettings {
                capacity: self.view_capacity,
                max_age: Duration::from_secs(self.view_max_age_seconds),
            },
            freshness,
        }
    }
}

#[derive(Args)]
struct MigrateArgs {
    /// The service whose migrations to apply.
    #[arg(value_enum)]
    service: ServiceKind,
    /// The service's own database.
    #[arg(
        long = "database-url",
        env = "TENANTRY_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: String,
    /// PostgreSQL connections this process keeps open at most (1–1000; SQLite always uses one).
    /// Keep replicas × pool size below the server's `max_connections`.
    #[arg(
        long = "database-pool-size",
        env = "TENANTRY_DATABASE_POOL_SIZE",
        default_value_t = db::DEFAULT_POOL_SIZE,
        value_parser = db::parse_pool_size
    )]
    database_pool_size: u32,
}

#[derive(Args)]
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

/// mimalloc, without transparent huge pages (see [`tenantry_cli::memory`]).
#[global_allocator]
static ALLOCATOR: tenantry_cli::memory::Allocator = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenantry_cli::memory::disable_transparent_huge_pages();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(parse_command_line())),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line and environment, with every secret setting given as a `…_FILE` read from
/// its file. Exits (status 2, as clap does) on a secret file that cannot be read, naming it.
fn parse_command_line() -> Cli {
    let problems = tenantry_platform::secrets::check_environment();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        std::process::exit(2);
    }
    let matches = tenantry_platform::secrets::defaults_from_files(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

async fn run(cli: Cli) -> std::process::ExitCode {
    // One process per service names itself after it in traces (OTEL_SERVICE_NAME wins).
    let process_name = match &cli.command {
        Command::Serve(args) => args.service.name(),
        _ => "tenantry",
    };
    let telemetry = tenantry_platform::telemetry::init(&cli.log, process_name);
    let result = match cli.command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Token(args) => token(args),
    };
    telemetry.shutdown();
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
    args.server.apply_connection_settings();
    // The services' pruners read the retention settings when they start.
    args.retention.apply().map_err(anyhow::Error::msg)?;
    if args.auth.jwt_secret.is_none() && args.auth.jwks_url.is_none() {
        tracing::warn!("TENANTRY_JWT_SECRET is not set: using the public development secret");
        args.auth.jwt_secret = Some(DEV_JWT_SECRET.to_string());
    }
    if args.auth.internal_secret.is_none() {
        // One process: the services only need to agree with themselves.
        args.auth.internal_secret = Some(random_secret());
    }
    // The e-mails' links open the invitation page: listen where they point when that is here
    // and someone can sign in there (the development sign-in needs the development secret).
    let can_sign_in = args.auth.jwt_secret.as_deref() == Some(DEV_JWT_SECRET)
        || (args.invitation.oidc_issuer_url.is_some() && args.invitation.oidc_client_id.is_some());
    if args.invitation.accept_page_listen.is_none() && can_sign_in {
        args.invitation.accept_page_listen = local_address_of(&args.invitation.public_url);
    }
    let page = match args.invitation.accept_page_listen {
        Some(_) => format!(
            "the e-mails' links open {}/invitations/accept",
            args.invitation.public_url.trim_end_matches('/')
        ),
        None if !can_sign_in => {
            "no page: nobody could sign in (set TENANTRY_OIDC_ISSUER_URL and TENANTRY_OIDC_CLIENT_ID)"
                .to_string()
        }
        None => "no page: TENANTRY_PUBLIC_URL is not on this machine (set TENANTRY_ACCEPT_PAGE_LISTEN)"
            .to_string(),
    };
    let data_dir = &args.data.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    if args.audit.tombstone_key.is_none() {
        // The internal secret is new with every start, the audit log is not: its tombstones
        // need a key that stays with the data.
        args.audit.tombstone_key = Some(tombstone_key_in(data_dir)?);
    }
    let services = ServiceKind::ALL
        .iter()
        .map(|kind| {
            let file = data_dir.join(format!("{}.db", kind.name()));
            (*kind, format!("sqlite://{}?mode=rwc", file.display()))
        })
        .collect();
    let smtp = args.mail.smtp_url.clone();
    let tls = args.server.tls.load()?;
    let (plaintext, buf_target) = if tls.serves_tls() {
        ("", "--list-methods https")
    } else {
        ("-plaintext ", "--http2-prior-knowledge --list-methods http")
    };
    let spec = NodeSpec {
        services,
        auth: args.auth,
        peers: PeerUrls::default(),
        max_request_bytes: args.server.max_request_bytes,
        shutdown_grace: Duration::from_secs(args.server.shutdown_grace_seconds),
        registry: args.registry,
        membership: args.membership,
        invitation: args.invitation,
        mail: args.mail,
        notification: args.notification,
        audit: args.audit,
        events: args.events.spec(),
        mail_dir: data_dir.join("mail"),
        admin_listen: args.server.admin_listen,
    };
    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.server.listen))?;
    let node = Node::start_with_tls(spec, listener, tls).await?;
    let shutdown = node.shutdown_handle();
    shutdown.trigger_on_signals();
    let addr = node.local_addr();
    if !node.wait_ready(Duration::from_secs(60)).await {
        if shutdown.is_triggered() {
            // Stopped while starting: drain what was accepted and exit normally.
            node.wait().await?;
            return Ok(());
        }
        bail!("the services did not become ready within 60 s");
    }
    let me = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "tenantry".to_string());
    println!(
        "Tenantry is up on {addr} (all services; data in {})",
        data_dir.display()
    );
    println!("  list the API:  grpcurl {plaintext}{addr} list");
    println!("       or:       buf curl --protocol grpc {buf_target}://{addr}");
    println!("  get a token:   TOKEN=$({me} token --sub ops --email ops@example.com --operator)");
    println!(
        "  call:          grpcurl {plaintext}-H \"authorization: Bearer $TOKEN\" -d '{{}}' {addr} tenantry.registry.v1.CustomerRegistryService/ListAccounts"
    );
    match &smtp {
        Some(_) => println!("  e-mails:       sent through TENANTRY_SMTP_URL"),
        None => println!(
            "  e-mails:       written to {} (set TENANTRY_SMTP_URL to send them)",
            data_dir.join("mail").display()
        ),
    }
    println!("  invitations:   {page}");
    if let Some(admin) = node.admin_addr() {
        println!("  metrics:       http://{admin}/metrics (probes: /livez, /readyz)");
    }
    println!("Stop with Ctrl-C.");
    node.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The address to listen on for `public_url` when it names this machine (`localhost`, a
/// loopback address), with its port.
fn local_address_of(public_url: &str) -> Option<std::net::SocketAddr> {
    let url = url::Url::parse(public_url).ok()?;
    let port = url.port_or_known_default()?;
    let ip = match url.host()? {
        url::Host::Domain(domain) if domain.eq_ignore_ascii_case("localhost") => {
            std::net::IpAddr::from([127, 0, 0, 1])
        }
        url::Host::Ipv4(ip) if ip.is_loopback() => ip.into(),
        url::Host::Ipv6(ip) if ip.is_loopback() => ip.into(),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.server.apply_connection_settings();
    // The service's pruner reads the retention settings when it starts.
    args.retention.apply().map_err(anyhow::Error::msg)?;
    if args.auth.jwt_secret.as_deref() == Some(DEV_JWT_SECRET) {
        bail!(
            "refusing to serve with the public development secret; set TENANTRY_JWT_SECRET or TENANTRY_JWKS_URL"
        );
    }
    let peers = PeerUrls {
        registry: args.registry_url,
        membership: args.membership_url,
    };
    for peer in args.service.info().calls {
        let (url, variable) = match peer {
            Peer::Membership => (&peers.membership, "TENANTRY_MEMBERSHIP_URL"),
            Peer::Registry => (&peers.registry, "TENANTRY_REGISTRY_URL"),
        };
        if url.is_none() {
            bail!("{} needs {variable}", args.service.name());
        }
    }
    if args.events.amqp_url.is_none() {
        bail!(
            "serve needs TENANTRY_AMQP_URL: services in separate processes exchange events through RabbitMQ"
        );
    }
    // Every database the node opens from here on gets this pool size.
    db::set_pool_size(args.database_pool_size);
    let spec = NodeSpec {
        services: vec![(args.service, args.database_url)],
        auth: args.auth,
        peers,
        max_request_bytes: args.server.max_request_bytes,
        shutdown_grace: Duration::from_secs(args.server.shutdown_grace_seconds),
        registry: args.registry,
        membership: args.membership,
        invitation: args.invitation,
        mail: args.mail,
        notification: args.notification,
        audit: args.audit,
        events: args.events.spec(),
        mail_dir: args.mail_dir,
        admin_listen: args.server.admin_listen,
    };
    let tls = args.server.tls.load()?;
    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.server.listen))?;
    let node = Node::start_with_tls(spec, listener, tls).await?;
    node.shutdown_handle().trigger_on_signals();
    tracing::info!(
        service = args.service.name(),
        address = %node.local_addr(),
        admin = ?node.admin_addr(),
        "serving"
    );
    node.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    db::set_pool_size(args.database_pool_size);
    let connection = db::connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    // Under the migration lock: replicas starting now wait for this Job, or it for them.
    db::with_migration_lock(
        &args.database_url,
        (args.service.info().migrate)(&connection),
    )
    .await
    .with_context(|| format!("migrations of {} failed", args.service.name()))?;
    let _ = connection.close().await;
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
        // A development token vouches for the address it carries.
        email_verified: args.email.as_ref().map(|_| true),
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

/// The audit tombstone key kept in `data_dir` for `tenantry up`, made on the first start
/// (readable by its owner only).
fn tombstone_key_in(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("audit-tombstone.key");
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_string()),
        Ok(_) => anyhow::bail!("{} is empty; delete it to make a new key", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let key = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, key.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
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
    fn up_listens_for_the_page_where_local_links_point() {
        assert_eq!(
            super::local_address_of("http://localhost:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            super::local_address_of("http://[::1]/"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(super::local_address_of("https://invite.example.com"), None);
        assert_eq!(super::local_address_of("not a url"), None);
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

    #[test]
    fn the_pool_size_is_validated() {
        use clap::Parser;
        let parse = |size: &str| {
            super::Cli::try_parse_from([
                "tenantry",
                "migrate",
                "invitation",
                "--database-url",
                "postgres://db/invitation",
                "--database-pool-size",
                size,
            ])
        };
        let Ok(super::Cli {
            command: super::Command::Migrate(args),
            ..
        }) = parse("40")
        else {
            panic!("expected migrate");
        };
        assert_eq!(args.database_pool_size, 40);
        for bad in ["0", "1001", "many"] {
            let Err(error) = parse(bad) else {
                panic!("{bad} accepted")
            };
            let error = error.to_string();
            assert!(error.contains("TENANTRY_DATABASE_POOL_SIZE"), "{error}");
        }
        let cli = super::Cli::try_parse_from([
            "tenantry",
            "serve",
            "invitation",
            "--database-url",
            "postgres://db/invitation",
        ])
        .expect("parse");
        let super::Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(
            args.database_pool_size,
            tenantry_platform::db::DEFAULT_POOL_SIZE
        );
    }

    #[test]
    fn retention_settings_are_read_and_validated() {
        use clap::Parser;
        let cli =
            super::Cli::try_parse_from(["tenantry", "up", "--invitation-retention-days", "30"]);
        let Ok(super::Cli {
            command: super::Command::Up(args),
            ..
        }) = cli
        else {
            panic!("expected up");
        };
        let settings = args.retention.settings().expect("valid");
        assert_eq!(settings.invitations.as_secs(), 30 * 24 * 3600);
        let error = super::Cli::try_parse_from([
            "tenantry",
            "serve",
            "invitation",
            "--database-url",
            "postgres://db/invitation",
            "--prune-interval-seconds",
            "0",
        ])
        .err()
        .expect("a zero interval is refused")
        .to_string();
        assert!(error.contains("TENANTRY_PRUNE_INTERVAL_SECONDS"), "{error}");
    }
}
