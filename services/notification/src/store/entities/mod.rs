//! sea-orm entities of the notification service's tables.

pub mod delivery;
pub mod fanout_job;
pub mod message;
pub mod receipt;
pub mod recipient_account;
pub mod removed_member;
