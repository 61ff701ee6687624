//! Membership: who holds which role in which account, the user directory, and `Authorize`,
//! the authorization decision every other Tenantry service asks for (DESIGN.md §2, §5).
//! Publishes `member.*` and keeps a replica of account facts from `account.*` (§6).

pub mod access_mail;
pub mod access_wire;
pub mod accounts;
pub mod api;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod reminders;
pub mod store;
pub mod wire;

use std::sync::Arc;

use tenantry_events::{ConsumerSpec, Peer, ServiceContext, StartError, Started};
use tenantry_platform::Role;
use tenantry_proto::EventType;
use tenantry_proto::membership::v1::membership_service_server::MembershipServiceServer;

pub use accounts::{AccountDirectory, AccountSource, RegistryAccounts, ReplicatedAccounts};
pub use domain::{AccountFacts, AccountState, VersionedFacts};
pub use store::migrations::Migrator;

/// The gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "tenantry.membership.v1.MembershipService";

/// Every event type membership's consumer groups bind: the `account.*` events that keep the
/// account replica ([`consumers::ACCOUNTS_GROUP`]).
pub const CONSUMES: &[EventType] = &consumers::ACCOUNT_EVENTS;

/// What the node knows of this service before starting it.
pub const SERVICE: tenantry_events::ServiceInfo = tenantry_events::ServiceInfo {
    name: "membership",
    grpc_name: SERVICE_NAME,
    consumes: CONSUMES,
    consumer_groups: &[consumers::ACCOUNTS_GROUP],
    calls: &[tenantry_events::Peer::Registry],
    migrate: tenantry_events::kernel::migrate_with::<Migrator>,
};

/// The role `AddMyself` gives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddMyselfRole {
    /// OWNER (still at most 2 per account).
    Owner,
    /// ADMIN (the default).
    #[default]
    Admin,
    /// EMPLOYEE.
    Employee,
}

impl AddMyselfRole {
    /// The role.
    pub fn role(self) -> Role {
        match self {
            AddMyselfRole::Owner => Role::Owner,
            AddMyselfRole::Admin => Role::Admin,
            AddMyselfRole::Employee => Role::Employee,
        }
    }
}

/// Membership's settings.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "membership")]
pub struct Config {
    /// Role given by AddMyself.
    #[arg(
        long = "add-myself-role",
        env = "TENANTRY_ADD_MYSELF_ROLE",
        value_enum,
        default_value_t = AddMyselfRole::Admin
    )]
    pub add_myself_role: AddMyselfRole,
    /// Seconds between two runs of the sweep that ends time-bound memberships (a membership
    /// ends at most this long after its `expire_time`).
    #[arg(
        long = "membership-sweep-seconds",
        env = "TENANTRY_MEMBERSHIP_SWEEP_SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub member_sweep_seconds: u64,
    /// Hours before a time-bound membership ends that the first e-mail warns the member and
    /// the managing partner's OWNERs (0: none).
    #[arg(
        long = "membership-first-reminder-hours",
        env = "TENANTRY_MEMBERSHIP_FIRST_REMINDER_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u32).range(0..=17_520)
    )]
    pub first_reminder_hours: u32,
    /// Hours before the end that the last e-mail warns them (0: none); when both are due at
    /// once, only this one is sent.
    #[arg(
        long = "membership-last-reminder-hours",
        env = "TENANTRY_MEMBERSHIP_LAST_REMINDER_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u32).range(0..=17_520)
    )]
    pub last_reminder_hours: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            add_myself_role: AddMyselfRole::Admin,
            member_sweep_seconds: 15,
            first_reminder_hours: 168,
            last_reminder_hours: 24,
        }
    }
}

/// Sends the due access-expiry reminders every sweep interval until shutdown. Waits quietly
/// while the database is not ready.
async fn run_reminders(
    config: Config,
    database: tenantry_platform::db::Database,
    reminders: reminders::ExpiryReminders,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let interval = std::time::Duration::from_secs(config.member_sweep_seconds);
    tenantry_platform::sweep::run_every(interval, database, shutdown, move || {
        let reminders = reminders.clone();
        async move {
            if let Err(error) = reminders.run(tenantry_platform::time::now()).await {
                tracing::warn!(
                    error = %tenantry_platform::error::ErrorChain(&error),
                    "access-expiry reminders failed; retrying at the next interval"
                );
            }
        }
    })
    .await;
}

/// Sends the queued access-request e-mails when a change in this process queued one, and
/// every sweep interval (those queued by other replicas, retries, expired leases).
async fn run_request_mailer(
    config: Config,
    deps: Deps,
    mailer: access_mail::RequestMailer,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let interval = std::time::Duration::from_secs(config.member_sweep_seconds.max(1));
    loop {
        if deps.database.is_ready()
            && let Err(error) = mailer.run().await
        {
            tracing::warn!(
                error = %tenantry_platform::error::ErrorChain(&error),
                "access-request e-mails failed; retrying at the next interval"
            );
        }
        tokio::select! {
            () = deps.request_mail.notified() => {},
            () = tokio::time::sleep(interval) => {},
            () = shutdown.wait() => return,
        }
    }
}

/// Memberships the expiry sweep looks at per query.
const SWEEP_BATCH: u64 = 100;

/// Ends the time-bound memberships whose time is up (with `member.expired` events) every sweep
/// interval until shutdown, batch by batch. Waits quietly while the database is not ready.
async fn run_expiry_sweep(
    config: Config,
    deps: Deps,
    shutdown: tenantry_platform::server::Shutdown,
) {
    let store = store::Store::new(deps.database.clone(), deps.outbox.clone());
    let interval = std::time::Duration::from_secs(config.member_sweep_seconds);
    tenantry_platform::sweep::run_every(interval, deps.database, shutdown, move || {
        let store = store.clone();
        async move {
            tenantry_platform::sweep::drain("memberships", SWEEP_BATCH, |limit| {
                let store = store.clone();
                async move {
                    let (looked_at, _expired) = store
                        .expire_due(tenantry_platform::time::now(), limit)
                        .await?;
                    Ok::<_, domain::MembershipError>(looked_at)
                }
            })
            .await;
        }
    })
    .await;
}

/// What membership needs from its surroundings.
#[derive(Clone, Debug)]
pub(crate) struct Deps {
    /// Membership's own database.
    pub database: tenantry_platform::db::Database,
    /// Account facts (display name, partner, managed_by, state) of the customer registry's
    /// accounts; in a node, [`ReplicatedAccounts`] over membership's own database.
    pub accounts: Arc<dyn AccountDirectory>,
    /// Signs and checks page tokens.
    pub page_tokens: tenantry_platform::pagination::PageTokens,
    /// Where `member.*` events are appended, in the transaction of each change.
    pub outbox: tenantry_events::Outbox,
    /// The process's local view, if `Authorize` may answer from memory.
    pub view: Option<tenantry_platform::view::LocalView>,
    /// Wakes the access-request mailer when a change queued an e-mail.
    pub request_mail: Arc<tokio::sync::Notify>,
}

/// Membership's consumer groups: `tenantry.membership.accounts`, bound to the `account.*`
/// events, keeps the account replica in membership's database and drops the members of
/// deleted accounts.
fn consumers(deps: &Deps) -> Vec<ConsumerSpec> {
    vec![ConsumerSpec::new(
        consumers::ACCOUNTS_GROUP,
        &consumers::ACCOUNT_EVENTS,
        deps.database.clone(),
        consumers::AccountReplicaHandler,
    )]
}

/// Starts membership in `ctx`'s node: its handlers, the account replica's consumer, and its
/// health following its database.
pub fn start(
    config: Config,
    mail: &tenantry_mail::MailConfig,
    ctx: &ServiceContext,
) -> Result<Started, StartError> {
    let registry = RegistryAccounts::new(ctx.peer(Peer::Registry)?);
    let deps = Deps {
        database: ctx.database.clone(),
        accounts: Arc::new(ReplicatedAccounts::new(ctx.database.clone(), registry)),
        page_tokens: ctx.page_tokens.clone(),
        outbox: ctx.outbox.clone(),
        view: Some(ctx.view.clone()),
        request_mail: Arc::new(tokio::sync::Notify::new()),
    };
    let mut tasks = vec![ctx.follow_database::<Migrator>(SERVICE_NAME)];
    tasks.extend(consumers(&deps).into_iter().map(|spec| ctx.consume(spec)));
    // Old rows of bounded tables (request ids, processed events) are pruned after their retention.
    tasks.push(ctx.prune(store::prune_targets(
        &tenantry_platform::retention::settings(),
    )));
    tasks.push(ctx.spawn(run_expiry_sweep(
        config.clone(),
        deps.clone(),
        ctx.shutdown.clone(),
    )));
    // Memberships and authorization do not depend on e-mail: without a usable transport the
    // reminders are off (said loudly), the service still starts.
    match mail.transport(&ctx.mail_dir) {
        Ok(transport) => {
            let reminders = reminders::ExpiryReminders::new(
                store::Store::new(deps.database.clone(), deps.outbox.clone()),
                transport.clone(),
                mail.sender(),
                config.first_reminder_hours,
                config.last_reminder_hours,
            );
            tasks.push(ctx.spawn(run_reminders(
                config.clone(),
                deps.database.clone(),
                reminders,
                ctx.shutdown.clone(),
            )));
            let mailer = access_mail::RequestMailer::new(
                store::Store::new(deps.database.clone(), deps.outbox.clone()),
                transport,
                mail.sender(),
            );
            tasks.push(ctx.spawn(run_request_mailer(
                config.clone(),
                deps.clone(),
                mailer,
                ctx.shutdown.clone(),
            )));
        }
        Err(error) => tracing::error!(
            error = %tenantry_platform::error::ErrorChain(&error),
            "no e-mail transport: access-expiry reminders and access-request e-mails are off \
             (set TENANTRY_SMTP_URL)"
        ),
    }
    let service = MembershipServiceServer::new(api::MembershipApi::new(config, deps))
        .max_decoding_message_size(ctx.max_request_bytes);
    Ok(Started::serving(tonic::service::Routes::new(service)).with_tasks(tasks))
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
    fn add_myself_role_flag() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["membership", "--add-myself-role", "employee"]).unwrap();
        assert_eq!(cli.config.add_myself_role.role(), Role::Employee);
        assert!(Cli::try_parse_from(["membership", "--add-myself-role", "boss"]).is_err());
        assert_eq!(Config::default().add_myself_role, AddMyselfRole::Admin);
    }
}
