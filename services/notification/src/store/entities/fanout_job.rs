//! `fanout_jobs`: one per (message, recipient account); the worker pages through the
//! account's members from `page_token` on.

use sea_orm::entity::prelude::*;

/// A fan-out job.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "fanout_jobs")]
pub struct Model {
    /// The message.
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The recipient account whose members get it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// ListMembers token of the next page to fan out; empty = the first page.
    pub page_token: String,
    /// No page left (or nothing to do any more: account withdrawn, message expired).
    pub done: bool,
    /// Pages written so far.
    pub pages: i64,
    /// A worker holds the job until then (several replicas); NULL = free.
    pub lease_until: Option<DateTimeUtc>,
    /// When the row last changed.
    pub update_time: DateTimeUtc,
    /// W3C `traceparent` of the consumer that recorded the job (the SendMessage's trace).
    pub traceparent: Option<String>,
    /// W3C `tracestate` to go with it.
    pub tracestate: Option<String>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
