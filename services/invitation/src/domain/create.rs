//! CreateInvitation's rule, without I/O: the request's fields validated (every violation
//! reported at once), the new invitation's expiry, the OWNER limit and the existing members
//! checked early, and how a retry of the request is recognised. Who may invite for which role
//! is [`super::permissions_to_manage`].

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::idempotency::RequestKey;
use tenantry_platform::{AccountId, ApiError, Violations};

use super::{
    InvitationError, NewInvitation, Role, expiry_of_new, normalize_email, validate_email,
    validate_name,
};

/// The RPC, as recorded with its request ids.
pub const METHOD: &str = "CreateInvitation";

/// A CreateInvitation request as parsed from the wire, its fields not validated yet.
#[derive(Clone, Debug)]
pub struct Requested<'a> {
    /// The account (already parsed from `parent`).
    pub account_id: AccountId,
    /// `email` as sent.
    pub email: &'a str,
    /// `given_name` as sent.
    pub given_name: &'a str,
    /// `family_name` as sent.
    pub family_name: &'a str,
    /// `role`, or why the wire value names none.
    pub role: Result<Role, &'static str>,
    /// `expire_time`, if sent (already a valid timestamp).
    pub expire_time: Option<DateTime<Utc>>,
    /// `users/{sub}` of the caller.
    pub inviter: String,
    /// The caller's name as the e-mail shows it ([`super::inviter_display_name`]).
    pub inviter_display_name: String,
}

/// A valid CreateInvitation request: what to store, and what the caller asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateInvitation {
    /// The invitation to store.
    pub new: NewInvitation,
    /// The expiry the caller asked for (part of the request's fingerprint), if any.
    pub requested_expiry: Option<DateTime<Utc>>,
}

impl CreateInvitation {
    /// Validates every field of `requested` (INVALID_ARGUMENT naming each offending field, in
    /// the order email, given_name, family_name, role, expire_time). The expiry is the
    /// requested one, or `now + lifetime`; a reminder is due `reminder_before` the expiry (see
    /// [`super::reminder_due`]).
    pub fn validate(
        requested: Requested<'_>,
        lifetime: Duration,
        reminder_before: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let mut violations = Violations::new();
        let email = violations.check("email", validate_email(requested.email));
        let given_name = violations.check("given_name", validate_name(requested.given_name));
        let family_name = violations.check("family_name", validate_name(requested.family_name));
        let role = violations.check("role", requested.role);
        let expire_time = violations.check(
            "expire_time",
            expiry_of_new(requested.expire_time, lifetime, now),
        );
        let (Some(email), Some(given_name), Some(family_name), Some(role), Some(expire_time)) =
            (email, given_name, family_name, role, expire_time)
        else {
            return Err(violations.into_error());
        };
        Ok(Self {
            new: NewInvitation {
                account_id: requested.account_id,
                email,
                given_name,
                family_name,
                role,
                inviter: requested.inviter,
                inviter_display_name: requested.inviter_display_name,
                expire_time,
                reminder_due_time: super::reminder_due(now, expire_time, reminder_before),
            },
            requested_expiry: requested.expire_time,
        })
    }

    /// The key by which a later call from `caller` under `request_id` is recognised as a retry
    /// of this request. The fingerprint's fields are fixed: fingerprints are stored.
    pub fn request_key(&self, request_id: String, caller: String) -> RequestKey {
        let new = &self.new;
        RequestKey::new(
            request_id,
            caller,
            METHOD,
            &[
                &new.account_id,
                &normalize_email(&new.email),
                &new.given_name,
                &new.family_name,
                new.role.as_str(),
                &self
                    .requested_expiry
                    .map(|time| time.to_rfc3339())
                    .unwrap_or_default(),
            ],
        )
    }

    /// Whether the OWNER limit applies: the invitation promises the OWNER role.
    pub fn invites_owner(&self) -> bool {
        self.new.role == Role::Owner
    }

    /// The OWNER limit, checked early (membership enforces it again on acceptance): an OWNER
    /// invitation needs room for one more OWNER now.
    pub fn check_owner_room(&self, has_room: bool) -> Result<(), InvitationError> {
        if self.invites_owner() && !has_room {
            return Err(InvitationError::OwnerLimit(self.new.account_id.clone()));
        }
        Ok(())
    }

    /// An invitation the access policy `gating` (if any) puts behind approval is refused, also
    /// for an operator: membership refuses its acceptance too (a gated role is never given by
    /// an invitation; operators grant it with AddMember).
    pub fn check_ungated(&self, gating: Option<&(String, String)>) -> Result<(), InvitationError> {
        match gating {
            Some((policy, grant)) => Err(InvitationError::ApprovalRequired {
                policy: policy.clone(),
                grant: if grant.is_empty() {
                    // A membership from before `gated_grant` existed.
                    "INVITATIONS".to_string()
                } else {
                    grant.clone()
                },
            }),
            None => Ok(()),
        }
    }

    /// An invitation is for someone who is not a member yet: `is_member` = a member of the
    /// account already has the e-mail.
    pub fn check_not_member(&self, is_member: bool) -> Result<(), InvitationError> {
        if is_member {
            return Err(InvitationError::AlreadyMember {
                account_id: self.new.account_id.clone(),
                email: self.new.email.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tenantry_platform::idempotency::fingerprint;

    use super::*;

    fn requested(role: Result<Role, &'static str>) -> Requested<'static> {
        Requested {
            account_id: AccountId::trusted("globex"),
            email: " Bob@Example.com ",
            given_name: " Bob ",
            family_name: "",
            role,
            expire_time: None,
            inviter: "users/alice".into(),
            inviter_display_name: "Alice".into(),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_valid_request_gets_its_expiry_and_key() {
        let create = CreateInvitation::validate(
            requested(Ok(Role::Owner)),
            Duration::hours(1),
            Duration::zero(),
            at(0),
        )
        .unwrap();
        assert_eq!(create.new.email, "Bob@Example.com");
        assert_eq!(create.new.given_name, "Bob");
        assert_eq!(create.new.expire_time, at(3600));
        let key = create.request_key("id".into(), "users/alice".into());
        assert_eq!(key.method, METHOD);
        assert_eq!(
            key.fingerprint,
            fingerprint(&[METHOD, "globex", "bob@example.com", "Bob", "", "OWNER", ""])
        );
        assert!(create.invites_owner());
        assert!(create.check_owner_room(true).is_ok());
        assert!(matches!(
            create.check_owner_room(false),
            Err(InvitationError::OwnerLimit(_))
        ));
        assert!(create.check_not_member(false).is_ok());
        assert!(matches!(
            create.check_not_member(true),
            Err(InvitationError::AlreadyMember { .. })
        ));
        let admin = CreateInvitation::validate(
            requested(Ok(Role::Admin)),
            Duration::hours(1),
            Duration::zero(),
            at(0),
        )
        .unwrap();
        assert!(!admin.invites_owner());
        assert!(admin.check_owner_room(false).is_ok(), "no OWNER, no limit");
    }

    #[test]
    fn every_bad_field_is_named_in_order() {
        let mut bad = requested(Err("required: ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE"));
        bad.email = "";
        bad.expire_time = Some(at(-1));
        let error = CreateInvitation::validate(bad, Duration::hours(1), Duration::zero(), at(0))
            .unwrap_err();
        let fields: Vec<_> = error
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["email", "role", "expire_time"]);
    }
}
