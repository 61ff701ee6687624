//! The sea-orm entities of the audit tables.

pub mod chain;
pub mod entry;
pub mod tombstone;
