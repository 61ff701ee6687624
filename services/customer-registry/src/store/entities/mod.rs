//! The registry's tables as sea-orm entities (its `registry_request_ids` table is read and
//! written through `tenantry_platform::idempotency::RequestIds`).

pub mod account;
