//! The `member.*` events membership publishes (DESIGN.md §6), built from the membership as it
//! is after the change (as it was, for a removal), inside the transaction that made the change.

use chrono::{DateTime, Utc};
use tenantry_events::Event;
use tenantry_platform::Role;
use tenantry_platform::time::to_timestamp;
use tenantry_proto::events::v1 as pb;

use crate::domain::Member;
use crate::wire::member_to_wire;

/// The CloudEvents `source` of every membership event.
pub const SOURCE: &str = "/tenantry/membership";

/// What happened to a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// AddMember, AddMyself (when it created the membership) or an accepted invitation.
    Added,
    /// The role changed from `previous_role` (UpdateMember), or the expiry moved later from
    /// `previous_expire_time` (ExtendMemberAccess).
    Updated {
        /// The role before the change.
        previous_role: Role,
        /// The expiry before the change.
        previous_expire_time: Option<DateTime<Utc>>,
    },
    /// RemoveMember.
    Removed,
    /// The expiry sweep ended a time-bound membership.
    Expired,
}

/// The event announcing `change` of `member` (with its directory entry), made by `actor`
/// (`users/{sub}` or `services/{name}`).
pub fn member_event(change: MemberChange, member: &Member, actor: &str) -> Event {
    let wire = Some(member_to_wire(member));
    let actor = actor.to_string();
    match change {
        MemberChange::Added => Event::of(
            SOURCE,
            &pb::MemberAdded {
                member: wire,
                actor,
                provenance: None,
            },
        ),
        MemberChange::Updated {
            previous_role,
            previous_expire_time,
        } => Event::of(
            SOURCE,
            &pb::MemberUpdated {
                member: wire,
                previous_role: previous_role.to_wire(),
                actor,
                previous_expire_time: previous_expire_time.map(to_timestamp),
                provenance: None,
            },
        ),
        MemberChange::Removed => Event::of(
            SOURCE,
            &pb::MemberRemoved {
                member: wire,
                actor,
                provenance: None,
            },
        ),
        MemberChange::Expired => Event::of(
            SOURCE,
            &pb::MemberExpired {
                member: wire,
                actor,
                provenance: None,
            },
        ),
    }
}

/// `access_policy.updated`: `account_id`'s own policy went from `previous` to `stored`.
pub fn policy_event(
    account_id: &tenantry_platform::AccountId,
    stored: &crate::domain::policy::StoredPolicy,
    previous: Option<&crate::domain::policy::StoredPolicy>,
    actor: &str,
) -> Event {
    Event::of(
        SOURCE,
        &pb::AccessPolicyUpdated {
            policy: Some(crate::access_wire::policy_to_wire(account_id, Some(stored))),
            previous: Some(crate::access_wire::policy_to_wire(account_id, previous)),
            actor: actor.to_string(),
            provenance: None,
        },
    )
}

/// What happened to an access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestChange {
    /// CreateAccessRequest.
    Created,
    /// ApproveAccessRequest.
    Approved,
    /// DeclineAccessRequest.
    Declined,
    /// CancelAccessRequest.
    Cancelled,
}

/// The `access_request.*` event announcing `change` of `request` (as it is after it; before it
/// as `previous`), by `actor`, at `now`.
pub fn request_event(
    change: RequestChange,
    request: &crate::domain::requests::AccessRequest,
    previous: Option<&crate::domain::requests::AccessRequest>,
    actor: &str,
    now: DateTime<Utc>,
) -> Event {
    let wire = Some(crate::access_wire::request_to_wire(request, now));
    let previous = previous.map(|previous| crate::access_wire::request_to_wire(previous, now));
    let actor = actor.to_string();
    match change {
        RequestChange::Created => Event::of(
            SOURCE,
            &pb::AccessRequestCreated {
                access_request: wire,
                actor,
                provenance: None,
            },
        ),
        RequestChange::Approved => Event::of(
            SOURCE,
            &pb::AccessRequestApproved {
                access_request: wire,
                previous,
                actor,
                provenance: None,
            },
        ),
        RequestChange::Declined => Event::of(
            SOURCE,
            &pb::AccessRequestDeclined {
                access_request: wire,
                previous,
                actor,
                provenance: None,
            },
        ),
        RequestChange::Cancelled => Event::of(
            SOURCE,
            &pb::AccessRequestCancelled {
                access_request: wire,
                previous,
                actor,
                provenance: None,
            },
        ),
    }
}
