//! A member's role in an account, one type for the whole workspace: membership stores and
//! grants it, invitation promises it, notification filters recipients by it.

use tenantry_proto::membership::v1 as wire;

/// A member's role in an account (DESIGN.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Full control; a limited number per account (membership enforces it).
    Owner,
    /// Manages the account, its non-OWNER members and its invitations.
    Admin,
    /// Reads the account and its members.
    Employee,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Employee];

    /// The stored spelling (every service's tables use it).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Employee => "EMPLOYEE",
        }
    }

    /// The role stored as `text`.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// OWNER or ADMIN: the roles that manage an account.
    pub fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// The `tenantry.membership.v1.Role` value.
    pub fn to_wire(self) -> i32 {
        (match self {
            Role::Owner => wire::Role::Owner,
            Role::Admin => wire::Role::Admin,
            Role::Employee => wire::Role::Employee,
        }) as i32
    }

    /// The wire value of an optional role: `None` is ROLE_UNSPECIFIED ("no role").
    pub fn option_to_wire(role: Option<Role>) -> i32 {
        role.map_or(wire::Role::Unspecified as i32, Role::to_wire)
    }

    /// The role a wire value names; `None` for ROLE_UNSPECIFIED and for unknown numbers.
    pub fn from_wire(value: i32) -> Option<Role> {
        match wire::Role::try_from(value) {
            Ok(wire::Role::Owner) => Some(Role::Owner),
            Ok(wire::Role::Admin) => Some(Role::Admin),
            Ok(wire::Role::Employee) => Some(Role::Employee),
            Ok(wire::Role::Unspecified) | Err(_) => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_wire_forms_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(Role::from_wire(role.to_wire()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
        assert_eq!(Role::from_wire(0), None);
        assert_eq!(Role::from_wire(99), None);
        assert_eq!(Role::option_to_wire(None), 0);
        assert!(Role::Owner.manages() && Role::Admin.manages() && !Role::Employee.manages());
    }
}
