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

/// What the registry needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Deps {
    /// The registry's own database (migrated with [`Migrator`]).
    pub database: tenantry_platform::db::Database,
    /// Membership's `Authorize`, for account-scoped calls.
    pub authorizer: tenantry_platform::authz::Authorizer,
    /// Signs and checks page tokens.
    pub page_tokens: tenantry_platform::pagination::PageTokens,
    /// Where `account.*` events are appended, in the transaction of each change.
    pub outbox: tenantry_events::Outbox,
}

/// The gRPC service, refusing requests larger than `max_request_bytes`.
pub fn grpc_service(
    config: Config,
    deps: Deps,
    max_request_bytes: usize,
) -> CustomerRegistryServiceServer<api::RegistryApi> {
    // Clap enforces the range; a Config built in code is clamped to it.
    let max_account_id_length = usize::from(config.max_account_id_length).clamp(
        MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH,
        MAX_ACCOUNT_ID_LENGTH,
    );
    let api = api::RegistryApi::new(
        max_account_id_length,
        store::Store::new(deps.database, deps.outbox),
        deps.authorizer,
        deps.page_tokens,
    );
    CustomerRegistryServiceServer::new(api).max_decoding_message_size(max_request_bytes)
}

/// Starts the registry in `ctx`'s node: its handlers, and its health following its database.
pub fn start(
    config: Config,
    ctx: &tenantry_events::ServiceContext,
) -> Result<tenantry_events::Started, tenantry_events::StartError> {
    use tenantry_events::Peer;
    let deps = Deps {
        database: ctx.database.clone(),
        authorizer: tenantry_platform::authz::Authorizer::new(ctx.peer(Peer::Membership)?),
        page_tokens: ctx.page_tokens.clone(),
        outbox: ctx.outbox.clone(),
    };
    let routes = tonic::service::Routes::new(grpc_service(config, deps, ctx.max_request_bytes));
    Ok(tenantry_events::Started::serving(routes)
        .with_tasks([ctx.follow_database::<Migrator>(SERVICE_NAME)]))
}
