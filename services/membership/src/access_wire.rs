//! The wire mapping of access governance: policies and access requests to and from
//! `tenantry.membership.v1`, with every field check a caller's error names.

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::ApiError;
use tenantry_platform::etag::etag;
use tenantry_platform::names::user_name;
use tenantry_platform::time::{from_duration, to_optional_timestamp, to_timestamp};
use tenantry_platform::{AccountId, UserId};
use tenantry_proto::membership::v1 as wire;

use crate::domain::members::Target;
use crate::domain::policy::{
    AccessPolicy, EffectivePolicy, GatedGrant, ShortOfApprovers, StoredPolicy, policy_name,
};
use crate::domain::requests::{AccessRequest, MAX_REASON_CHARS, NewRequest, RequestState};
use crate::domain::validate_email;
use crate::wire::role_from_wire;

/// `accounts/{account_id}` of a policy name `accounts/{account_id}/accessPolicy`.
pub fn policy_account(field: &str, name: &str) -> Result<AccountId, ApiError> {
    let account = name.strip_suffix("/accessPolicy").ok_or_else(|| {
        ApiError::invalid_field(field, "must be `accounts/{account_id}/accessPolicy`")
    })?;
    AccountId::from_name(field, account)
}

fn grant_to_wire(grant: GatedGrant) -> i32 {
    (match grant {
        GatedGrant::OwnerRole => wire::GatedGrant::OwnerRole,
        GatedGrant::AdminRole => wire::GatedGrant::AdminRole,
        GatedGrant::AddMyself => wire::GatedGrant::AddMyself,
        GatedGrant::Invitations => wire::GatedGrant::Invitations,
        GatedGrant::Extensions => wire::GatedGrant::Extensions,
    }) as i32
}

fn grant_from_wire(value: i32) -> Option<GatedGrant> {
    Some(match wire::GatedGrant::try_from(value).ok()? {
        wire::GatedGrant::Unspecified => return None,
        wire::GatedGrant::OwnerRole => GatedGrant::OwnerRole,
        wire::GatedGrant::AdminRole => GatedGrant::AdminRole,
        wire::GatedGrant::AddMyself => GatedGrant::AddMyself,
        wire::GatedGrant::Invitations => GatedGrant::Invitations,
        wire::GatedGrant::Extensions => GatedGrant::Extensions,
    })
}

fn duration_to_wire(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.num_seconds(),
        nanos: 0,
    }
}

/// A policy's rules on the wire, named for `account_id`.
fn rules_to_wire(account_id: &AccountId, rules: &AccessPolicy) -> wire::AccessPolicy {
    wire::AccessPolicy {
        name: policy_name(account_id),
        gated_grants: rules.gated.iter().copied().map(grant_to_wire).collect(),
        required_approvals: rules.required_approvals,
        request_lifetime: rules.request_lifetime.map(duration_to_wire),
        short_of_approvers: match rules.short_of_approvers {
            None => wire::ShortOfApprovers::Unspecified,
            Some(ShortOfApprovers::Refuse) => wire::ShortOfApprovers::Refuse,
            Some(ShortOfApprovers::EscalateToPartnerOwners) => {
                wire::ShortOfApprovers::EscalateToPartnerOwners
            }
        } as i32,
        default_access_duration: rules.default_access_duration.map(duration_to_wire),
        max_access_duration: rules.max_access_duration.map(duration_to_wire),
        access_duration_required: rules.access_duration_required,
        etag: String::new(),
        update_time: None,
        update_by: String::new(),
    }
}

/// The account's own policy on the wire (a policy never set: defaults, empty etag).
pub fn policy_to_wire(account_id: &AccountId, stored: Option<&StoredPolicy>) -> wire::AccessPolicy {
    match stored {
        None => rules_to_wire(account_id, &AccessPolicy::default()),
        Some(stored) => wire::AccessPolicy {
            etag: etag(stored.version),
            update_time: Some(to_timestamp(stored.update_time)),
            update_by: stored.update_by.clone(),
            ..rules_to_wire(account_id, &stored.policy)
        },
    }
}

/// The policy in force on the wire: named for the one account whose policy it is, or for
/// `account_id` when it merges two.
pub fn effective_to_wire(
    account_id: &AccountId,
    effective: &EffectivePolicy,
) -> wire::AccessPolicy {
    let owner = match (&effective.own, &effective.partner) {
        (None, Some(partner)) => &partner.account_id,
        _ => account_id,
    };
    rules_to_wire(owner, &effective.rules)
}

/// The rules of an UpdateAccessPolicy's `policy`; errors name `policy.{field}`.
pub fn policy_from_wire(policy: &wire::AccessPolicy) -> Result<AccessPolicy, ApiError> {
    let mut gated = std::collections::BTreeSet::new();
    for value in &policy.gated_grants {
        let grant = grant_from_wire(*value).ok_or_else(|| {
            ApiError::invalid_field(
                "policy.gated_grants",
                "every value must be a known GatedGrant other than UNSPECIFIED",
            )
        })?;
        if !gated.insert(grant) {
            return Err(ApiError::invalid_field(
                "policy.gated_grants",
                format!("{} is listed twice", grant.as_str()),
            ));
        }
    }
    let short_of_approvers = match wire::ShortOfApprovers::try_from(policy.short_of_approvers) {
        Ok(wire::ShortOfApprovers::Unspecified) => None,
        Ok(wire::ShortOfApprovers::Refuse) => Some(ShortOfApprovers::Refuse),
        Ok(wire::ShortOfApprovers::EscalateToPartnerOwners) => {
            Some(ShortOfApprovers::EscalateToPartnerOwners)
        }
        Err(_) => {
            return Err(ApiError::invalid_field(
                "policy.short_of_approvers",
                "not a known ShortOfApprovers",
            ));
        }
    };
    let duration = |field: &str, value: Option<&prost_types::Duration>| {
        value.map(|value| from_duration(field, value)).transpose()
    };
    let rules = AccessPolicy {
        gated,
        required_approvals: policy.required_approvals,
        request_lifetime: duration("policy.request_lifetime", policy.request_lifetime.as_ref())?,
        short_of_approvers,
        default_access_duration: duration(
            "policy.default_access_duration",
            policy.default_access_duration.as_ref(),
        )?,
        max_access_duration: duration(
            "policy.max_access_duration",
            policy.max_access_duration.as_ref(),
        )?,
        access_duration_required: policy.access_duration_required,
    };
    rules.validate().map_err(|(field, description)| {
        ApiError::invalid_field(format!("policy.{field}"), description)
    })?;
    Ok(rules)
}

/// A reason: required (or optional), one to [`MAX_REASON_CHARS`] characters, no control
/// characters but line breaks.
pub fn reason(field: &str, text: &str, required: bool) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() && required {
        return Err(ApiError::invalid_field(
            field,
            "required: say why the access is needed",
        ));
    }
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(tenantry_platform::text::is_forbidden_in_text)
    {
        return Err(ApiError::invalid_field(
            field,
            "must not contain control or invisible characters",
        ));
    }
    Ok(text.to_string())
}

/// A CreateAccessRequest.
pub fn new_request(request: &wire::CreateAccessRequestRequest) -> Result<NewRequest, ApiError> {
    let account_id = AccountId::from_name("parent", &request.parent)?;
    let asked = request
        .access_request
        .as_ref()
        .ok_or_else(|| ApiError::invalid_field("access_request", "required"))?;
    let subject = match (asked.subject.is_empty(), asked.subject_email.is_empty()) {
        (false, true) => Target::User(UserId::from_name("access_request.subject", &asked.subject)?),
        (true, false) => {
            Target::Email(validate_email(&asked.subject_email).map_err(|reason| {
                ApiError::invalid_field("access_request.subject_email", reason)
            })?)
        }
        (true, true) => {
            return Err(ApiError::invalid_field(
                "access_request.subject",
                "required: `subject` (users/{sub}) or `subject_email`",
            ));
        }
        (false, false) => {
            return Err(ApiError::invalid_field(
                "access_request.subject",
                "give `subject` or `subject_email`, not both",
            ));
        }
    };
    let access_duration = asked
        .access_duration
        .as_ref()
        .map(|duration| {
            let duration = from_duration("access_request.access_duration", duration)?;
            crate::domain::expiry::check_access_duration(duration)
                .map_err(|reason| ApiError::invalid_field("access_request.access_duration", reason))
        })
        .transpose()?;
    Ok(NewRequest {
        account_id,
        subject,
        role: role_from_wire("access_request.role", asked.role)?,
        reason: reason("access_request.reason", &asked.reason, true)?,
        access_duration,
    })
}

/// The state filter of ListAccessRequests.
pub fn states_filter(states: &[i32]) -> Result<Vec<RequestState>, ApiError> {
    states
        .iter()
        .map(|value| {
            state_from_wire(*value).ok_or_else(|| {
                ApiError::invalid_field(
                    "states",
                    "every value must be a known state other than UNSPECIFIED",
                )
            })
        })
        .collect()
}

fn state_from_wire(value: i32) -> Option<RequestState> {
    Some(match wire::AccessRequestState::try_from(value).ok()? {
        wire::AccessRequestState::Unspecified => return None,
        wire::AccessRequestState::Pending => RequestState::Pending,
        wire::AccessRequestState::Approved => RequestState::Approved,
        wire::AccessRequestState::Declined => RequestState::Declined,
        wire::AccessRequestState::Cancelled => RequestState::Cancelled,
        wire::AccessRequestState::Expired => RequestState::Expired,
    })
}

fn state_to_wire(state: RequestState) -> i32 {
    (match state {
        RequestState::Pending => wire::AccessRequestState::Pending,
        RequestState::Approved => wire::AccessRequestState::Approved,
        RequestState::Declined => wire::AccessRequestState::Declined,
        RequestState::Cancelled => wire::AccessRequestState::Cancelled,
        RequestState::Expired => wire::AccessRequestState::Expired,
    }) as i32
}

/// A request on the wire as it is at `now` (lapsed: EXPIRED).
pub fn request_to_wire(request: &AccessRequest, now: DateTime<Utc>) -> wire::AccessRequest {
    wire::AccessRequest {
        name: request.name(),
        subject: user_name(request.subject.as_str()),
        subject_email: request.subject_email.clone(),
        role: request.role.to_wire(),
        reason: request.reason.clone(),
        access_duration: request.access_duration.map(duration_to_wire),
        state: state_to_wire(request.state_at(now)),
        requester: user_name(request.requester.as_str()),
        approvals: request
            .approvals
            .iter()
            .map(|approval| wire::AccessApproval {
                approver: user_name(approval.approver.as_str()),
                approve_time: Some(to_timestamp(approval.approve_time)),
            })
            .collect(),
        required_approvals: request.required_approvals,
        escalated: request.escalated,
        create_time: Some(to_timestamp(request.create_time)),
        expire_time: Some(to_timestamp(request.expire_time)),
        decide_time: to_optional_timestamp(request.decide_time),
        decided_by: request.decided_by.clone().unwrap_or_default(),
        decline_reason: request.decline_reason.clone().unwrap_or_default(),
        etag: etag(request.version),
    }
}
