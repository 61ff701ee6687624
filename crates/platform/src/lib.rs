//! What every Tenantry service shares, written once: configuration, logging, the gRPC server
//! bootstrap (health, reflection, limits, graceful shutdown), authentication, the mapping from
//! errors to `tonic::Status`, Prometheus metrics and the admin port, the database handle and
//! migrations, page tokens, resource names, the `request_id` idempotency rules, and the client
//! side of membership's `Authorize`.

pub mod auth;
pub mod authz;
pub mod clients;
pub mod config;
pub mod db;
mod edge;
pub mod email;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod names;
pub mod pagination;
pub mod server;
pub mod telemetry;
pub mod text;
pub mod time;
pub mod tls;

pub use auth::{Authenticator, Principal, ServiceIdentity, UserIdentity};
pub use error::ApiError;
