//! The audit rules, without I/O: what an event means for the log ([`change_of`]: whose log,
//! which resource, who, each field before and after), the canonical form an entry's hash is
//! taken over ([`chain`]), and the signed purge tombstone.

pub mod chain;
mod error;
mod fields;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tenantry_proto::EventType;
use tenantry_proto::events::v1::{self as pb, ActorKind, Provenance};

pub use error::AuditError;
use fields::{
    access_request_fields, account_fields, diff, invitation_fields, member_fields, message_fields,
    optional_timestamp, policy_fields,
};
use tenantry_proto::membership::v1::Member;

/// The actor of changes a service made on its own, by service.
const NOTIFICATION_SERVICE: &str = "services/notification";
const INVITATION_SERVICE: &str = "services/invitation";

/// What one event records in the log of one account.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The account whose log gets the entry.
    pub account_id: String,
    /// The partner managing that account, when the event says (account events): kept so a
    /// partner's listing can include its customers.
    pub managed_by: Option<String>,
    /// The resource changed.
    pub resource: String,
    /// `users/{sub}` or `services/{name}`.
    pub actor: String,
    /// The changed fields before.
    pub before: Map<String, Value>,
    /// The changed fields after.
    pub after: Map<String, Value>,
    /// How the change was made.
    pub provenance: Provenance,
}

/// The types the audit log records: every type but `inbox.changed`, a per-user live push whose
/// facts `message.*` already carries.
pub fn audited_types() -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|event_type| *event_type != EventType::InboxChanged)
        .collect()
}

/// The change `payload` (of `event_type`) records; an error for a payload that cannot be read
/// or lacks what an entry needs (the event is dead-lettered, never recorded half).
pub fn change_of(event_type: EventType, payload: &[u8]) -> Result<Change, AuditError> {
    fn decode<M: prost::Message + Default>(payload: &[u8]) -> Result<M, AuditError> {
        M::decode(payload).map_err(|error| AuditError::Undecodable(error.to_string()))
    }
    use EventType as T;
    let (change, provenance) = match event_type {
        T::AccountCreated => {
            let e: pb::AccountCreated = decode(payload)?;
            (
                account_change(e.account, None, e.actor, true)?,
                e.provenance,
            )
        }
        T::AccountUpdated => {
            let e: pb::AccountUpdated = decode(payload)?;
            (
                account_change(e.account, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::AccountPromotedToPartner => {
            let e: pb::AccountPromotedToPartner = decode(payload)?;
            (
                account_change(e.account, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::AccountDisabled => {
            let e: pb::AccountDisabled = decode(payload)?;
            (
                account_change(e.account, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::AccountEnabled => {
            let e: pb::AccountEnabled = decode(payload)?;
            (
                account_change(e.account, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::AccountDeleted => {
            let e: pb::AccountDeleted = decode(payload)?;
            (
                account_change(e.account, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::MemberAdded => {
            let e: pb::MemberAdded = decode(payload)?;
            let member = e.member.ok_or(AuditError::Missing("member"))?;
            let (before, after) = diff(None, Some(member_fields(&member)));
            (
                child_change(&member.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::MemberUpdated => {
            let e: pb::MemberUpdated = decode(payload)?;
            let member = e.member.ok_or(AuditError::Missing("member"))?;
            // A role change (UpdateMember) or a later expiry (ExtendMemberAccess).
            let previous = Member {
                role: e.previous_role,
                expire_time: e.previous_expire_time,
                ..member.clone()
            };
            let (mut before, mut after) =
                diff(Some(member_fields(&previous)), Some(member_fields(&member)));
            if previous.expire_time != member.expire_time {
                // Both sides, an unset one as "": `diff` sees only the fields after, and would
                // miss an expiry that was cleared.
                before.insert(
                    "expire_time".into(),
                    optional_timestamp(previous.expire_time.as_ref()),
                );
                after.insert(
                    "expire_time".into(),
                    optional_timestamp(member.expire_time.as_ref()),
                );
            }
            (
                child_change(&member.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::MemberRemoved => {
            let e: pb::MemberRemoved = decode(payload)?;
            let member = e.member.ok_or(AuditError::Missing("member"))?;
            let (before, after) = diff(Some(member_fields(&member)), None);
            (
                child_change(&member.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::MemberExpired => {
            // The expiry sweep's removal: recorded as a removal, by the sweep's actor.
            let e: pb::MemberExpired = decode(payload)?;
            let member = e.member.ok_or(AuditError::Missing("member"))?;
            let (before, after) = diff(Some(member_fields(&member)), None);
            (
                child_change(&member.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::AccessPolicyUpdated => {
            let e: pb::AccessPolicyUpdated = decode(payload)?;
            let policy = e.policy.ok_or(AuditError::Missing("policy"))?;
            let (before, after) = diff(
                Some(e.previous.as_ref().map(policy_fields).unwrap_or_default()),
                Some(policy_fields(&policy)),
            );
            (
                child_change(&policy.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::AccessRequestCreated => {
            let e: pb::AccessRequestCreated = decode(payload)?;
            let request = e
                .access_request
                .ok_or(AuditError::Missing("access_request"))?;
            let (before, after) = diff(None, Some(access_request_fields(&request)));
            (
                child_change(&request.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::AccessRequestApproved => {
            let e: pb::AccessRequestApproved = decode(payload)?;
            (
                request_change(e.access_request, e.previous, e.actor)?,
                e.provenance,
            )
        }
        T::AccessRequestDeclined => {
            let e: pb::AccessRequestDeclined = decode(payload)?;
            (
                request_change(e.access_request, e.previous, e.actor)?,
                e.provenance,
            )
        }
        T::AccessRequestCancelled => {
            let e: pb::AccessRequestCancelled = decode(payload)?;
            (
                request_change(e.access_request, e.previous, e.actor)?,
                e.provenance,
            )
        }
        T::InvitationCreated => {
            let e: pb::InvitationCreated = decode(payload)?;
            (
                invitation_change(e.invitation, None, e.actor, true)?,
                e.provenance,
            )
        }
        T::InvitationResent => {
            let e: pb::InvitationResent = decode(payload)?;
            (
                invitation_change(e.invitation, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::InvitationAccepted => {
            let e: pb::InvitationAccepted = decode(payload)?;
            (
                invitation_change(e.invitation, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::InvitationRevoked => {
            let e: pb::InvitationRevoked = decode(payload)?;
            (
                invitation_change(e.invitation, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::InvitationExpired => {
            let e: pb::InvitationExpired = decode(payload)?;
            let actor = INVITATION_SERVICE.to_string();
            (
                invitation_change(e.invitation, e.previous, actor, false)?,
                e.provenance,
            )
        }
        T::InvitationDeclined => {
            let e: pb::InvitationDeclined = decode(payload)?;
            (
                invitation_change(e.invitation, e.previous, e.actor, false)?,
                e.provenance,
            )
        }
        T::MessageSent => {
            let e: pb::MessageSent = decode(payload)?;
            let message = e.message.ok_or(AuditError::Missing("message"))?;
            let (before, after) = diff(None, Some(message_fields(&message)));
            (
                child_change(&message.name, e.actor, before, after)?,
                e.provenance,
            )
        }
        T::MessageAcknowledged => {
            let e: pb::MessageAcknowledged = decode(payload)?;
            let mut after = Map::new();
            after.insert("acknowledged_by".into(), Value::String(e.user.clone()));
            after.insert(
                "accounts".into(),
                Value::Array(e.accounts.iter().cloned().map(Value::String).collect()),
            );
            if let Some(time) = e.acknowledge_time.as_ref() {
                after.insert("acknowledge_time".into(), fields::timestamp(time));
            }
            (
                child_change(&e.message, e.user, Map::new(), after)?,
                e.provenance,
            )
        }
        T::MessageResolved => {
            let e: pb::MessageResolved = decode(payload)?;
            let mut after = Map::new();
            after.insert("resolved_for".into(), Value::String(e.account.clone()));
            after.insert("resolved_by".into(), Value::String(e.resolved_by.clone()));
            if let Some(time) = e.resolve_time.as_ref() {
                after.insert("resolve_time".into(), fields::timestamp(time));
            }
            let actor = if e.resolved_by.is_empty() {
                NOTIFICATION_SERVICE.to_string()
            } else {
                e.resolved_by
            };
            (
                child_change(&e.message, actor, Map::new(), after)?,
                e.provenance,
            )
        }
        T::MessageExpired => {
            let e: pb::MessageExpired = decode(payload)?;
            let mut before = Map::new();
            before.insert("state".into(), Value::String("DELIVERED".into()));
            let mut after = Map::new();
            after.insert("state".into(), Value::String("EXPIRED".into()));
            let actor = NOTIFICATION_SERVICE.to_string();
            (
                child_change(&e.message, actor, before, after)?,
                e.provenance,
            )
        }
        T::InboxChanged => return Err(AuditError::NotAudited(event_type.as_str())),
    };
    let provenance = provenance.unwrap_or_default();
    // A service acting for a person: the person is the actor, the service is `via`.
    let actor = if provenance.actor_kind == ActorKind::ServiceForPerson as i32
        && !provenance.person.is_empty()
    {
        provenance.person.clone()
    } else {
        change.actor
    };
    Ok(Change {
        actor,
        provenance,
        ..change
    })
}

fn account_change(
    account: Option<tenantry_proto::registry::v1::Account>,
    previous: Option<tenantry_proto::registry::v1::Account>,
    actor: String,
    created: bool,
) -> Result<Change, AuditError> {
    let account = account.ok_or(AuditError::Missing("account"))?;
    let account_id = resource_account(&account.name)?;
    let (before, after) = if created {
        diff(None, Some(account_fields(&account)))
    } else {
        // An event from before `previous` existed records the state after only.
        diff(
            Some(previous.as_ref().map(account_fields).unwrap_or_default()),
            Some(account_fields(&account)),
        )
    };
    let managed_by = account
        .managed_by
        .strip_prefix("accounts/")
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    Ok(Change {
        account_id,
        managed_by,
        resource: account.name,
        actor,
        before,
        after,
        provenance: Provenance::default(),
    })
}

/// A change to `name`, a resource under an account (a member, a message).
fn child_change(
    name: &str,
    actor: String,
    before: Map<String, Value>,
    after: Map<String, Value>,
) -> Result<Change, AuditError> {
    Ok(Change {
        account_id: resource_account(name)?,
        managed_by: None,
        resource: name.to_string(),
        actor,
        before,
        after,
        provenance: Provenance::default(),
    })
}

fn request_change(
    request: Option<tenantry_proto::membership::v1::AccessRequest>,
    previous: Option<tenantry_proto::membership::v1::AccessRequest>,
    actor: String,
) -> Result<Change, AuditError> {
    let request = request.ok_or(AuditError::Missing("access_request"))?;
    let (before, after) = diff(
        Some(
            previous
                .as_ref()
                .map(access_request_fields)
                .unwrap_or_default(),
        ),
        Some(access_request_fields(&request)),
    );
    child_change(&request.name, actor, before, after)
}

fn invitation_change(
    invitation: Option<tenantry_proto::invitation::v1::Invitation>,
    previous: Option<tenantry_proto::invitation::v1::Invitation>,
    actor: String,
    created: bool,
) -> Result<Change, AuditError> {
    let invitation = invitation.ok_or(AuditError::Missing("invitation"))?;
    let (before, after) = if created {
        diff(None, Some(invitation_fields(&invitation)))
    } else {
        diff(
            Some(previous.as_ref().map(invitation_fields).unwrap_or_default()),
            Some(invitation_fields(&invitation)),
        )
    };
    Ok(Change {
        account_id: resource_account(&invitation.name)?,
        managed_by: None,
        resource: invitation.name,
        actor,
        before,
        after,
        provenance: Provenance::default(),
    })
}

/// The account a resource name is under: `accounts/{id}[/…]`.
pub fn resource_account(name: &str) -> Result<String, AuditError> {
    name.strip_prefix("accounts/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| AuditError::Undecodable(format!("{name:?} is not under accounts/")))
}

/// The name of an actor kind as the canonical form spells it.
pub fn actor_kind_name(kind: i32) -> &'static str {
    ActorKind::try_from(kind)
        .unwrap_or(ActorKind::Unspecified)
        .as_str_name()
}

/// One entry to append: the change, the event it came from, and when it was recorded.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// The event's CloudEvents id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The event's time, to the microsecond (what the hash commits to).
    pub event_time: DateTime<Utc>,
    /// What it records.
    pub change: Change,
}

#[cfg(test)]
mod tests;
