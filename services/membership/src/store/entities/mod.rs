//! sea-orm entities of membership's tables.

pub mod access_policy;
pub mod access_request;
pub mod access_request_approval;
pub mod access_request_approver;
pub mod account_member_count;
pub mod account_replica;
pub mod member;
pub mod user;
