//! The whole proto ↔ domain mapping of the invitation service: requests' fields into domain
//! values, domain values into `tenantry.invitation.v1` messages (also the payloads of its
//! events).

use chrono::{DateTime, Utc};
use tenantry_platform::etag::etag;
use tenantry_platform::time::{to_optional_timestamp, to_timestamp};
use tenantry_platform::{AccountId, ApiError};
use tenantry_proto::invitation::v1 as wire;

use crate::domain::{Delivery, DeliveryState, Invitation, InvitationId, InvitationState, Role};

/// A required role; UNSPECIFIED or unknown values give the violation's description.
pub fn role_from_wire(value: i32) -> Result<Role, &'static str> {
    Role::from_wire(value).ok_or("required: ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE")
}

/// A state on the wire.
pub fn state_to_wire(state: InvitationState) -> i32 {
    match state {
        InvitationState::Pending => wire::InvitationState::Pending as i32,
        InvitationState::Accepted => wire::InvitationState::Accepted as i32,
        InvitationState::Revoked => wire::InvitationState::Revoked as i32,
        InvitationState::Expired => wire::InvitationState::Expired as i32,
        InvitationState::Declined => wire::InvitationState::Declined as i32,
    }
}

/// The ListInvitations filter: empty = PENDING only; UNSPECIFIED or unknown values are
/// INVALID_ARGUMENT naming `states`. Duplicates are dropped; the result is sorted.
pub fn states_filter(values: &[i32]) -> Result<Vec<InvitationState>, ApiError> {
    if values.is_empty() {
        return Ok(vec![InvitationState::Pending]);
    }
    let mut states = Vec::new();
    for value in values {
        let state = match wire::InvitationState::try_from(*value) {
            Ok(wire::InvitationState::Pending) => InvitationState::Pending,
            Ok(wire::InvitationState::Accepted) => InvitationState::Accepted,
            Ok(wire::InvitationState::Revoked) => InvitationState::Revoked,
            Ok(wire::InvitationState::Expired) => InvitationState::Expired,
            Ok(wire::InvitationState::Declined) => InvitationState::Declined,
            _ => {
                return Err(ApiError::invalid_field(
                    "states",
                    "each state must be PENDING, ACCEPTED, DECLINED, REVOKED or EXPIRED",
                ));
            }
        };
        if !states.contains(&state) {
            states.push(state);
        }
    }
    states.sort_by_key(|state| state.as_str());
    Ok(states)
}

fn delivery_state_to_wire(state: DeliveryState) -> i32 {
    match state {
        DeliveryState::Queued => wire::EmailDeliveryState::Queued as i32,
        DeliveryState::Sent => wire::EmailDeliveryState::Sent as i32,
        DeliveryState::Failed => wire::EmailDeliveryState::Failed as i32,
    }
}

fn delivery_to_wire(delivery: &Delivery) -> wire::EmailDelivery {
    wire::EmailDelivery {
        state: delivery_state_to_wire(delivery.state),
        attempts: delivery.attempts,
        failure_reason: delivery.failure_reason.clone(),
        last_attempt_time: to_optional_timestamp(delivery.last_attempt_time),
        sent_time: to_optional_timestamp(delivery.sent_time),
    }
}

/// An invitation on the wire, with its state as seen at `now` (expiry applied on read).
/// Never carries the secret or its hash: the domain type has neither.
pub fn invitation_to_wire(invitation: &Invitation, now: DateTime<Utc>) -> wire::Invitation {
    wire::Invitation {
        name: invitation.name(),
        invitation_id: invitation.invitation_id.to_string(),
        account: invitation.account_id.name(),
        email: invitation.email.clone(),
        given_name: invitation.given_name.clone(),
        family_name: invitation.family_name.clone(),
        role: invitation.role.to_wire(),
        state: state_to_wire(invitation.state_at(now)),
        inviter: invitation.inviter.clone(),
        inviter_display_name: invitation.inviter_display_name.clone(),
        create_time: Some(to_timestamp(invitation.create_time)),
        expire_time: Some(to_timestamp(invitation.expire_time)),
        accept_time: to_optional_timestamp(invitation.accept_time),
        accepted_by: invitation.accepted_by.clone().unwrap_or_default(),
        revoke_time: to_optional_timestamp(invitation.revoke_time),
        etag: etag(invitation.version),
        delivery: Some(delivery_to_wire(&invitation.delivery)),
        resend_count: invitation.resend_count,
        last_sent_time: Some(to_timestamp(invitation.last_sent_time)),
        revoked_by: invitation.revoked_by.clone().unwrap_or_default(),
        decline_time: invitation.decline_time.map(to_timestamp),
        declined_by: invitation.declined_by.clone().unwrap_or_default(),
        reminder_sent_time: invitation.reminder_sent_time.map(to_timestamp),
    }
}

/// `(account_id, invitation_id)` in `accounts/{account_id}/invitations/{invitation_id}`; the
/// id must be a UUID in the form this service assigns (lower-case, hyphenated).
/// INVALID_ARGUMENT naming `field`.
pub fn parse_invitation_name(
    field: &str,
    name: &str,
) -> Result<(AccountId, InvitationId), ApiError> {
    tenantry_platform::names::parse_account_child(field, name, "invitations")
        .map(|(account, id)| (AccountId::trusted(account), InvitationId::trusted(id)))
}

/// A request timestamp; values no `google.protobuf.Timestamp` may hold are INVALID_ARGUMENT
/// naming `field`.
pub fn time_from_wire(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, ApiError> {
    tenantry_platform::time::from_timestamp(field, timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_names() {
        let id = "0190f7a4-1234-7abc-8def-0123456789ab";
        assert_eq!(
            parse_invitation_name("name", &format!("accounts/globex/invitations/{id}")).unwrap(),
            (AccountId::trusted("globex"), InvitationId::trusted(id))
        );
        for bad in [
            "",
            "accounts/globex",
            "accounts/globex/invitations/",
            "accounts/globex/invitations/not-a-uuid",
            "accounts/GLOBEX/invitations/0190f7a4-1234-7abc-8def-0123456789ab",
            "accounts/globex/members/0190f7a4-1234-7abc-8def-0123456789ab",
            "accounts/globex/invitations/0190F7A4-1234-7ABC-8DEF-0123456789AB",
            "accounts/globex/invitations/urn:uuid:0190f7a4-1234-7abc-8def-0123456789ab",
        ] {
            let error = parse_invitation_name("name", bad).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn state_filters() {
        assert_eq!(states_filter(&[]).unwrap(), vec![InvitationState::Pending]);
        assert_eq!(
            states_filter(&[4, 1, 4]).unwrap(),
            vec![InvitationState::Expired, InvitationState::Pending]
        );
        assert!(states_filter(&[0]).is_err());
        assert!(states_filter(&[1, 9]).is_err());
    }

    #[test]
    fn roles() {
        assert_eq!(role_from_wire(1), Ok(Role::Owner));
        assert_eq!(role_from_wire(3), Ok(Role::Employee));
        for bad in [0, 9] {
            assert_eq!(
                role_from_wire(bad),
                Err("required: ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE")
            );
        }
    }

    #[test]
    fn timestamps_and_etags() {
        use tenantry_platform::etag::etag_allows;
        let ok = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        assert_eq!(time_from_wire("t", &ok).unwrap().timestamp(), 1_700_000_000);
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(time_from_wire("t", &bad).is_err());
        assert!(etag_allows("", 3));
        assert!(etag_allows("3", 3));
        assert!(!etag_allows("2", 3));
    }
}
