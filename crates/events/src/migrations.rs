//! The migrations of the two tables this crate owns (and of the index that prunes one). Each service includes them in its own
//! Migrator (after its own migrations), so the tables live in the service's database and its
//! migration bookkeeping; the schema builder keeps them valid on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

/// Migrations every service that publishes includes in its own Migrator (after its own):
/// creates `outbox` (seq BIGINT autoincrement PK, event_id UUID-as-text unique, event_type,
/// source, time, payload BLOB/BYTEA, traceparent, tracestate, create_time).
pub fn outbox_migration() -> Box<dyn MigrationTrait> {
    Box::new(CreateOutbox)
}

/// Migration every service that consumes includes: creates `processed_events`
/// (consumer_group, event_id) PK + handled_time — the consumer idempotency record.
pub fn processed_events_migration() -> Box<dyn MigrationTrait> {
    Box::new(CreateProcessedEvents)
}

/// Migration every service that includes [`processed_events_migration`] also includes (after
/// it): the index `processed_events_by_handled_time` that the pruner's batches use
/// ([`crate::retention::processed_events_target`]), built with a plain `CREATE INDEX` (see
/// `tenantry_platform::retention::create_index_if_missing` for why not concurrently).
pub fn processed_events_retention_migration() -> Box<dyn MigrationTrait> {
    Box::new(IndexProcessedEventsByTime)
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    EventId,
    EventType,
    Source,
    Time,
    Payload,
    Traceparent,
    Tracestate,
    CreateTime,
}

#[derive(DeriveIden)]
enum ProcessedEvents {
    Table,
    ConsumerGroup,
    EventId,
    HandledTime,
}

struct CreateOutbox;

impl MigrationName for CreateOutbox {
    // Stable names: they are recorded in each service's migration table.
    fn name(&self) -> &str {
        "events_m0001_create_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Outbox::EventId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Outbox::EventType).string().not_null())
                    .col(ColumnDef::new(Outbox::Source).string().not_null())
                    .col(
                        ColumnDef::new(Outbox::Time)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Outbox::Payload).blob().not_null())
                    .col(ColumnDef::new(Outbox::Traceparent).string().null())
                    .col(ColumnDef::new(Outbox::Tracestate).string().null())
                    .col(
                        ColumnDef::new(Outbox::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}

struct CreateProcessedEvents;

impl MigrationName for CreateProcessedEvents {
    fn name(&self) -> &str {
        "events_m0002_create_processed_events"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProcessedEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessedEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ProcessedEvents::ConsumerGroup)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::EventId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::HandledTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ProcessedEvents::ConsumerGroup)
                            .col(ProcessedEvents::EventId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProcessedEvents::Table).to_owned())
            .await
    }
}

struct IndexProcessedEventsByTime;

impl MigrationName for IndexProcessedEventsByTime {
    fn name(&self) -> &str {
        "events_m0003_processed_events_by_handled_time"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexProcessedEventsByTime {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tenantry_platform::retention::create_index_if_missing(
            manager.get_connection(),
            crate::retention::PROCESSED_EVENTS_TIME_INDEX,
            "processed_events",
            &["handled_time"],
            None,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(crate::retention::PROCESSED_EVENTS_TIME_INDEX)
                    .table(ProcessedEvents::Table)
                    .to_owned(),
            )
            .await
    }

    // Outside a transaction, as it was written for a concurrent build (see create_index_if_missing).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
