//! Notifications (DESIGN.md §4): a partner sends short messages to the users of its managed
//! customers; each recipient sees them in a login inbox until acknowledged (ALL_MUST_READ) or
//! until someone in the same recipient account acknowledged (SINGLE_READ_ONLY).
//!
//! SendMessage stores the message, its recipient accounts and `message.sent` in one
//! transaction. The `message.sent` consumer records one fan-out job per recipient account; the
//! fan-out worker pages through each account's members and writes their deliveries page by
//! page (bounded memory, resumable, duplicate-free). Live inbox pushes (WatchInbox) come from
//! `inbox.changed` events through the per-replica [`InboxHub`].

pub mod api;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod hub;
pub mod peers;
pub mod store;
pub mod wire;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tenantry_events::{ConsumerSpec, Peer, ServiceContext, StartError, Started};
use tenantry_platform::server::Shutdown;
use tenantry_platform::sweep;
use tenantry_proto::EventType;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::notification::v1::notification_service_server::NotificationServiceServer;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;

pub use hub::InboxHub;
pub use store::migrations::Migrator;

use store::Store;
use worker::FanoutWake;

/// The gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "tenantry.notification.v1.NotificationService";

/// Every event type this service's consumer groups and its WatchInbox broadcast subscription
/// bind.
pub const CONSUMES: &[EventType] = &[
    EventType::MessageSent,
    EventType::MemberRemoved,
    EventType::MemberExpired,
    EventType::AccountDeleted,
    EventType::AccountDisabled,
    EventType::InboxChanged,
];

/// What the node knows of this service before starting it.
pub const SERVICE: tenantry_events::ServiceInfo = tenantry_events::ServiceInfo {
    name: "notification",
    grpc_name: SERVICE_NAME,
    consumes: CONSUMES,
    consumer_groups: &[
        consumers::FANOUT_GROUP,
        consumers::MEMBERSHIP_EVENTS_GROUP,
        consumers::ACCOUNT_EVENTS_GROUP,
    ],
    calls: &[
        tenantry_events::Peer::Membership,
        tenantry_events::Peer::Registry,
    ],
    migrate: tenantry_events::kernel::migrate_with::<Migrator>,
};

/// What each consumer group binds, and what the WatchInbox subscription binds.
const FANOUT_TYPES: &[EventType] = &[EventType::MessageSent];
/// `member.expired` is the expiry sweep's removal: bound with `member.removed`, handled alike.
const MEMBERSHIP_TYPES: &[EventType] = &[EventType::MemberRemoved, EventType::MemberExpired];
const ACCOUNT_TYPES: &[EventType] = &[EventType::AccountDeleted, EventType::AccountDisabled];
const INBOX_TYPES: &[EventType] = &[EventType::InboxChanged];

/// Deliveries expired per sweep transaction (and messages per sweep transaction).
const SWEEP_BATCH: u64 = 500;

/// The notification service's settings.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "notification")]
pub struct Config {
    /// Members read per membership page and deliveries written per fan-out transaction.
    #[arg(
        long = "fanout-batch",
        env = "TENANTRY_FANOUT_BATCH",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub fanout_batch: u32,
    /// How often expired messages are removed from inboxes, in seconds.
    #[arg(
        id = "message_sweep_seconds",
        long = "message-sweep-seconds",
        env = "TENANTRY_MESSAGE_SWEEP_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sweep_interval_seconds: u64,
    /// Most items in a WatchInbox snapshot (more → `truncated`).
    #[arg(
        long = "max-inbox-snapshot",
        env = "TENANTRY_MAX_INBOX_SNAPSHOT",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub max_inbox_snapshot: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fanout_batch: 500,
            sweep_interval_seconds: 60,
            max_inbox_snapshot: 1000,
        }
    }
}

/// What the notification service needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Deps {
    /// The service's own database.
    pub database: tenantry_platform::db::Database,
    /// Membership's `Authorize`.
    pub authorizer: tenantry_platform::authz::Authorizer,
    /// Membership (ListMembers for the fan-out), with this service's identity.
    pub membership: MembershipServiceClient<tenantry_platform::clients::ServiceChannel>,
    /// The customer registry (the partner and its customers), with this service's identity.
    pub registry: CustomerRegistryServiceClient<tenantry_platform::clients::ServiceChannel>,
    /// Signs and checks page tokens.
    pub page_tokens: tenantry_platform::pagination::PageTokens,
    /// Where state changes append their events.
    pub outbox: tenantry_events::Outbox,
    /// Where the fan-out counts `tenantry_deliveries_written_total` (`Metrics::default()`: a
    /// registry nobody scrapes).
    pub metrics: tenantry_platform::metrics::Metrics,
}

/// The consumer groups of this service: `tenantry.notification.fanout` (message.sent → record
/// fan-out jobs, then wake this instance's fan-out workers),
/// `tenantry.notification.membership-events` (member.removed, member.expired → withdraw),
/// `tenantry.notification.account-events` (account.deleted, account.disabled → withdraw).
fn consumers(deps: &Deps, wake: &FanoutWake) -> Vec<ConsumerSpec> {
    let database = || deps.database.clone();
    vec![
        ConsumerSpec::new(
            consumers::FANOUT_GROUP,
            FANOUT_TYPES,
            database(),
            consumers::FanoutJobs::new(wake.clone()),
        ),
        ConsumerSpec::new(
            consumers::MEMBERSHIP_EVENTS_GROUP,
            MEMBERSHIP_TYPES,
            database(),
            consumers::MembershipEvents::new(deps.outbox.clone()),
        ),
        ConsumerSpec::new(
            consumers::ACCOUNT_EVENTS_GROUP,
            ACCOUNT_TYPES,
            database(),
            consumers::AccountEvents::new(deps.outbox.clone()),
        ),
    ]
}

/// Fan-out workers per process. A message to many accounts is one job per account; one
/// worker wrote them one page after another, waiting on membership and on each commit in turn,
/// while the database and membership sat mostly idle. Several workers write different jobs at
/// once (claims skip jobs another worker holds).
pub const FANOUT_WORKERS: usize = 4;

/// The fan-out workers: claim pending fan-out jobs and write deliveries in batches until
/// shutdown, woken through `wake`. Wait quietly while the database is not ready.
async fn run_fanout_workers(config: Config, deps: Deps, wake: FanoutWake, shutdown: Shutdown) {
    let store = Store::new(deps.database.clone(), deps.outbox.clone());
    let members: Arc<dyn peers::MemberSource> =
        Arc::new(peers::Membership::new(deps.membership.clone()));
    let workers = (0..FANOUT_WORKERS).map(|_| {
        worker::run_fanout(
            store.clone(),
            members.clone(),
            config.fanout_batch,
            wake.clone(),
            shutdown.clone(),
            deps.metrics.clone(),
        )
    });
    futures::future::join_all(workers).await;
}

/// Marks expired messages and removes them from inboxes (`message.expired` +
/// `inbox.changed`) every sweep interval until shutdown: messages first, then deliveries.
async fn run_expiry_sweep(config: Config, deps: Deps, shutdown: Shutdown) {
    let store = Store::new(deps.database.clone(), deps.outbox.clone());
    let interval = Duration::from_secs(config.sweep_interval_seconds.max(1));
    sweep::run_every(interval, deps.database.clone(), shutdown, || {
        let store = store.clone();
        async move {
            let now = tenantry_platform::time::now();
            sweep::drain("messages", SWEEP_BATCH, |limit| {
                store.expire_due_messages(now, limit)
            })
            .await;
            sweep::drain("deliveries", SWEEP_BATCH, |limit| {
                store.expire_due_deliveries(now, limit)
            })
            .await;
        }
    })
    .await;
}

/// Starts the notification service in `ctx`'s node: its handlers, the event consumers, the
/// fan-out workers, the expiry sweep, the per-replica inbox hub for WatchInbox, and its health
/// following its database.
pub fn start(config: Config, ctx: &ServiceContext) -> Result<Started, StartError> {
    let membership_channel = ctx.peer(Peer::Membership)?;
    let deps = Deps {
        database: ctx.database.clone(),
        authorizer: tenantry_platform::authz::Authorizer::new(membership_channel.clone())
            .with_view(&ctx.view)
            .reporting_to(ctx.readiness.clone()),
        membership: MembershipServiceClient::new(membership_channel),
        registry: CustomerRegistryServiceClient::new(ctx.peer(Peer::Registry)?),
        page_tokens: ctx.page_tokens.clone(),
        outbox: ctx.outbox.clone(),
        metrics: ctx.metrics.clone(),
    };
    // One waker per instance: this instance's consumer wakes this instance's workers.
    let wake = FanoutWake::new();
    let mut tasks = vec![ctx.follow_database::<Migrator>(SERVICE_NAME)];
    tasks.extend(
        consumers(&deps, &wake)
            .into_iter()
            .map(|spec| ctx.consume(spec)),
    );
    let fanout = run_fanout_workers(config.clone(), deps.clone(), wake, ctx.shutdown.clone());
    tasks.push(ctx.spawn(fanout));
    let sweep = run_expiry_sweep(config.clone(), deps.clone(), ctx.shutdown.clone());
    tasks.push(ctx.spawn(sweep));
    // Old rows of bounded tables (request ids, processed events, removed members) are pruned
    // after their retention.
    tasks.push(ctx.prune(store::prune_targets(
        &tenantry_platform::retention::settings(),
    )));
    // Every replica sees every inbox change, for its own WatchInbox streams.
    let hub = InboxHub::new();
    let subscription = ctx.subscribe(
        "tenantry.notification.inbox",
        tenantry_events::routing_keys(INBOX_TYPES),
    );
    tasks.push(ctx.spawn(hub.clone().run(subscription)));
    let service = NotificationServiceServer::new(api::NotificationApi::new(config, deps, hub))
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
    fn consumes_lists_every_binding() {
        let mut bound: Vec<EventType> =
            [FANOUT_TYPES, MEMBERSHIP_TYPES, ACCOUNT_TYPES, INBOX_TYPES].concat();
        bound.sort();
        let mut consumes = CONSUMES.to_vec();
        consumes.sort();
        assert_eq!(bound, consumes);
    }

    #[test]
    fn flags_and_defaults() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["notification"]).unwrap();
        let defaults = Config::default();
        assert_eq!(cli.config.fanout_batch, defaults.fanout_batch);
        assert_eq!(cli.config.fanout_batch, 500);
        assert_eq!(cli.config.sweep_interval_seconds, 60);
        assert_eq!(cli.config.max_inbox_snapshot, 1000);
        let cli = Cli::try_parse_from(["notification", "--fanout-batch", "100"]).unwrap();
        assert_eq!(cli.config.fanout_batch, 100);
        assert!(Cli::try_parse_from(["notification", "--fanout-batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["notification", "--fanout-batch", "5000"]).is_err());
    }
}
