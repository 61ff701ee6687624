//! The authorization table of DESIGN.md §5 as one pure function. `Authorize` answers with it,
//! and membership's own RPCs check it locally.

use tenantry_platform::names::account_name;

use super::{AccountFacts, Permission, Role};

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct AuthzFacts<'a> {
    /// Whether the subject is a platform operator.
    pub operator: bool,
    /// The account, `None` if it does not exist.
    pub account: Option<&'a AccountFacts>,
    /// The subject's role in the account.
    pub role: Option<Role>,
    /// The subject's role in the account's managing partner (ignored for unmanaged accounts).
    pub partner_role: Option<Role>,
    /// Whether the account currently has at least one OWNER.
    pub account_has_owner: bool,
}

/// The answer: allowed or not, and why (for logs, never shown to end users).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the permission is granted.
    pub allowed: bool,
    /// Short explanation.
    pub reason: String,
}

fn manager(role: Option<Role>) -> bool {
    role.is_some_and(Role::manages)
}

/// May the subject described by `facts` do `permission` on the account? Role rules only: the
/// account's state is the calling service's business. Operators may do everything.
pub fn decide(permission: Permission, facts: &AuthzFacts<'_>) -> Decision {
    if facts.operator {
        return Decision {
            allowed: true,
            reason: format!("platform operator holds {}", permission.as_str()),
        };
    }
    let Some(account) = facts.account else {
        return Decision {
            allowed: false,
            reason: "the account does not exist".to_string(),
        };
    };
    let own = facts.role;
    // A partner role only counts for the customers that partner manages.
    let partner = account.managed_by.as_ref().and(facts.partner_role);
    let (allowed, condition) = match permission {
        Permission::AccountRead | Permission::MembersList => {
            (own.is_some() || partner.is_some(), None)
        }
        Permission::AccountUpdate | Permission::AuditRead => {
            (manager(own) || manager(partner), None)
        }
        Permission::AccountDelete => (own == Some(Role::Owner) || manager(partner), None),
        Permission::MembersManage | Permission::InvitationsManage => (manager(own), None),
        Permission::OwnersManage => (
            own == Some(Role::Owner) || (own == Some(Role::Admin) && !facts.account_has_owner),
            None,
        ),
        Permission::AddMyself => (
            partner.is_some(),
            account
                .managed_by
                .is_none()
                .then_some("is not a managed customer"),
        ),
        Permission::CustomersCreate => (
            account.partner && manager(own),
            (!account.partner).then_some("is not a partner"),
        ),
        Permission::CustomersList | Permission::MessagesSend | Permission::MessagesList => (
            account.partner && own.is_some(),
            (!account.partner).then_some("is not a partner"),
        ),
    };
    let name = account_name(&account.account_id);
    let mut who = Vec::new();
    if let Some(role) = own {
        who.push(format!("{} of {name}", role.as_str()));
    }
    if let (Some(role), Some(partner_id)) = (partner, account.managed_by.as_deref()) {
        who.push(format!(
            "{} of the managing partner {}",
            role.as_str(),
            account_name(partner_id)
        ));
    }
    let who = if who.is_empty() {
        format!("not a member of {name} or of its managing partner")
    } else {
        who.join(" and ")
    };
    let verdict = if allowed { "holds" } else { "lacks" };
    let mut reason = format!("{who} {verdict} {}", permission.as_str());
    if let (false, Some(condition)) = (allowed, condition) {
        reason.push_str(&format!(" ({name} {condition})"));
    }
    Decision { allowed, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md §5 written as data: which roles in the account itself ("own") and in its
    /// managing partner grant each permission, and what kind of account it must be. `a` means
    /// "ADMIN, while the account has no OWNER".
    const TABLE: [(Permission, &str, &str, Kind); 13] = [
        (Permission::AccountRead, "OAE", "OAE", Kind::Any),
        (Permission::AccountUpdate, "OA", "OA", Kind::Any),
        (Permission::AccountDelete, "O", "OA", Kind::Any),
        (Permission::MembersList, "OAE", "OAE", Kind::Any),
        (Permission::MembersManage, "OA", "", Kind::Any),
        (Permission::OwnersManage, "Oa", "", Kind::Any),
        (Permission::InvitationsManage, "OA", "", Kind::Any),
        (Permission::AddMyself, "", "OAE", Kind::Managed),
        (Permission::CustomersCreate, "OA", "", Kind::Partner),
        (Permission::CustomersList, "OAE", "", Kind::Partner),
        (Permission::MessagesSend, "OAE", "", Kind::Partner),
        (Permission::MessagesList, "OAE", "", Kind::Partner),
        (Permission::AuditRead, "OA", "OA", Kind::Any),
    ];

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Any,
        Partner,
        Managed,
    }

    const ROLES: [Option<Role>; 4] = [
        None,
        Some(Role::Owner),
        Some(Role::Admin),
        Some(Role::Employee),
    ];

    fn letter(role: Role) -> char {
        match role {
            Role::Owner => 'O',
            Role::Admin => 'A',
            Role::Employee => 'E',
        }
    }

    fn account(kind: Kind) -> AccountFacts {
        AccountFacts {
            account_id: tenantry_platform::AccountId::trusted("acme"),
            display_name: "Acme".into(),
            partner: kind == Kind::Partner,
            managed_by: (kind == Kind::Managed)
                .then(|| tenantry_platform::AccountId::trusted("partner")),
            state: super::super::AccountState::Active,
        }
    }

    fn expected(
        permission: Permission,
        kind: Kind,
        own: Option<Role>,
        partner: Option<Role>,
        has_owner: bool,
    ) -> bool {
        let (_, own_letters, partner_letters, needs) = TABLE
            .iter()
            .find(|(p, ..)| *p == permission)
            .expect("every permission is in the table");
        if *needs != Kind::Any && *needs != kind {
            return false;
        }
        let by_own = own.is_some_and(|role| {
            own_letters.contains(letter(role))
                || (role == Role::Admin && own_letters.contains('a') && !has_owner)
        });
        let by_partner = kind == Kind::Managed
            && partner.is_some_and(|role| partner_letters.contains(letter(role)));
        by_own || by_partner
    }

    #[test]
    fn every_combination_follows_the_table() {
        assert_eq!(TABLE.len(), Permission::ALL.len());
        let mut checked = 0;
        for permission in Permission::ALL {
            for kind in [Kind::Any, Kind::Partner, Kind::Managed] {
                let account = account(kind);
                for own in ROLES {
                    for partner in ROLES {
                        for has_owner in [false, true] {
                            let facts = AuthzFacts {
                                operator: false,
                                account: Some(&account),
                                role: own,
                                partner_role: partner,
                                account_has_owner: has_owner,
                            };
                            let decision = decide(permission, &facts);
                            assert_eq!(
                                decision.allowed,
                                expected(permission, kind, own, partner, has_owner),
                                "{permission:?} {kind:?} own={own:?} partner={partner:?} \
                                 has_owner={has_owner}: {}",
                                decision.reason
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, Permission::ALL.len() * 3 * 4 * 4 * 2);
    }

    #[test]
    fn operators_hold_everything_even_on_missing_accounts() {
        let managed = account(Kind::Managed);
        for permission in Permission::ALL {
            for account in [None, Some(&managed)] {
                let facts = AuthzFacts {
                    operator: true,
                    account,
                    role: None,
                    partner_role: None,
                    account_has_owner: false,
                };
                assert!(decide(permission, &facts).allowed, "{permission:?}");
            }
        }
    }

    #[test]
    fn missing_accounts_deny_everyone_else() {
        for permission in Permission::ALL {
            for role in ROLES {
                let facts = AuthzFacts {
                    operator: false,
                    account: None,
                    role,
                    partner_role: role,
                    account_has_owner: true,
                };
                let decision = decide(permission, &facts);
                assert!(!decision.allowed, "{permission:?} {role:?}");
                assert_eq!(decision.reason, "the account does not exist");
            }
        }
    }

    #[test]
    fn reasons_name_the_role_and_the_permission() {
        let managed = account(Kind::Managed);
        let facts = AuthzFacts {
            operator: false,
            account: Some(&managed),
            role: Some(Role::Employee),
            partner_role: None,
            account_has_owner: true,
        };
        assert_eq!(
            decide(Permission::MembersManage, &facts).reason,
            "EMPLOYEE of accounts/acme lacks MEMBERS_MANAGE"
        );
        let facts = AuthzFacts {
            role: None,
            partner_role: Some(Role::Admin),
            ..facts
        };
        let decision = decide(Permission::AddMyself, &facts);
        assert!(decision.allowed);
        assert_eq!(
            decision.reason,
            "ADMIN of the managing partner accounts/partner holds ADD_MYSELF"
        );
        let standalone = account(Kind::Any);
        let facts = AuthzFacts {
            account: Some(&standalone),
            role: Some(Role::Owner),
            ..facts
        };
        assert_eq!(
            decide(Permission::CustomersCreate, &facts).reason,
            "OWNER of accounts/acme lacks CUSTOMERS_CREATE (accounts/acme is not a partner)"
        );
    }
}
