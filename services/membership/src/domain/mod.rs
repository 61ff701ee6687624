//! The membership rules, free of I/O: sources, account facts, who may do what
//! ([`authorize`], from a caller's standing in an account: [`access`]), how OWNERs may change
//! ([`owners`]) and the rules of each membership RPC ([`members`]). Roles are the platform's
//! [`Role`].

pub mod access;
pub mod authorize;
mod error;
pub mod expiry;
pub mod members;
pub mod owners;
pub mod policy;
pub mod requests;

use chrono::{DateTime, Utc};
use tenantry_platform::{AccountId, UserId};

pub use error::MembershipError;

pub use tenantry_platform::Role;

/// How a membership came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberSource {
    /// Added by AddMember.
    Direct,
    /// A partner member added themself with AddMyself.
    SelfAssigned,
    /// Joined by accepting an invitation (AddMember from the invitation service).
    Invitation,
}

impl MemberSource {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberSource::Direct => "DIRECT",
            MemberSource::SelfAssigned => "SELF_ASSIGNED",
            MemberSource::Invitation => "INVITATION",
        }
    }

    /// The source spelled `text` in the database.
    pub fn parse(text: &str) -> Option<MemberSource> {
        match text {
            "DIRECT" => Some(MemberSource::Direct),
            "SELF_ASSIGNED" => Some(MemberSource::SelfAssigned),
            "INVITATION" => Some(MemberSource::Invitation),
            _ => None,
        }
    }
}

/// An account's lifecycle state, as the customer registry reports it.
pub use tenantry_platform::AccountState;

/// What membership needs to know about an account (owned by the customer registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFacts {
    /// The account's identifier.
    pub account_id: AccountId,
    /// The name shown to people.
    pub display_name: String,
    /// Whether the account is a partner.
    pub partner: bool,
    /// The managing partner's account id, for a managed customer.
    pub managed_by: Option<AccountId>,
    /// Lifecycle state.
    pub state: AccountState,
}

/// Account facts at a version of the registry's account (its etag), so that a copy is only
/// ever replaced by a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedFacts {
    /// The facts.
    pub facts: AccountFacts,
    /// The registry's version of the account (the etag as an integer).
    pub version: i64,
    /// When the registry last changed the account.
    pub update_time: DateTime<Utc>,
}

/// A permission asked about in `Authorize` (and checked locally by membership's own RPCs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read the account.
    AccountRead,
    /// Update, disable, enable the account.
    AccountUpdate,
    /// Delete the account.
    AccountDelete,
    /// List and read members.
    MembersList,
    /// Add, update, remove non-OWNER members.
    MembersManage,
    /// Grant, revoke, remove OWNER.
    OwnersManage,
    /// Create and manage invitations.
    InvitationsManage,
    /// AddMyself to a managed customer.
    AddMyself,
    /// Create customers of a partner.
    CustomersCreate,
    /// List customers of a partner.
    CustomersList,
    /// Send messages from a partner.
    MessagesSend,
    /// List messages of a partner.
    MessagesList,
    /// Read the account's audit trail.
    AuditRead,
}

impl Permission {
    /// Every permission, for exhaustive tests.
    pub const ALL: [Permission; 13] = [
        Permission::AccountRead,
        Permission::AccountUpdate,
        Permission::AccountDelete,
        Permission::MembersList,
        Permission::MembersManage,
        Permission::OwnersManage,
        Permission::InvitationsManage,
        Permission::AddMyself,
        Permission::CustomersCreate,
        Permission::CustomersList,
        Permission::MessagesSend,
        Permission::MessagesList,
        Permission::AuditRead,
    ];

    /// Whether a decision on this permission depends only on the caller's roles (in the
    /// account and its managing partner) and the account's facts, so a local view may keep it
    /// until a `member.*` event about the caller or an `account.*` event about the account.
    /// OWNERS_MANAGE also depends on whether the account has an OWNER, which a change to
    /// another member alters.
    pub fn keepable(self) -> bool {
        self != Permission::OwnersManage
    }

    /// The name used in log reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::AccountRead => "ACCOUNT_READ",
            Permission::AccountUpdate => "ACCOUNT_UPDATE",
            Permission::AccountDelete => "ACCOUNT_DELETE",
            Permission::MembersList => "MEMBERS_LIST",
            Permission::MembersManage => "MEMBERS_MANAGE",
            Permission::OwnersManage => "OWNERS_MANAGE",
            Permission::InvitationsManage => "INVITATIONS_MANAGE",
            Permission::AddMyself => "ADD_MYSELF",
            Permission::CustomersCreate => "CUSTOMERS_CREATE",
            Permission::CustomersList => "CUSTOMERS_LIST",
            Permission::MessagesSend => "MESSAGES_SEND",
            Permission::MessagesList => "MESSAGES_LIST",
            Permission::AuditRead => "AUDIT_READ",
        }
    }
}

/// Who is calling one of membership's own RPCs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Another Tenantry service (trusted: it authorized its own caller).
    Service {
        /// The service's name, e.g. `invitation`.
        name: String,
    },
    /// A person.
    User {
        /// The token's `sub`.
        user_id: UserId,
        /// Whether the token carries the operator role.
        operator: bool,
    },
}

impl Caller {
    /// `users/{sub}` or `services/{name}`, for `added_by` and request-id ownership.
    pub fn resource_name(&self) -> String {
        match self {
            Caller::Service { name } => format!("services/{name}"),
            Caller::User { user_id, .. } => user_id.name(),
        }
    }

    /// The person's user id, `None` for a service.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Caller::User { user_id, .. } => Some(user_id),
            Caller::Service { .. } => None,
        }
    }

    /// Whether the caller is a platform operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::User { operator: true, .. })
    }
}

/// A user's directory entry, from their latest token claims (empty strings when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserProfile {
    /// The `email` claim.
    pub email: String,
    /// The `given_name` claim.
    pub given_name: String,
    /// The `family_name` claim.
    pub family_name: String,
}

/// A membership, with the member's directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The account.
    pub account_id: AccountId,
    /// The user (`sub`).
    pub user_id: UserId,
    /// The role.
    pub role: Role,
    /// How the membership came about.
    pub source: MemberSource,
    /// `users/{sub}` or `services/{name}` of whoever added the member.
    pub added_by: String,
    /// When the membership was created.
    pub create_time: DateTime<Utc>,
    /// When the role last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic-concurrency version; the etag.
    pub version: i64,
    /// When a time-bound membership ends (see [`expiry`]); `None`: no end.
    pub expire_time: Option<DateTime<Utc>>,
    /// The member's directory entry (empty if they never called Tenantry).
    pub profile: UserProfile,
}

/// A membership about to be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    /// The account.
    pub account_id: AccountId,
    /// The user (`sub`).
    pub user_id: UserId,
    /// The role.
    pub role: Role,
    /// How the membership comes about.
    pub source: MemberSource,
    /// `users/{sub}` or `services/{name}` of the caller.
    pub added_by: String,
    /// When it ends, if it is time-bound.
    pub expire_time: Option<DateTime<Utc>>,
}

pub use tenantry_platform::email::normalize_email;

/// Checks the shape of an e-mail address given to AddMember (the platform's rule, the one the
/// invitation service applies to the addresses it invites) and returns its lookup form.
pub fn validate_email(email: &str) -> Result<String, String> {
    tenantry_platform::email::validate_email(email).map(|email| normalize_email(&email))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Employee] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for source in [
            MemberSource::Direct,
            MemberSource::SelfAssigned,
            MemberSource::Invitation,
        ] {
            assert_eq!(MemberSource::parse(source.as_str()), Some(source));
        }
        for state in [
            AccountState::Active,
            AccountState::Disabled,
            AccountState::Deleted,
        ] {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
        }
        assert_eq!(Role::parse("owner"), None);
        assert_eq!(AccountState::parse("active"), None);
    }

    #[test]
    fn e_mails_are_checked_and_normalized() {
        assert_eq!(
            validate_email(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(validate_email("").is_err());
        assert!(validate_email("alice").is_err());
        assert!(validate_email("@example.com").is_err());
        assert!(validate_email("alice@").is_err());
        assert!(validate_email("a lice@example.com").is_err());
        // Shapes no address has are refused rather than looked up (they were NOT_FOUND).
        for malformed in [
            "ivy@@example.com",
            "ivy@example",
            "<ivy>@example.com",
            "ivy\u{200b}@x.io",
        ] {
            assert!(validate_email(malformed).is_err(), "{malformed:?}");
        }
    }

    proptest::proptest! {
        /// An accepted address comes back in its lookup form, which is accepted unchanged.
        #[test]
        fn accepted_addresses_are_in_lookup_form(raw in "\\PC{0,12}@\\PC{0,12}\\.[a-zA-Z]{2,4}") {
            if let Ok(email) = validate_email(&raw) {
                proptest::prop_assert_eq!(normalize_email(&email), email.clone());
                proptest::prop_assert_eq!(validate_email(&email), Ok(email.clone()));
            }
        }
    }
}
