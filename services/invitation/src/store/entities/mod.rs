//! sea-orm entities of the invitation service's tables.

pub mod invitation;
pub mod request_id;
