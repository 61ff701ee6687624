//! The sea-orm entities of the two tables this crate owns (created by [`crate::migrations`]).

/// The `outbox` table: events written with the state change, waiting for the relay.
pub(crate) mod outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Insertion order: the relay publishes in this order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// The event id as text (UUIDs are text on SQLite; one representation for both).
        #[sea_orm(unique)]
        pub event_id: String,
        pub event_type: String,
        pub source: String,
        pub time: ChronoDateTimeUtc,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub tracestate: Option<String>,
        pub create_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `processed_events` table: the event ids each consumer group has handled.
pub(crate) mod processed_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer_group: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub handled_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
