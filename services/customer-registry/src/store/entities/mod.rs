//! The registry's tables as sea-orm entities.

pub mod account;
pub mod request_id;
