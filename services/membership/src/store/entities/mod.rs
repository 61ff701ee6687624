//! sea-orm entities of membership's tables.

pub mod account_member_count;
pub mod account_replica;
pub mod member;
pub mod user;
