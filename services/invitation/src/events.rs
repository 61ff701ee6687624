//! The `invitation.*` events (tenantry.events.v1), built from the domain type so they can never
//! carry the secret or its hash. Each is published under the type declared for its payload
//! (`tenantry_proto::EventType`).

use chrono::{DateTime, Utc};
use tenantry_events::Event;
use tenantry_proto::events::v1 as events;
use tenantry_proto::invitation::v1 as wire;

use crate::domain::Invitation;
use crate::wire::{invitation_to_wire, state_to_wire};

/// The CloudEvents source of every event this service publishes.
pub const SOURCE: &str = "/tenantry/invitation";
/// The actor of changes the service makes on its own (expiry, withdrawals).
pub const SYSTEM_ACTOR: &str = "services/invitation";

/// `invitation.created`: the mailer sends the first e-mail.
pub fn created(invitation: &Invitation, actor: &str, now: DateTime<Utc>) -> Event {
    let payload = events::InvitationCreated {
        invitation: Some(invitation_to_wire(invitation, now)),
        actor: actor.to_string(),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `invitation.resent` of `previous` (as it was before): the mailer sends a new e-mail with a
/// new secret. The payload's `invitation.resend_count` is the generation the mailer compares
/// with the row.
pub fn resent(
    invitation: &Invitation,
    previous: &Invitation,
    actor: &str,
    now: DateTime<Utc>,
) -> Event {
    let payload = events::InvitationResent {
        invitation: Some(invitation_to_wire(invitation, now)),
        actor: actor.to_string(),
        previous: Some(previous_to_wire(previous, now)),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `invitation.accepted` of `previous` (as it was before), with the resulting membership's
/// name.
pub fn accepted(
    invitation: &Invitation,
    previous: &Invitation,
    member: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Event {
    let payload = events::InvitationAccepted {
        invitation: Some(invitation_to_wire(invitation, now)),
        member: member.to_string(),
        actor: actor.to_string(),
        previous: Some(previous_to_wire(previous, now)),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `invitation.revoked` of `previous` (as it was before), by a user or by [`SYSTEM_ACTOR`].
pub fn revoked(
    invitation: &Invitation,
    previous: &Invitation,
    actor: &str,
    now: DateTime<Utc>,
) -> Event {
    let payload = events::InvitationRevoked {
        invitation: Some(invitation_to_wire(invitation, now)),
        actor: actor.to_string(),
        previous: Some(previous_to_wire(previous, now)),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `invitation.expired` of `previous` (as it was before: PENDING, past its expiry).
pub fn expired(invitation: &Invitation, previous: &Invitation, now: DateTime<Utc>) -> Event {
    let payload = events::InvitationExpired {
        invitation: Some(invitation_to_wire(invitation, now)),
        previous: Some(previous_to_wire(previous, now)),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `invitation.declined` of `previous` (as it was before), by the invitee.
pub fn declined(
    invitation: &Invitation,
    previous: &Invitation,
    actor: &str,
    now: DateTime<Utc>,
) -> Event {
    let payload = events::InvitationDeclined {
        invitation: Some(invitation_to_wire(invitation, now)),
        actor: actor.to_string(),
        previous: Some(previous_to_wire(previous, now)),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// An event's `previous`: the invitation as it was stored before the change. Its state is the
/// stored one, not the state as of `now` (which reads show): an invitation this change expires
/// was PENDING before it, though already past its expiry.
fn previous_to_wire(previous: &Invitation, now: DateTime<Utc>) -> wire::Invitation {
    wire::Invitation {
        state: state_to_wire(previous.state),
        ..invitation_to_wire(previous, now)
    }
}
