//! What every Tenantry service shares, written once: configuration, logging, the gRPC server
//! bootstrap (health, reflection, limits, graceful shutdown), authentication, the mapping from
//! errors to `tonic::Status`, Prometheus metrics and the admin port, the database handle and
//! migrations, page tokens, resource names, the `request_id` idempotency rules, the client
//! side of membership's `Authorize` and the local view that keeps its answers.

pub mod account_state;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod call_context;
pub mod clients;
pub mod config;
pub mod db;
mod edge;
pub mod email;
pub mod error;
pub mod etag;
pub mod idempotency;
pub mod key_locks;
pub mod metrics;
pub mod names;
pub mod pagination;
pub mod retention;
pub mod role;
pub mod secrets;
pub mod server;
pub mod sweep;
pub mod telemetry;
pub mod testing;
pub mod text;
pub mod time;
pub mod tls;
pub mod validation;
pub mod view;

pub use account_state::AccountState;
pub use auth::{Authenticator, Principal, ServiceIdentity, UserIdentity};
pub use error::ApiError;
pub use names::{AccountId, UserId};
pub use role::Role;
pub use validation::Violations;
