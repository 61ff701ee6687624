//! Membership: who holds which role in which account, the user directory, and `Authorize`,
//! the authorization decision every other Tenantry service asks for (DESIGN.md §2, §5).
//! Publishes `member.*` and keeps a replica of account facts from `account.*` (§6).

pub mod accounts;
pub mod api;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod store;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use tenantry_proto::membership::v1::membership_service_server::MembershipServiceServer;

pub use accounts::{AccountDirectory, AccountSource, RegistryAccounts, ReplicatedAccounts};
pub use domain::{AccountFacts, AccountState, VersionedFacts};
pub use store::migrations::Migrator;

/// The gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "tenantry.membership.v1.MembershipService";

/// The role `AddMyself` gives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddMyselfRole {
    /// OWNER (still at most 2 per account).
    Owner,
    /// ADMIN (the default).
    #[default]
    Admin,
    /// EMPLOYEE.
    Employee,
}

impl AddMyselfRole {
    /// The domain role.
    pub fn role(self) -> domain::Role {
        match self {
            AddMyselfRole::Owner => domain::Role::Owner,
            AddMyselfRole::Admin => domain::Role::Admin,
            AddMyselfRole::Employee => domain::Role::Employee,
        }
    }
}

/// Membership's settings.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "membership")]
pub struct Config {
    /// Role given by AddMyself.
    #[arg(
        long = "add-myself-role",
        env = "TENANTRY_ADD_MYSELF_ROLE",
        value_enum,
        default_value_t = AddMyselfRole::Admin
    )]
    pub add_myself_role: AddMyselfRole,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            add_myself_role: AddMyselfRole::Admin,
        }
    }
}

/// What membership needs from its surroundings.
#[derive(Clone, Debug)]
pub struct Deps {
    /// Membership's own database.
    pub database: tenantry_platform::db::Database,
    /// Account facts (display name, partner, managed_by, state) of the customer registry's
    /// accounts; in a node, [`ReplicatedAccounts`] over membership's own database.
    pub accounts: Arc<dyn AccountDirectory>,
    /// Signs and checks page tokens.
    pub page_tokens: tenantry_platform::pagination::PageTokens,
    /// Where `member.*` events are appended, in the transaction of each change.
    pub outbox: tenantry_events::Outbox,
}

/// The gRPC service, refusing requests larger than `max_request_bytes`.
pub fn grpc_service(
    config: Config,
    deps: Deps,
    max_request_bytes: usize,
) -> MembershipServiceServer<api::MembershipApi> {
    MembershipServiceServer::new(api::MembershipApi::new(config, deps))
        .max_decoding_message_size(max_request_bytes)
}

/// Membership's consumer groups: `tenantry.membership.accounts`, bound to the `account.*`
/// events, keeps the account replica in membership's database and drops the members of
/// deleted accounts.
pub fn consumers(deps: &Deps) -> Vec<tenantry_events::ConsumerSpec> {
    vec![tenantry_events::ConsumerSpec {
        group: consumers::ACCOUNTS_GROUP.to_string(),
        bindings: consumers::ACCOUNT_EVENTS
            .iter()
            .map(|binding| binding.to_string())
            .collect(),
        database: deps.database.clone(),
        handler: Arc::new(consumers::AccountReplicaHandler),
    }]
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn add_myself_role_flag() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["membership", "--add-myself-role", "employee"]).unwrap();
        assert_eq!(cli.config.add_myself_role.role(), domain::Role::Employee);
        assert!(Cli::try_parse_from(["membership", "--add-myself-role", "boss"]).is_err());
        assert_eq!(Config::default().add_myself_role, AddMyselfRole::Admin);
    }
}
