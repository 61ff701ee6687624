//! The fields of each resource an auditor follows, as flat JSON objects, and the difference of
//! two such objects (only what changed is recorded before and after).
//!
//! Left out on purpose: etags and update times (they change with everything), e-mail delivery
//! bookkeeping, message statistics, and anything secret (events never carry an invitation's
//! secret).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tenantry_proto::invitation::v1::{Invitation, InvitationState};
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequest, AccessRequestState, GatedGrant, Member, MemberSource, Role,
    ShortOfApprovers,
};
use tenantry_proto::notification::v1::{Message, ReadPolicy};
use tenantry_proto::registry::v1::{Account, AccountState};

/// A timestamp as RFC 3339 (UTC, microseconds).
pub fn timestamp(time: &prost_types::Timestamp) -> Value {
    let text =
        DateTime::<Utc>::from_timestamp(time.seconds, time.nanos.clamp(0, 999_999_999) as u32)
            .map(|time| time.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_default();
    Value::String(text)
}

/// A timestamp that may be unset (`""`, as invitations and messages record no expiry).
pub fn optional_timestamp(time: Option<&prost_types::Timestamp>) -> Value {
    time.map_or(Value::String(String::new()), timestamp)
}

fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

fn role_name(role: i32) -> Value {
    text(
        Role::try_from(role)
            .unwrap_or(Role::Unspecified)
            .as_str_name()
            .trim_start_matches("ROLE_"),
    )
}

/// What an auditor follows of an account.
pub fn account_fields(account: &Account) -> Map<String, Value> {
    let state = AccountState::try_from(account.state).unwrap_or(AccountState::Unspecified);
    Map::from_iter([
        ("display_name".to_string(), text(&account.display_name)),
        ("partner".to_string(), Value::Bool(account.partner)),
        ("managed_by".to_string(), text(&account.managed_by)),
        (
            "state".to_string(),
            text(state.as_str_name().trim_start_matches("ACCOUNT_STATE_")),
        ),
    ])
}

/// What an auditor follows of a membership. `expire_time` only for a time-bound one: the
/// entries of memberships without an end read as they did before memberships could end.
pub fn member_fields(member: &Member) -> Map<String, Value> {
    let source = MemberSource::try_from(member.source).unwrap_or(MemberSource::Unspecified);
    let mut fields = Map::from_iter([
        ("user".to_string(), text(&member.user)),
        ("role".to_string(), role_name(member.role)),
        (
            "source".to_string(),
            text(source.as_str_name().trim_start_matches("MEMBER_SOURCE_")),
        ),
    ]);
    if let Some(expire_time) = member.expire_time.as_ref() {
        fields.insert("expire_time".to_string(), timestamp(expire_time));
    }
    fields
}

/// What an auditor follows of an invitation.
pub fn invitation_fields(invitation: &Invitation) -> Map<String, Value> {
    let state = InvitationState::try_from(invitation.state).unwrap_or(InvitationState::Unspecified);
    Map::from_iter([
        ("email".to_string(), text(&invitation.email)),
        ("role".to_string(), role_name(invitation.role)),
        (
            "state".to_string(),
            text(state.as_str_name().trim_start_matches("INVITATION_STATE_")),
        ),
        (
            "expire_time".to_string(),
            optional_timestamp(invitation.expire_time.as_ref()),
        ),
        (
            "resend_count".to_string(),
            Value::from(invitation.resend_count),
        ),
        ("accepted_by".to_string(), text(&invitation.accepted_by)),
        ("revoked_by".to_string(), text(&invitation.revoked_by)),
        ("declined_by".to_string(), text(&invitation.declined_by)),
    ])
}

fn duration(value: Option<&prost_types::Duration>) -> Value {
    value.map_or(Value::String(String::new()), |d| {
        Value::String(format!("{}s", d.seconds))
    })
}

/// What an auditor follows of an access policy.
pub fn policy_fields(policy: &AccessPolicy) -> Map<String, Value> {
    let gated = policy
        .gated_grants
        .iter()
        .map(|grant| {
            text(
                GatedGrant::try_from(*grant)
                    .unwrap_or(GatedGrant::Unspecified)
                    .as_str_name()
                    .trim_start_matches("GATED_GRANT_"),
            )
        })
        .collect();
    let short = ShortOfApprovers::try_from(policy.short_of_approvers)
        .unwrap_or(ShortOfApprovers::Unspecified);
    Map::from_iter([
        ("gated_grants".to_string(), Value::Array(gated)),
        (
            "required_approvals".to_string(),
            Value::from(policy.required_approvals),
        ),
        (
            "request_lifetime".to_string(),
            duration(policy.request_lifetime.as_ref()),
        ),
        (
            "short_of_approvers".to_string(),
            text(
                short
                    .as_str_name()
                    .trim_start_matches("SHORT_OF_APPROVERS_"),
            ),
        ),
        (
            "default_access_duration".to_string(),
            duration(policy.default_access_duration.as_ref()),
        ),
        (
            "max_access_duration".to_string(),
            duration(policy.max_access_duration.as_ref()),
        ),
        (
            "access_duration_required".to_string(),
            Value::Bool(policy.access_duration_required),
        ),
    ])
}

/// What an auditor follows of an access request.
pub fn access_request_fields(request: &AccessRequest) -> Map<String, Value> {
    let state =
        AccessRequestState::try_from(request.state).unwrap_or(AccessRequestState::Unspecified);
    Map::from_iter([
        ("subject".to_string(), text(&request.subject)),
        ("role".to_string(), role_name(request.role)),
        ("reason".to_string(), text(&request.reason)),
        (
            "access_duration".to_string(),
            duration(request.access_duration.as_ref()),
        ),
        (
            "state".to_string(),
            text(
                state
                    .as_str_name()
                    .trim_start_matches("ACCESS_REQUEST_STATE_"),
            ),
        ),
        ("requester".to_string(), text(&request.requester)),
        (
            "approvals".to_string(),
            Value::Array(
                request
                    .approvals
                    .iter()
                    .map(|a| text(&a.approver))
                    .collect(),
            ),
        ),
        (
            "required_approvals".to_string(),
            Value::from(request.required_approvals),
        ),
        ("escalated".to_string(), Value::Bool(request.escalated)),
        ("decided_by".to_string(), text(&request.decided_by)),
        ("decline_reason".to_string(), text(&request.decline_reason)),
    ])
}

/// What an auditor follows of a sent message.
pub fn message_fields(message: &Message) -> Map<String, Value> {
    let policy = ReadPolicy::try_from(message.read_policy).unwrap_or(ReadPolicy::Unspecified);
    Map::from_iter([
        ("title".to_string(), text(&message.title)),
        ("body".to_string(), text(&message.body)),
        (
            "read_policy".to_string(),
            text(policy.as_str_name().trim_start_matches("READ_POLICY_")),
        ),
        (
            "recipients".to_string(),
            Value::Array(message.recipients.iter().map(|r| text(r)).collect()),
        ),
        (
            "all_customers".to_string(),
            Value::Bool(message.all_customers),
        ),
        (
            "roles".to_string(),
            Value::Array(message.roles.iter().map(|role| role_name(*role)).collect()),
        ),
        (
            "expire_time".to_string(),
            optional_timestamp(message.expire_time.as_ref()),
        ),
    ])
}

/// The fields that differ between `before` and `after`, each side with its own value. A
/// creation (`before` is `None`) records every field after; a removal (`after` is `None`) every
/// field before. A field empty on one side and missing on the other is no change.
pub fn diff(
    before: Option<Map<String, Value>>,
    after: Option<Map<String, Value>>,
) -> (Map<String, Value>, Map<String, Value>) {
    match (before, after) {
        (None, None) => (Map::new(), Map::new()),
        (None, Some(after)) => (Map::new(), after),
        (Some(before), None) => (before, Map::new()),
        (Some(before), Some(after)) => {
            let mut changed_before = Map::new();
            let mut changed_after = Map::new();
            for (key, new) in &after {
                match before.get(key) {
                    Some(old) if old == new => {}
                    old => {
                        if let Some(old) = old {
                            changed_before.insert(key.clone(), old.clone());
                        }
                        changed_after.insert(key.clone(), new.clone());
                    }
                }
            }
            (changed_before, changed_after)
        }
    }
}
