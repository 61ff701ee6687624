//! The audit service: the only writer of an append-only, hash-chained log of every change to
//! every account (DESIGN.md §9), readable per account, streamed to integrations, verifiable.
//!
//! It consumes every event type but `inbox.changed` on one durable queue
//! ([`consumers::LOG_GROUP`]) and appends one entry per event ([`store::append`]); the rules of
//! what an entry records are in [`domain`]. Reads are authorized by membership's `Authorize`
//! (`PERMISSION_AUDIT_READ`); purging is for operators and leaves a signed tombstone.

pub mod api;
pub mod consumers;
pub mod domain;
pub mod hub;
pub mod store;
pub mod wire;

use std::sync::Arc;

use tenantry_events::{ConsumerSpec, Peer, ServiceContext, StartError, Started};
use tenantry_proto::EventType;
use tenantry_proto::audit::v1::audit_service_server::AuditServiceServer;

pub use api::TombstoneKeys;
pub use store::migrations::Migrator;

/// The fully qualified gRPC service name (for health and reflection).
pub const SERVICE_NAME: &str = "tenantry.audit.v1.AuditService";

/// Every type the log records: all but `inbox.changed` (a test holds it to
/// [`domain::audited_types`], so a new event type cannot be forgotten).
pub const CONSUMES: &[EventType] = &[
    EventType::AccountCreated,
    EventType::AccountUpdated,
    EventType::AccountPromotedToPartner,
    EventType::AccountDisabled,
    EventType::AccountEnabled,
    EventType::AccountDeleted,
    EventType::MemberAdded,
    EventType::MemberUpdated,
    EventType::MemberRemoved,
    EventType::MemberExpired,
    EventType::AccessPolicyUpdated,
    EventType::AccessRequestCreated,
    EventType::AccessRequestApproved,
    EventType::AccessRequestDeclined,
    EventType::AccessRequestCancelled,
    EventType::InvitationCreated,
    EventType::InvitationResent,
    EventType::InvitationAccepted,
    EventType::InvitationRevoked,
    EventType::InvitationExpired,
    EventType::InvitationDeclined,
    EventType::MessageSent,
    EventType::MessageAcknowledged,
    EventType::MessageResolved,
    EventType::MessageExpired,
];

/// What the node knows of this service before starting it.
pub const SERVICE: tenantry_events::ServiceInfo = tenantry_events::ServiceInfo {
    name: "audit",
    grpc_name: SERVICE_NAME,
    consumes: CONSUMES,
    consumer_groups: &[consumers::LOG_GROUP],
    calls: &[Peer::Membership],
    migrate: tenantry_events::kernel::migrate_with::<Migrator>,
};

/// The audit service's own settings.
#[derive(clap::Args, Clone, Default)]
#[group(id = "audit")]
pub struct Config {
    /// The key that signs purge tombstones (a secret: environment or `_FILE` only). Unset:
    /// derived from the internal secret (so a tombstone no longer verifies once that secret was
    /// rotated twice since the purge).
    #[arg(skip = tenantry_platform::secrets::from_env("TENANTRY_AUDIT_TOMBSTONE_KEY"))]
    pub tombstone_key: Option<String>,
    /// A tombstone key still accepted when verifying, never used to sign (during a rotation).
    #[arg(skip = tenantry_platform::secrets::from_env("TENANTRY_AUDIT_TOMBSTONE_KEY_PREVIOUS"))]
    pub tombstone_key_previous: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: &Option<String>| if value.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("tombstone_key", &set(&self.tombstone_key))
            .field("tombstone_key_previous", &set(&self.tombstone_key_previous))
            .finish()
    }
}

/// Starts the audit service in `ctx`'s node: its handlers, the consumer that keeps the log,
/// and its health following its database. `keys` sign purge tombstones.
pub fn start(keys: TombstoneKeys, ctx: &ServiceContext) -> Result<Started, StartError> {
    let hub = Arc::new(hub::EntryHub::new());
    let authorizer = tenantry_platform::authz::Authorizer::new(ctx.peer(Peer::Membership)?)
        .with_view(&ctx.view)
        .reporting_to(ctx.readiness.clone());
    let api = api::AuditApi::new(
        store::Store::new(ctx.database.clone()),
        authorizer,
        ctx.page_tokens.clone(),
        hub.clone(),
        keys,
        ctx.shutdown.clone(),
    );
    let service = AuditServiceServer::new(api).max_decoding_message_size(ctx.max_request_bytes);
    let log = ConsumerSpec::new(
        consumers::LOG_GROUP,
        CONSUMES,
        ctx.database.clone(),
        consumers::AuditLog::new(hub),
    );
    Ok(
        Started::serving(tonic::service::Routes::new(service)).with_tasks([
            ctx.follow_database::<Migrator>(SERVICE_NAME),
            ctx.consume(log),
            ctx.prune(store::prune_targets(
                &tenantry_platform::retention::settings(),
            )),
        ]),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_type_but_inbox_changes_is_consumed() {
        assert_eq!(super::CONSUMES, super::domain::audited_types().as_slice());
    }
}
