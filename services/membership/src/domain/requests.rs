//! Access requests, free of I/O: who may ask for a grant, who may approve or decline it, when
//! the approvals are enough, and what the last approval grants. Approvers are distinct people
//! who could make the grant themselves; the subject never approves their own request; one
//! decline ends it; the requester's approval is the first.

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::etag::etag_allows;
use tenantry_platform::{AccountId, UserId};

use super::access::Access;
use super::{Member, MemberSource, MembershipError, NewMember, Permission, Role};

/// Longest reason (requests and declines), in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; the grant was made.
    Approved,
    /// Declined.
    Declined,
    /// Withdrawn by the requester.
    Cancelled,
    /// Lapsed (a PENDING row past its end; never stored).
    Expired,
}

impl RequestState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "PENDING",
            RequestState::Approved => "APPROVED",
            RequestState::Declined => "DECLINED",
            RequestState::Cancelled => "CANCELLED",
            RequestState::Expired => "EXPIRED",
        }
    }

    /// The state spelled `text`.
    pub fn parse(text: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Declined,
            RequestState::Cancelled,
            RequestState::Expired,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Who approved.
    pub approver: UserId,
    /// When.
    pub approve_time: DateTime<Utc>,
    /// Whether they approved as an operator (a right no role in the account gives).
    pub operator: bool,
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    /// The account.
    pub account_id: AccountId,
    /// The request's id (a UUID).
    pub request_id: String,
    /// Who is to be granted.
    pub subject: UserId,
    /// Their directory e-mail when the request was made ("" if none).
    pub subject_email: String,
    /// The role to grant.
    pub role: Role,
    /// Why.
    pub reason: String,
    /// How long the granted access lasts; `None`: without end.
    pub access_duration: Option<Duration>,
    /// The stored state (PENDING even once lapsed: see [`AccessRequest::state_at`]).
    pub state: RequestState,
    /// Who asked.
    pub requester: UserId,
    /// The approvals, oldest (the requester's) first.
    pub approvals: Vec<Approval>,
    /// Approvals needed.
    pub required_approvals: i32,
    /// The managing partner's OWNERs may approve.
    pub escalated: bool,
    /// When it was made.
    pub create_time: DateTime<Utc>,
    /// When it lapses if still PENDING.
    pub expire_time: DateTime<Utc>,
    /// When it was decided.
    pub decide_time: Option<DateTime<Utc>>,
    /// Who decided it (`users/{sub}`).
    pub decided_by: Option<String>,
    /// Why it was declined.
    pub decline_reason: Option<String>,
    /// Starts at 1, +1 on every change; the etag.
    pub version: i64,
}

impl AccessRequest {
    /// `accounts/{account_id}/accessRequests/{request_id}`.
    pub fn name(&self) -> String {
        request_name(&self.account_id, &self.request_id)
    }

    /// The state at `now`: a PENDING request past its end has lapsed.
    pub fn state_at(&self, now: DateTime<Utc>) -> RequestState {
        if self.state == RequestState::Pending && self.expire_time <= now {
            RequestState::Expired
        } else {
            self.state
        }
    }

    /// Whether `user` approved it.
    pub fn approved_by(&self, user: &UserId) -> bool {
        self.approvals.iter().any(|a| &a.approver == user)
    }

    /// May `user` see it: the requester and the subject may, besides whoever may list members.
    pub fn concerns(&self, user: Option<&UserId>) -> bool {
        user.is_some_and(|user| user == &self.requester || user == &self.subject)
    }
}

/// `accounts/{account_id}/accessRequests/{request_id}`.
pub fn request_name(account_id: &AccountId, request_id: &str) -> String {
    format!("accounts/{account_id}/accessRequests/{request_id}")
}

/// A parsed CreateAccessRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    /// The account.
    pub account_id: AccountId,
    /// Who to grant (a user, or a directory e-mail).
    pub subject: super::members::Target,
    /// The role.
    pub role: Role,
    /// Why.
    pub reason: String,
    /// The duration asked for.
    pub access_duration: Option<Duration>,
}

/// Whether the caller may ask for `role` for `subject`: they could make the grant themself if
/// it were not gated (manage members; for OWNER, OWNER authority), or it is their own AddMyself
/// (`add_myself_role` for themself, as a member of the managing partner). Operators grant
/// directly and never ask.
pub fn may_request(access: &Access, role: Role, subject: &UserId, add_myself_role: Role) -> bool {
    let Some(requester) = access.caller.user_id() else {
        return false;
    };
    if access.caller.is_operator() {
        return false;
    }
    may_grant(access, role, false)
        || (requester == subject && role == add_myself_role && access.allows(Permission::AddMyself))
}

/// Whether the caller could grant `role` in the account themself (the right an approver needs):
/// an OWNER (an ADMIN while the account has no OWNER) for OWNER, else whoever manages members;
/// the managing partner's OWNERs when the request is `escalated`; operators always.
pub fn may_grant(access: &Access, role: Role, escalated: bool) -> bool {
    if access.caller.user_id().is_none() {
        return false;
    }
    if access.caller.is_operator() {
        return true;
    }
    let by_account = match role {
        Role::Owner => access.owner_grant_ceiling().is_some(),
        _ => access.allows(Permission::MembersManage),
    };
    let by_partner = escalated
        && access.partner_role == Some(Role::Owner)
        && access
            .facts
            .as_ref()
            .is_some_and(|facts| facts.managed_by.is_some());
    by_account || by_partner
}

/// The roles of the account's own members who may approve a grant of `role` (see
/// [`may_grant`]): OWNERs, and ADMINs unless OWNER is granted while the account has one.
pub fn approver_roles(role: Role, account_has_owner: bool) -> Vec<Role> {
    if role == Role::Owner && account_has_owner {
        vec![Role::Owner]
    } else {
        vec![Role::Owner, Role::Admin]
    }
}

/// Whether the subject's `current` membership already gives what the request asks (the role or
/// a higher one, for at least as long), or cannot take it: a membership without end would be
/// made time-bound, and roles go down with UpdateMember, never with a request. Err says why.
pub fn check_grantable(
    current: Option<&Member>,
    role: Role,
    access_duration: Option<Duration>,
    now: DateTime<Utc>,
    name: &str,
) -> Result<(), MembershipError> {
    let Some(current) = current else {
        return Ok(());
    };
    let already = |why: &str| {
        Err(MembershipError::AlreadyGranted {
            member: name.to_string(),
            why: why.to_string(),
        })
    };
    if super::members::raises(role, current.role) {
        return already("already has a higher role (lower it with UpdateMember)");
    }
    match (current.expire_time, access_duration) {
        (None, None) if current.role == role => already("already has the role without end"),
        (None, Some(_)) => already(
            "is a member without end; a request with access_duration would make the access \
             time-bound (ask without one)",
        ),
        (Some(end), Some(duration)) if current.role == role && end >= now + duration => {
            already("already has the role for at least as long")
        }
        _ => Ok(()),
    }
}

/// How an approval by `approver` goes: it must be PENDING at `now`, the etag `sent` (if any)
/// current, the approver neither the subject nor someone who approved already. Returns whether
/// it is the last approval needed.
pub fn check_approval(
    request: &AccessRequest,
    approver: &UserId,
    sent: &str,
    now: DateTime<Utc>,
) -> Result<bool, MembershipError> {
    if approver == &request.subject {
        return Err(MembershipError::PermissionDenied);
    }
    check_pending(request, sent, now)?;
    if request.approved_by(approver) {
        return Err(MembershipError::AlreadyApproved(request.name()));
    }
    Ok(request.approvals.len() as i32 + 1 >= request.required_approvals)
}

/// A decision other than approval (decline, cancel) needs a PENDING request at `now` and a
/// current etag `sent` (if any).
pub fn check_pending(
    request: &AccessRequest,
    sent: &str,
    now: DateTime<Utc>,
) -> Result<(), MembershipError> {
    if !etag_allows(sent, request.version) {
        return Err(MembershipError::StaleEtag(request.name()));
    }
    match request.state_at(now) {
        RequestState::Pending => Ok(()),
        state => Err(MembershipError::NotPending {
            request: request.name(),
            state,
        }),
    }
}

/// What the last approval of `request` does to the subject's `current` membership at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A new membership.
    Add(NewMember),
    /// The existing one gets `role` and the end `expire_time` (`None`: without end).
    Change {
        /// The membership as read in the approving transaction.
        current: Box<Member>,
        /// The role.
        role: Role,
        /// The end.
        expire_time: Option<DateTime<Utc>>,
    },
}

/// The grant the last approval of `request` makes (see [`Grant`]). A time-bound member keeps
/// the later of its end and the request's; one without end keeps no end (a request with a
/// duration for them is refused when it is made, and re-checked here).
pub fn grant_for(
    request: &AccessRequest,
    current: Option<Member>,
    now: DateTime<Utc>,
) -> Result<Grant, MembershipError> {
    let end = request.access_duration.map(|duration| now + duration);
    check_grantable(
        current.as_ref(),
        request.role,
        request.access_duration,
        now,
        &request.name(),
    )?;
    Ok(match current {
        None => Grant::Add(NewMember {
            account_id: request.account_id.clone(),
            user_id: request.subject.clone(),
            role: request.role,
            source: if request.subject == request.requester {
                MemberSource::SelfAssigned
            } else {
                MemberSource::Direct
            },
            added_by: request.requester.name(),
            expire_time: end,
        }),
        Some(current) => {
            let expire_time = match (current.expire_time, end) {
                (Some(old), Some(new)) => Some(old.max(new)),
                (None, _) => None,
                // A time-bound member granted without end.
                (Some(_), None) => None,
            };
            Grant::Change {
                role: request.role,
                current: Box::new(current),
                expire_time,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountFacts, AccountState, Caller, UserProfile};

    fn access(role: Option<Role>, partner_role: Option<Role>, has_owner: bool) -> Access {
        Access {
            caller: Caller::User {
                user_id: UserId::trusted("me"),
                operator: false,
            },
            facts: Some(AccountFacts {
                account_id: AccountId::trusted("acme"),
                display_name: "Acme".into(),
                partner: false,
                managed_by: Some(AccountId::trusted("p")),
                state: AccountState::Active,
            }),
            role,
            partner_role,
            has_owner,
        }
    }

    fn request(approvals: &[&str], required: i32) -> AccessRequest {
        let now = Utc::now();
        AccessRequest {
            account_id: AccountId::trusted("acme"),
            request_id: "r".into(),
            subject: UserId::trusted("bob"),
            subject_email: String::new(),
            role: Role::Admin,
            reason: "on call".into(),
            access_duration: None,
            state: RequestState::Pending,
            requester: UserId::trusted(approvals[0]),
            approvals: approvals
                .iter()
                .map(|a| Approval {
                    approver: UserId::trusted(*a),
                    approve_time: now,
                    operator: false,
                })
                .collect(),
            required_approvals: required,
            escalated: false,
            create_time: now,
            expire_time: now + Duration::days(1),
            decide_time: None,
            decided_by: None,
            decline_reason: None,
            version: 1,
        }
    }

    fn member(role: Role, expire_time: Option<DateTime<Utc>>) -> Member {
        let now = Utc::now();
        Member {
            account_id: AccountId::trusted("acme"),
            user_id: UserId::trusted("bob"),
            role,
            source: MemberSource::Direct,
            added_by: "users/x".into(),
            create_time: now,
            update_time: now,
            version: 1,
            expire_time,
            profile: UserProfile::default(),
        }
    }

    #[test]
    fn approvers_could_make_the_grant_themselves() {
        let owner = access(Some(Role::Owner), None, true);
        let admin = access(Some(Role::Admin), None, true);
        let employee = access(Some(Role::Employee), None, true);
        let partner_owner = access(None, Some(Role::Owner), true);
        assert!(may_grant(&owner, Role::Owner, false));
        assert!(!may_grant(&admin, Role::Owner, false));
        assert!(may_grant(&admin, Role::Admin, false));
        assert!(!may_grant(&employee, Role::Admin, false));
        // The partner's OWNERs only once the request is escalated.
        assert!(!may_grant(&partner_owner, Role::Owner, false));
        assert!(may_grant(&partner_owner, Role::Owner, true));
        // An ADMIN grants OWNER while the account has none.
        assert!(may_grant(
            &access(Some(Role::Admin), None, false),
            Role::Owner,
            false
        ));
        assert_eq!(approver_roles(Role::Owner, true), vec![Role::Owner]);
        assert_eq!(
            approver_roles(Role::Admin, true),
            vec![Role::Owner, Role::Admin]
        );
    }

    #[test]
    fn a_partner_member_asks_for_their_own_add_myself_only() {
        let partner_employee = access(None, Some(Role::Employee), true);
        let me = UserId::trusted("me");
        assert!(may_request(
            &partner_employee,
            Role::Admin,
            &me,
            Role::Admin
        ));
        assert!(!may_request(
            &partner_employee,
            Role::Admin,
            &UserId::trusted("bob"),
            Role::Admin
        ));
        assert!(!may_request(
            &partner_employee,
            Role::Owner,
            &me,
            Role::Admin
        ));
    }

    #[test]
    fn the_subject_never_approves_and_nobody_twice() {
        let now = Utc::now();
        let pending = request(&["alice"], 3);
        assert!(matches!(
            check_approval(&pending, &UserId::trusted("bob"), "", now),
            Err(MembershipError::PermissionDenied)
        ));
        assert!(matches!(
            check_approval(&pending, &UserId::trusted("alice"), "", now),
            Err(MembershipError::AlreadyApproved(_))
        ));
        assert!(!check_approval(&pending, &UserId::trusted("carol"), "", now).unwrap());
        let one_short = request(&["alice", "carol"], 3);
        assert!(check_approval(&one_short, &UserId::trusted("dave"), "", now).unwrap());
        // Lapsed, and a stale etag.
        assert!(matches!(
            check_approval(
                &one_short,
                &UserId::trusted("dave"),
                "",
                now + Duration::days(2)
            ),
            Err(MembershipError::NotPending {
                state: RequestState::Expired,
                ..
            })
        ));
        assert!(matches!(
            check_approval(&one_short, &UserId::trusted("dave"), "\"7\"", now),
            Err(MembershipError::StaleEtag(_))
        ));
    }

    #[test]
    fn the_grant_never_lowers_a_role_or_shortens_access() {
        let now = Utc::now();
        let mut ask = request(&["alice"], 2);
        // A new member, added by the requester.
        match grant_for(&ask, None, now).unwrap() {
            Grant::Add(new) => {
                assert_eq!(
                    (new.role, new.added_by.as_str()),
                    (Role::Admin, "users/alice")
                );
                assert_eq!(new.expire_time, None);
            }
            other => panic!("{other:?}"),
        }
        // A higher role is kept: refused.
        assert!(grant_for(&ask, Some(member(Role::Owner, None)), now).is_err());
        // An EMPLOYEE without end becomes ADMIN without end.
        assert!(matches!(
            grant_for(&ask, Some(member(Role::Employee, None)), now).unwrap(),
            Grant::Change {
                role: Role::Admin,
                expire_time: None,
                ..
            }
        ));
        // A duration for a member without end is refused.
        ask.access_duration = Some(Duration::hours(2));
        assert!(grant_for(&ask, Some(member(Role::Employee, None)), now).is_err());
        // A time-bound ADMIN: extended to the later end; not shortened.
        let soon = now + Duration::hours(1);
        assert!(matches!(
            grant_for(&ask, Some(member(Role::Admin, Some(soon))), now).unwrap(),
            Grant::Change { expire_time: Some(end), .. } if end == now + Duration::hours(2)
        ));
        assert!(
            grant_for(
                &ask,
                Some(member(Role::Admin, Some(now + Duration::days(1)))),
                now
            )
            .is_err()
        );
    }
}
