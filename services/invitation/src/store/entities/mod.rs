//! sea-orm entities of the invitation service's tables.

pub mod guess;
pub mod invitation;
