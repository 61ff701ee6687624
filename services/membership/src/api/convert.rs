//! Wire ↔ domain mapping.

use tenantry_platform::idempotency::{REQUEST_ID_FIELD, parse_request_id};
use tenantry_platform::names::{account_name, member_name, user_name};
use tenantry_platform::time::to_timestamp;
use tenantry_platform::{ApiError, UserIdentity};
use tenantry_proto::membership::v1 as wire;
use tenantry_proto::registry::v1::AccountState as WireState;

use crate::domain::{
    AccountFacts, AccountState, Member, MemberSource, Permission, Role, UserProfile,
};

/// A required role; UNSPECIFIED or unknown values are INVALID_ARGUMENT naming `field`.
pub fn role_from_wire(field: &str, value: i32) -> Result<Role, ApiError> {
    match wire::Role::try_from(value) {
        Ok(wire::Role::Owner) => Ok(Role::Owner),
        Ok(wire::Role::Admin) => Ok(Role::Admin),
        Ok(wire::Role::Employee) => Ok(Role::Employee),
        _ => Err(ApiError::invalid_field(
            field,
            "must be ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE",
        )),
    }
}

/// A role on the wire; `None` is ROLE_UNSPECIFIED.
pub fn role_to_wire(role: Option<Role>) -> i32 {
    match role {
        Some(Role::Owner) => wire::Role::Owner as i32,
        Some(Role::Admin) => wire::Role::Admin as i32,
        Some(Role::Employee) => wire::Role::Employee as i32,
        None => wire::Role::Unspecified as i32,
    }
}

/// A source on the wire.
pub fn source_to_wire(source: MemberSource) -> i32 {
    match source {
        MemberSource::Direct => wire::MemberSource::Direct as i32,
        MemberSource::SelfAssigned => wire::MemberSource::SelfAssigned as i32,
        MemberSource::Invitation => wire::MemberSource::Invitation as i32,
    }
}

/// The source AddMember records: UNSPECIFIED means DIRECT; INVITATION only from a service
/// identity; SELF_ASSIGNED never (that is AddMyself).
pub fn add_member_source(value: i32, from_service: bool) -> Result<MemberSource, ApiError> {
    match wire::MemberSource::try_from(value) {
        Ok(wire::MemberSource::Unspecified | wire::MemberSource::Direct) => {
            Ok(MemberSource::Direct)
        }
        Ok(wire::MemberSource::Invitation) if from_service => Ok(MemberSource::Invitation),
        Ok(wire::MemberSource::Invitation) => Err(ApiError::invalid_field(
            "source",
            "MEMBER_SOURCE_INVITATION is set by the invitation service only",
        )),
        Ok(wire::MemberSource::SelfAssigned) => Err(ApiError::invalid_field(
            "source",
            "MEMBER_SOURCE_SELF_ASSIGNED is set by AddMyself only",
        )),
        Err(_) => Err(ApiError::invalid_field("source", "unknown member source")),
    }
}

/// The permission asked about; UNSPECIFIED or unknown values are INVALID_ARGUMENT.
pub fn permission_from_wire(value: i32) -> Result<Permission, ApiError> {
    let permission = match wire::Permission::try_from(value) {
        Ok(wire::Permission::AccountRead) => Permission::AccountRead,
        Ok(wire::Permission::AccountUpdate) => Permission::AccountUpdate,
        Ok(wire::Permission::AccountDelete) => Permission::AccountDelete,
        Ok(wire::Permission::MembersList) => Permission::MembersList,
        Ok(wire::Permission::MembersManage) => Permission::MembersManage,
        Ok(wire::Permission::OwnersManage) => Permission::OwnersManage,
        Ok(wire::Permission::InvitationsManage) => Permission::InvitationsManage,
        Ok(wire::Permission::AddMyself) => Permission::AddMyself,
        Ok(wire::Permission::CustomersCreate) => Permission::CustomersCreate,
        Ok(wire::Permission::CustomersList) => Permission::CustomersList,
        Ok(wire::Permission::MessagesSend) => Permission::MessagesSend,
        Ok(wire::Permission::MessagesList) => Permission::MessagesList,
        Ok(wire::Permission::Unspecified) | Err(_) => {
            return Err(ApiError::invalid_field(
                "permission",
                "required: one of the PERMISSION_* values",
            ));
        }
    };
    Ok(permission)
}

/// An account state on the wire.
pub fn account_state_to_wire(state: AccountState) -> i32 {
    match state {
        AccountState::Active => WireState::Active as i32,
        AccountState::Disabled => WireState::Disabled as i32,
        AccountState::Deleted => WireState::Deleted as i32,
    }
}

/// A membership on the wire.
pub fn member_to_wire(member: &Member) -> wire::Member {
    wire::Member {
        name: member_name(&member.account_id, &member.user_id),
        user: user_name(&member.user_id),
        email: member.profile.email.clone(),
        given_name: member.profile.given_name.clone(),
        family_name: member.profile.family_name.clone(),
        role: role_to_wire(Some(member.role)),
        source: source_to_wire(member.source),
        added_by: member.added_by.clone(),
        create_time: Some(to_timestamp(member.create_time)),
        update_time: Some(to_timestamp(member.update_time)),
        etag: etag(member.version),
    }
}

/// One row of the account switcher.
pub fn membership_to_wire(member: &Member, account: &AccountFacts) -> wire::AccountMembership {
    wire::AccountMembership {
        account: account_name(&account.account_id),
        account_id: account.account_id.clone(),
        display_name: account.display_name.clone(),
        role: role_to_wire(Some(member.role)),
        partner: account.partner,
        managed_by: account
            .managed_by
            .as_deref()
            .map(account_name)
            .unwrap_or_default(),
        source: source_to_wire(member.source),
        account_state: account_state_to_wire(account.state),
    }
}

/// The etag of a row version.
pub fn etag(version: i64) -> String {
    version.to_string()
}

/// Whether a request's etag allows a change of the row at `version` (empty: no check).
pub fn etag_allows(sent: &str, version: i64) -> bool {
    sent.is_empty() || sent == etag(version)
}

/// The directory entry from a person's token claims.
pub fn profile_of_user(user: &UserIdentity) -> UserProfile {
    UserProfile {
        email: user.email.clone().unwrap_or_default(),
        given_name: user.given_name.clone().unwrap_or_default(),
        family_name: user.family_name.clone().unwrap_or_default(),
    }
}

/// The directory entry from an Authorize subject.
pub fn profile_of_subject(subject: &wire::Subject) -> UserProfile {
    UserProfile {
        email: subject.email.trim().to_string(),
        given_name: subject.given_name.trim().to_string(),
        family_name: subject.family_name.trim().to_string(),
    }
}

/// The optional `request_id` field: empty, or a UUID (returned in canonical lower-case form).
pub fn request_id(value: &str) -> Result<Option<String>, ApiError> {
    parse_request_id(REQUEST_ID_FIELD, value)
}

#[cfg(test)]
mod tests {
    use tenantry_platform::idempotency::fingerprint;

    use super::*;

    #[test]
    fn sources_from_people_and_services() {
        let direct = wire::MemberSource::Direct as i32;
        let invitation = wire::MemberSource::Invitation as i32;
        let self_assigned = wire::MemberSource::SelfAssigned as i32;
        assert_eq!(add_member_source(0, false).unwrap(), MemberSource::Direct);
        assert_eq!(
            add_member_source(direct, false).unwrap(),
            MemberSource::Direct
        );
        assert_eq!(
            add_member_source(invitation, true).unwrap(),
            MemberSource::Invitation
        );
        for (value, service) in [(invitation, false), (self_assigned, true), (99, true)] {
            let error = add_member_source(value, service).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            assert!(error.message().starts_with("source"), "{}", error.message());
        }
    }

    #[test]
    fn roles_and_permissions_need_a_value() {
        assert!(role_from_wire("role", 0).is_err());
        assert!(role_from_wire("role", 42).is_err());
        assert_eq!(role_from_wire("role", 1).unwrap(), Role::Owner);
        assert!(permission_from_wire(0).is_err());
        assert!(permission_from_wire(13).is_err());
        assert_eq!(permission_from_wire(8).unwrap(), Permission::AddMyself);
    }

    #[test]
    fn request_ids_and_etags() {
        assert_eq!(request_id("").unwrap(), None);
        assert!(request_id("not-a-uuid").is_err());
        assert_eq!(
            request_id("6F9619FF-8B86-D011-B42D-00CF4FC964FF")
                .unwrap()
                .unwrap(),
            "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
        );
        assert!(etag_allows("", 3));
        assert!(etag_allows("3", 3));
        assert!(!etag_allows("2", 3));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
