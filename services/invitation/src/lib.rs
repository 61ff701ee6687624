//! Invitations: invite people by e-mail to become members of an account (DESIGN.md §4). The
//! secret link is minted by the mailer when it sends the e-mail; only its SHA-256 is stored.
//! Accepting makes the user a member at once through membership's `AddMember`.

pub mod api;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod page;
pub mod peers;
pub mod render;
pub mod store;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use tenantry_events::ConsumerSpec;
use tenantry_platform::sweep;
use tenantry_platform::time::now;
use tenantry_proto::EventType;
use tenantry_proto::invitation::v1::invitation_service_server::InvitationServiceServer;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;

pub use store::migrations::Migrator;
// The shared e-mail transport, as this service sends through it.
use tenantry_mail as mail;

/// What the invitation page's cookies are sealed with: the cluster's internal secret, and the
/// previous one while it is being rotated (cookies sealed under it still open).
#[derive(Clone, Default)]
pub struct CookieSecrets {
    /// Seals and opens.
    pub current: Vec<u8>,
    /// Only opens.
    pub previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for CookieSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecrets")
    }
}

/// The gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "tenantry.invitation.v1.InvitationService";

/// Every event type this service's consumer groups bind.
pub const CONSUMES: &[EventType] = &[
    EventType::InvitationCreated,
    EventType::InvitationResent,
    EventType::AccountDeleted,
    EventType::MemberAdded,
];

/// What the node knows of this service before starting it.
pub const SERVICE: tenantry_events::ServiceInfo = tenantry_events::ServiceInfo {
    name: "invitation",
    grpc_name: SERVICE_NAME,
    consumes: CONSUMES,
    consumer_groups: &[
        consumers::MAILER_GROUP,
        consumers::ACCOUNT_EVENTS_GROUP,
        consumers::MEMBER_EVENTS_GROUP,
    ],
    calls: &[
        tenantry_events::Peer::Membership,
        tenantry_events::Peer::Registry,
    ],
    migrate: tenantry_events::kernel::migrate_with::<Migrator>,
};

/// Invitations expired per sweep transaction.
const SWEEP_BATCH: u64 = 100;

/// The invitation service's settings.
#[derive(clap::Args, Clone)]
#[group(id = "invitation")]
pub struct Config {
    /// Lifetime of a new or resent invitation, in hours.
    #[arg(
        long = "invitation-lifetime-hours",
        env = "TENANTRY_INVITATION_LIFETIME_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u32).range(1..=24 * 365)
    )]
    pub lifetime_hours: u32,
    /// Shortest time between two resends of one invitation, in seconds.
    #[arg(
        long = "invitation-resend-interval-seconds",
        env = "TENANTRY_INVITATION_RESEND_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    pub resend_interval_seconds: u64,
    /// Whether accepting needs a token e-mail equal (case-insensitively) to the invitation's.
    #[arg(
        long = "invitation-require-matching-email",
        env = "TENANTRY_INVITATION_REQUIRE_MATCHING_EMAIL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub require_matching_email: bool,
    /// Base URL of the accept page: links are {public_url}/invitations/accept?token=….
    #[arg(
        long = "public-url",
        env = "TENANTRY_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_url: String,
    /// How often pending invitations past their expiry are marked EXPIRED, in seconds.
    #[arg(
        long = "invitation-sweep-seconds",
        env = "TENANTRY_INVITATION_SWEEP_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sweep_interval_seconds: u64,
    /// Unknown invitation secrets one caller (token `sub`) may try per guess window before
    /// LookupInvitation/AcceptInvitation answer RESOURCE_EXHAUSTED.
    #[arg(
        long = "invitation-guesses-per-caller",
        env = "TENANTRY_INVITATION_GUESSES_PER_CALLER",
        default_value_t = domain::limits::MAX_UNKNOWN_SECRETS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub guesses_per_caller: usize,
    /// Unknown invitation secrets one network address (the peer IP) may try per guess window,
    /// whoever it logs in as.
    #[arg(
        long = "invitation-guesses-per-address",
        env = "TENANTRY_INVITATION_GUESSES_PER_ADDRESS",
        default_value_t = domain::limits::MAX_UNKNOWN_SECRETS_PER_ADDRESS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub guesses_per_address: usize,
    /// How long the mailer reserves an e-mail it is sending, in seconds: a copy of the event
    /// arriving meanwhile waits; past it (the sending process died), any replica may send the
    /// e-mail again. Longer than an SMTP exchange may take (its timeout is 20 s).
    #[arg(
        long = "mail-lease-seconds",
        env = "TENANTRY_MAIL_LEASE_SECONDS",
        default_value_t = consumers::mailer::DEFAULT_LEASE.as_secs(),
        value_parser = clap::value_parser!(u64).range(30..=3600)
    )]
    pub mail_lease_seconds: u64,
    /// The window of both guess limits, in seconds.
    #[arg(
        long = "invitation-guess-window-seconds",
        env = "TENANTRY_INVITATION_GUESS_WINDOW_SECONDS",
        default_value_t = domain::limits::UNKNOWN_SECRET_WINDOW.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub guess_window_seconds: u64,
    /// Hours before an invitation's expiry that a reminder e-mail (with a link of its own) goes
    /// to the invitee, once per e-mail; 0 = no reminders. Invitations shorter than this get none.
    #[arg(
        long = "invitation-reminder-hours",
        env = "TENANTRY_INVITATION_REMINDER_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u32).range(0..=24 * 30)
    )]
    pub reminder_hours: u32,
    /// Address of the invitation page's HTTP listener (the page the e-mail links open, at
    /// {public_url}/invitations/accept); unset = no page (`tenantry up` listens where
    /// TENANTRY_PUBLIC_URL points when that is this machine).
    #[arg(long = "accept-page-listen", env = "TENANTRY_ACCEPT_PAGE_LISTEN")]
    pub accept_page_listen: Option<std::net::SocketAddr>,
    /// OpenID Connect issuer URL the page signs people in with (discovery from
    /// {issuer}/.well-known/openid-configuration); the same provider as the API's tokens.
    #[arg(long = "oidc-issuer-url", env = "TENANTRY_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,
    /// The page's client id at the OpenID provider (redirect URI {public_url}/invitations/callback).
    #[arg(long = "oidc-client-id", env = "TENANTRY_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The page's client secret (unset: a public client, PKCE only); environment only.
    #[arg(skip = tenantry_platform::secrets::from_env("TENANTRY_OIDC_CLIENT_SECRET"))]
    pub oidc_client_secret: Option<String>,
    /// Scopes the page asks the OpenID provider for.
    #[arg(
        long = "oidc-scopes",
        env = "TENANTRY_OIDC_SCOPES",
        default_value = "openid email profile"
    )]
    pub oidc_scopes: String,
    /// Where the page sends a person who accepted (a link on the confirmation); unset = no link.
    #[arg(long = "application-url", env = "TENANTRY_APPLICATION_URL")]
    pub application_url: Option<String>,
    /// The issuer of the API's user tokens when they come from an identity provider (JWKS): the
    /// page's sign-in must be at the same one. Set by the node, never from a setting.
    #[arg(skip)]
    pub api_token_issuer: Option<String>,
    /// The development sign-in (e-mail and name, no identity provider): set by the node only
    /// under `tenantry up` with the public development secret, never from a setting.
    #[arg(skip)]
    pub development_sign_in: bool,
}

/// Secrets show as `***` (the SMTP URL's password, the client secret).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("lifetime_hours", &self.lifetime_hours)
            .field("resend_interval_seconds", &self.resend_interval_seconds)
            .field("require_matching_email", &self.require_matching_email)
            .field("public_url", &self.public_url)
            .field("sweep_interval_seconds", &self.sweep_interval_seconds)
            .field("guesses_per_caller", &self.guesses_per_caller)
            .field("guesses_per_address", &self.guesses_per_address)
            .field("mail_lease_seconds", &self.mail_lease_seconds)
            .field("guess_window_seconds", &self.guess_window_seconds)
            .field("reminder_hours", &self.reminder_hours)
            .field("accept_page_listen", &self.accept_page_listen)
            .field("oidc_issuer_url", &self.oidc_issuer_url)
            .field("oidc_client_id", &self.oidc_client_id)
            .field(
                "oidc_client_secret",
                &self.oidc_client_secret.as_ref().map(|_| "***"),
            )
            .field("oidc_scopes", &self.oidc_scopes)
            .field("application_url", &self.application_url)
            .field("api_token_issuer", &self.api_token_issuer)
            .field("development_sign_in", &self.development_sign_in)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lifetime_hours: 168,
            resend_interval_seconds: 60,
            require_matching_email: true,
            public_url: "http://localhost:8080".into(),
            sweep_interval_seconds: 60,
            guesses_per_caller: domain::limits::MAX_UNKNOWN_SECRETS,
            guesses_per_address: domain::limits::MAX_UNKNOWN_SECRETS_PER_ADDRESS,
            guess_window_seconds: domain::limits::UNKNOWN_SECRET_WINDOW.as_secs(),
            mail_lease_seconds: consumers::mailer::DEFAULT_LEASE.as_secs(),
            reminder_hours: 24,
            accept_page_listen: None,
            oidc_issuer_url: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_scopes: "openid email profile".into(),
            application_url: None,
            api_token_issuer: None,
            development_sign_in: false,
        }
    }
}

/// What the invitation service needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Deps {
    /// The service's own database.
    pub database: tenantry_platform::db::Database,
    /// Membership's `Authorize`.
    pub authorizer: tenantry_platform::authz::Authorizer,
    /// Membership (AddMember on acceptance, CheckInvitee: the e-mail check and the OWNER
    /// capacity), with this service's identity.
    pub membership: MembershipServiceClient<tenantry_platform::clients::ServiceChannel>,
    /// Account display names and states: the registry's `GetAccount` (this service's
    /// identity), kept in the local view ([`peers::CachedAccounts`]); one per process, shared
    /// by the handlers and the mailer.
    pub accounts: Arc<dyn peers::AccountDirectory>,
    /// Signs and checks page tokens.
    pub page_tokens: tenantry_platform::pagination::PageTokens,
    /// Where state changes append their events.
    pub outbox: tenantry_events::Outbox,
    /// Where the mailer counts `tenantry_emails_sent_total` / `tenantry_emails_failed_total`
    /// (`Metrics::default()`: a registry nobody scrapes).
    pub metrics: tenantry_platform::metrics::Metrics,
}

/// The gRPC service over `api`, refusing requests larger than `max_request_bytes`.
fn grpc_service(
    api: Arc<api::InvitationApi>,
    max_request_bytes: usize,
) -> InvitationServiceServer<api::InvitationApi> {
    InvitationServiceServer::from_arc(api).max_decoding_message_size(max_request_bytes)
}

/// The consumer groups of this service: `tenantry.invitation.mailer` (invitation.created,
/// invitation.resent), `tenantry.invitation.account-events` (account.deleted: pending
/// invitations → REVOKED by services/invitation), `tenantry.invitation.member-events`
/// (member.added: a PENDING invitation of the same account for the new member's e-mail →
/// REVOKED by services/invitation, the proto's "invitee added directly").
fn consumer_groups(
    config: &Config,
    deps: &Deps,
    mail: Arc<dyn mail::MailTransport>,
    sender: Mailbox,
) -> Vec<ConsumerSpec> {
    let mailer = consumers::Mailer::new(deps.accounts.clone(), mail, &config.public_url, sender)
        .with_metrics(deps.metrics.clone())
        .with_lease(Duration::from_secs(config.mail_lease_seconds));
    let account_events = consumers::AccountEvents::new(deps.outbox.clone());
    let member_events = consumers::MemberEvents::new(deps.outbox.clone());
    vec![
        group(
            deps,
            consumers::MAILER_GROUP,
            consumers::MAILER_TYPES,
            mailer,
        ),
        group(
            deps,
            consumers::ACCOUNT_EVENTS_GROUP,
            consumers::ACCOUNT_EVENT_TYPES,
            account_events,
        ),
        group(
            deps,
            consumers::MEMBER_EVENTS_GROUP,
            consumers::MEMBER_EVENT_TYPES,
            member_events,
        ),
    ]
}

/// The consumer group `name` on this service's database, bound to `types`.
fn group(
    deps: &Deps,
    name: &str,
    types: &[EventType],
    handler: impl tenantry_events::Handler,
) -> ConsumerSpec {
    // `ServiceContext::consume` sets the service's outbox, woken after each commit.
    ConsumerSpec::new(name, types, deps.database.clone(), handler)
}

/// Marks expired PENDING invitations EXPIRED (with `invitation.expired` events) every sweep
/// interval until shutdown, batch by batch. Waits quietly while the database is not ready.
async fn run_expiry_sweep(
    config: Config,
    deps: Deps,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let store = store::Store::new(deps.database.clone(), deps.outbox.clone());
    let interval = Duration::from_secs(config.sweep_interval_seconds);
    sweep::run_every(interval, deps.database, shutdown, move || {
        let store = store.clone();
        async move {
            sweep::drain("invitations", SWEEP_BATCH, |limit| {
                store.expire_due(now(), limit)
            })
            .await;
        }
    })
    .await;
}

/// Sends the due reminder e-mails every sweep interval until shutdown. Waits quietly while the
/// database is not ready.
async fn run_reminders(
    config: Config,
    database: tenantry_platform::db::Database,
    reminders: consumers::Reminders,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let reminders = Arc::new(reminders);
    let interval = Duration::from_secs(config.sweep_interval_seconds);
    sweep::run_every(interval, database.clone(), shutdown, move || {
        let (reminders, database) = (reminders.clone(), database.clone());
        async move {
            let Ok(connection) = database.connection() else {
                return;
            };
            match reminders.send_due(connection, now()).await {
                Ok(0) => {}
                Ok(sent) => tracing::info!(sent, "reminder e-mails sent"),
                Err(error) => tracing::warn!(%error, "the reminder sweep failed; it runs again"),
            }
        }
    })
    .await;
}

/// Starts the invitation service in `ctx`'s node: its handlers, the mailer and the event
/// consumers, the expiry sweep, its health following its database, and — when
/// `config.accept_page_listen` is set — the invitation page, whose cookies are sealed with a key
/// derived from `cookie_secrets` (the cluster's internal secret).
pub fn start(
    config: Config,
    mail_config: &mail::MailConfig,
    cookie_secrets: &CookieSecrets,
    ctx: &tenantry_events::ServiceContext,
) -> Result<tenantry_events::Started, tenantry_events::StartError> {
    use tenantry_events::Peer;
    let membership_channel = ctx.peer(Peer::Membership)?;
    let deps = Deps {
        database: ctx.database.clone(),
        authorizer: tenantry_platform::authz::Authorizer::new(membership_channel.clone())
            .with_view(&ctx.view)
            .reporting_to(ctx.readiness.clone()),
        membership: MembershipServiceClient::new(membership_channel),
        accounts: Arc::new(peers::CachedAccounts::new(
            peers::RegistryAccounts::new(CustomerRegistryServiceClient::new(
                ctx.peer(Peer::Registry)?,
            )),
            &ctx.view,
        )),
        page_tokens: ctx.page_tokens.clone(),
        outbox: ctx.outbox.clone(),
        metrics: ctx.metrics.clone(),
    };
    let mail = mail_config
        .transport(&ctx.mail_dir)
        .map_err(|error| ctx.setup_error(error))?;
    let mut tasks = vec![ctx.follow_database::<Migrator>(SERVICE_NAME)];
    tasks.extend(
        consumer_groups(&config, &deps, mail.clone(), mail_config.sender())
            .into_iter()
            .map(|spec| ctx.consume(spec)),
    );
    tasks.push(ctx.spawn(run_expiry_sweep(
        config.clone(),
        deps.clone(),
        ctx.shutdown.clone(),
    )));
    if config.reminder_hours > 0 {
        let reminders = consumers::Reminders::new(
            deps.accounts.clone(),
            mail.clone(),
            &config.public_url,
            mail_config.sender(),
            deps.metrics.clone(),
            Duration::from_secs(config.mail_lease_seconds),
        );
        tasks.push(ctx.spawn(run_reminders(
            config.clone(),
            deps.database.clone(),
            reminders,
            ctx.shutdown.clone(),
        )));
    }
    // Old rows of bounded tables (request ids, processed events, closed invitations) are
    // pruned after their retention.
    tasks.push(ctx.prune(store::retention::prune_targets(
        &tenantry_platform::retention::settings(),
    )));
    let api = Arc::new(api::InvitationApi::new(config.clone(), deps));
    if let Some(addr) = config.accept_page_listen {
        let settings = page::settings(&config).map_err(|error| ctx.setup_error(error))?;
        let page = page::build(settings, api.clone(), cookie_secrets);
        let listener = page::listen(addr).map_err(|error| ctx.setup_error(error))?;
        tasks.push(ctx.spawn(page::serve(page, listener, ctx.shutdown.clone())));
    }
    let routes = tonic::service::Routes::new(grpc_service(api, ctx.max_request_bytes));
    Ok(tenantry_events::Started::serving(routes).with_tasks(tasks))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn flags_and_defaults() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["invitation"]).unwrap();
        let defaults = Config::default();
        assert_eq!(cli.config.lifetime_hours, defaults.lifetime_hours);
        assert_eq!(cli.config.resend_interval_seconds, 60);
        assert!(cli.config.require_matching_email);
        assert_eq!(cli.config.public_url, defaults.public_url);
        assert_eq!(cli.config.sweep_interval_seconds, 60);
        assert_eq!(cli.config.guesses_per_caller, defaults.guesses_per_caller);
        assert_eq!(cli.config.guesses_per_address, defaults.guesses_per_address);
        assert_eq!(cli.config.guess_window_seconds, 600);
        assert_eq!(cli.config.reminder_hours, defaults.reminder_hours);
        assert!(cli.config.accept_page_listen.is_none());
        assert!(Cli::try_parse_from(["invitation", "--invitation-reminder-hours", "721"]).is_err());
        let cli = Cli::try_parse_from([
            "invitation",
            "--invitation-lifetime-hours",
            "24",
            "--invitation-require-matching-email",
            "false",
            "--invitation-guesses-per-address",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.config.guesses_per_address, 7);
        assert!(
            Cli::try_parse_from(["invitation", "--invitation-guesses-per-caller", "0"]).is_err()
        );
        assert_eq!(cli.config.lifetime_hours, 24);
        assert!(!cli.config.require_matching_email);
        assert!(Cli::try_parse_from(["invitation", "--invitation-lifetime-hours", "0"]).is_err());
    }
}
