//! The customer registry: accounts, partners and their managed customers.
//!
//! It owns the `accounts` table: identifiers (immutable, unique for ever), display names,
//! the partner flag, `managed_by`, and the lifecycle ACTIVE → DISABLED → DELETED (soft).
//! Account-scoped calls are authorized by membership's `Authorize`; operator-only calls check
//! the caller's operator role here.

pub mod api;
pub mod domain;
pub mod events;
pub mod store;
pub mod wire;

pub use store::migrations::Migrator;

use tenantry_proto::registry::v1::customer_registry_service_server::CustomerRegistryServiceServer;

use crate::domain::identifier::{MAX_ACCOUNT_ID_LENGTH, MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH};

/// The fully qualified gRPC service name (for health and reflection).
pub const SERVICE_NAME: &str = "tenantry.registry.v1.CustomerRegistryService";

/// The registry's own settings.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "customer-registry")]
pub struct Config {
    /// Longest account identifier accepted (16..=32).
    #[arg(
        long = "max-account-id-length",
        env = "TENANTRY_MAX_ACCOUNT_ID_LENGTH",
        default_value_t = 32,
        value_parser = clap::value_parser!(u8).range(16..=32)
    )]
    pub max_account_id_length: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_account_id_length: MAX_ACCOUNT_ID_LENGTH as u8,
        }
    }
}

/// The event types the registry consumes: none (it only publishes `account.*`).
pub const CONSUMES: &[tenantry_proto::EventType] = &[];

/// What the node knows of this service before starting it.
pub const SERVICE: tenantry_events::ServiceInfo = tenantry_events::ServiceInfo {
    name: "customer-registry",
    grpc_name: SERVICE_NAME,
    consumes: CONSUMES,
    consumer_groups: &[],
    calls: &[tenantry_events::Peer::Membership],
    migrate: tenantry_events::kernel::migrate_with::<Migrator>,
};

/// Starts the registry in `ctx`'s node: its handlers (account-scoped calls authorized by
/// membership, changes published through the node's outbox), and its health following its
/// database.
pub fn start(
    config: Config,
    ctx: &tenantry_events::ServiceContext,
) -> Result<tenantry_events::Started, tenantry_events::StartError> {
    use tenantry_events::Peer;
    // Clap enforces the range; a Config built in code is clamped to it.
    let max_account_id_length = usize::from(config.max_account_id_length).clamp(
        MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH,
        MAX_ACCOUNT_ID_LENGTH,
    );
    let api = api::RegistryApi::new(
        max_account_id_length,
        store::Store::new(ctx.database.clone(), ctx.outbox.clone()).with_view(&ctx.view),
        tenantry_platform::authz::Authorizer::new(ctx.peer(Peer::Membership)?)
            .with_view(&ctx.view)
            .reporting_to(ctx.readiness.clone()),
        ctx.page_tokens.clone(),
    );
    let service =
        CustomerRegistryServiceServer::new(api).max_decoding_message_size(ctx.max_request_bytes);
    Ok(
        tenantry_events::Started::serving(tonic::service::Routes::new(service)).with_tasks([
            ctx.follow_database::<Migrator>(SERVICE_NAME),
            // Old rows of bounded tables (request ids) are pruned after their retention.
            ctx.prune(store::prune_targets(
                &tenantry_platform::retention::settings(),
            )),
        ]),
    )
}
