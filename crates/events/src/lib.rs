//! Tenantry's events (DESIGN.md §6): a transactional outbox, a relay that publishes outbox rows
//! with publisher confirms, and a consumer runtime with idempotency, retry through a delay
//! queue and dead letters, over RabbitMQ ([`AmqpBus`]) or an in-process bus ([`InProcessBus`],
//! for `tenantry up`), plus broadcast subscriptions ([`EventBus::subscribe`]) for live pushes.
//! The outbox, relay and consumer logic is shared; only the transport differs.

mod amqp;
mod broadcast;
mod bus;
mod consumer;
mod entities;
mod envelope;
mod error;
mod in_process;
pub mod kernel;
mod migrations;
mod outbox;
mod relay;
pub mod retention;
mod revocations;
pub mod view_feed;

pub use amqp::{AmqpBus, AmqpConfig, event_from_amqp, group_queues};
pub use broadcast::Subscription;
pub use bus::EventBus;
pub use consumer::{
    Batch, BatchFailure, ConsumerSpec, Handled, Handler, Prepared, RetryPolicy, routing_keys,
};
pub use envelope::Event;
pub use error::{HandlerError, HandlerFailure, PublishError};
pub use in_process::InProcessBus;
pub use kernel::{Peer, ServiceContext, ServiceInfo, StartError, Started};
pub use migrations::{
    outbox_migration, processed_events_migration, processed_events_retention_migration,
};
pub use outbox::{Outbox, OutboxTransaction, WriteFuture};
pub use relay::{Publisher, Relay};
pub use revocations::{Revocations, Revoked};
pub use view_feed::{FreshnessSettings, spawn_heartbeats, spawn_view_feed};
