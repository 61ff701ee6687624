//! The whole proto ↔ domain mapping of membership: requests' fields into domain values (with
//! the field names and messages the API reports), and domain values back onto the wire, for
//! the handlers and for the `member.*` events alike.

use tenantry_platform::etag::etag;
use tenantry_platform::idempotency::{REQUEST_ID_FIELD, parse_request_id};
use tenantry_platform::names::{account_name, member_name, user_name};
use tenantry_platform::time::to_timestamp;
use tenantry_platform::{AccountId, ApiError, UserId, UserIdentity};
use tenantry_proto::membership::v1 as wire;

use crate::domain::access::Access;
use crate::domain::authorize::Decision;
use crate::domain::members::{AddMember, MemberFilter, Target};
use crate::domain::owners::OwnerCapacity;
use crate::domain::{
    AccountFacts, Member, MemberSource, Permission, Role, UserProfile, validate_email,
};

/// A required role; UNSPECIFIED or unknown values are INVALID_ARGUMENT naming `field`.
pub fn role_from_wire(field: &str, value: i32) -> Result<Role, ApiError> {
    Role::from_wire(value).ok_or_else(|| {
        ApiError::invalid_field(field, "must be ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE")
    })
}

/// An AddMember request, from a service identity or not (see [`add_member_source`]).
pub fn add_member_request(
    request: &wire::AddMemberRequest,
    from_service: bool,
) -> Result<AddMember, ApiError> {
    let target = add_member_target(request.principal.as_ref())?;
    let source = add_member_source(request.source, from_service)?;
    let profile = request
        .invitee_profile
        .as_ref()
        .map(invitee_profile)
        .transpose()?;
    if profile.is_some()
        && !(source == MemberSource::Invitation && matches!(target, Target::User(_)))
    {
        return Err(ApiError::invalid_field(
            "invitee_profile",
            "only with source MEMBER_SOURCE_INVITATION and `user` (the invitation service \
             adding the person who accepted)",
        ));
    }
    Ok(AddMember {
        account_id: AccountId::from_name("parent", &request.parent)?,
        target,
        role: role_from_wire("role", request.role)?,
        source,
        request_id: request_id(&request.request_id)?,
        profile,
    })
}

/// The directory entry AddMember was given: the e-mail checked (the platform's rule), then
/// everything kept as given — as [`profile_of_user`] records the same token's claims on the
/// user's own calls, so the two write the same entry.
fn invitee_profile(profile: &wire::InviteeProfile) -> Result<UserProfile, ApiError> {
    tenantry_platform::email::validate_email(&profile.email)
        .map_err(|why| ApiError::invalid_field("invitee_profile.email", why))?;
    Ok(UserProfile {
        email: profile.email.clone(),
        given_name: profile.given_name.clone(),
        family_name: profile.family_name.clone(),
    })
}

/// Who AddMember adds: `user` (users/{sub}) or `email` (checked and normalized).
fn add_member_target(
    principal: Option<&wire::add_member_request::Principal>,
) -> Result<Target, ApiError> {
    match principal {
        None => Err(ApiError::invalid_field(
            "user",
            "required: who to add, as `user` (users/{sub}) or `email`",
        )),
        Some(wire::add_member_request::Principal::User(name)) => {
            Ok(Target::User(UserId::from_name("user", name)?))
        }
        Some(wire::add_member_request::Principal::Email(email)) => Ok(Target::Email(
            validate_email(email).map_err(|why| ApiError::invalid_field("email", why))?,
        )),
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
        Ok(wire::Permission::AuditRead) => Permission::AuditRead,
        Ok(wire::Permission::Unspecified) | Err(_) => {
            return Err(ApiError::invalid_field(
                "permission",
                "required: one of the PERMISSION_* values",
            ));
        }
    };
    Ok(permission)
}

/// AddMyself's optional `access_duration`, checked (see [`crate::domain::expiry`]).
pub fn access_duration(
    duration: Option<&prost_types::Duration>,
) -> Result<Option<chrono::Duration>, ApiError> {
    let Some(duration) = duration else {
        return Ok(None);
    };
    let duration = tenantry_platform::time::from_duration("access_duration", duration)?;
    crate::domain::expiry::check_access_duration(duration)
        .map(Some)
        .map_err(|reason| ApiError::invalid_field("access_duration", reason))
}

/// A membership on the wire.
pub fn member_to_wire(member: &Member) -> wire::Member {
    wire::Member {
        name: member_name(&member.account_id, &member.user_id),
        user: user_name(&member.user_id),
        email: member.profile.email.clone(),
        given_name: member.profile.given_name.clone(),
        family_name: member.profile.family_name.clone(),
        role: member.role.to_wire(),
        source: source_to_wire(member.source),
        added_by: member.added_by.clone(),
        create_time: Some(to_timestamp(member.create_time)),
        update_time: Some(to_timestamp(member.update_time)),
        etag: etag(member.version),
        expire_time: member.expire_time.map(to_timestamp),
    }
}

/// One row of the account switcher.
pub fn membership_to_wire(member: &Member, account: &AccountFacts) -> wire::AccountMembership {
    wire::AccountMembership {
        account: account_name(&account.account_id),
        account_id: account.account_id.to_string(),
        display_name: account.display_name.clone(),
        role: member.role.to_wire(),
        partner: account.partner,
        managed_by: account
            .managed_by
            .as_ref()
            .map(|partner| partner.name())
            .unwrap_or_default(),
        source: source_to_wire(member.source),
        account_state: account.state.to_wire(),
    }
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

/// The filters of a ListMembers request: the roles (deduplicated, in role order) and the
/// e-mail address (normalized to lower case; empty means no filter).
pub fn member_filter(roles: &[i32], email: &str) -> Result<MemberFilter, ApiError> {
    let mut roles = roles
        .iter()
        .map(|role| role_from_wire("roles", *role))
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    let email = email.trim().to_lowercase();
    if email.chars().count() > 254 || email.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "email",
            "must be an e-mail address of at most 254 characters",
        ));
    }
    Ok(MemberFilter {
        roles,
        email: (!email.is_empty()).then_some(email),
    })
}

/// Checks UpdateMember's `update_mask`: only `role` may be named.
pub fn check_update_mask(mask: Option<&prost_types::FieldMask>) -> Result<(), ApiError> {
    if let Some(mask) = mask
        && let Some(path) = mask.paths.iter().find(|path| path.as_str() != "role")
    {
        return Err(ApiError::invalid_field(
            "update_mask",
            format!("only `role` can be changed, not `{path}`"),
        ));
    }
    Ok(())
}

/// The answer to Authorize: the decision and the subject's standing in the account.
pub fn authorize_response(
    access: &Access,
    permission: Permission,
    decision: Decision,
) -> wire::AuthorizeResponse {
    wire::AuthorizeResponse {
        allowed: decision.allowed,
        role: Role::option_to_wire(access.role),
        partner_role: Role::option_to_wire(access.partner_role),
        account_exists: access.facts.is_some(),
        granted_by: if decision.allowed {
            access
                .granting(permission)
                .map(|role| role.as_str().to_string())
                .unwrap_or_default()
        } else {
            String::new()
        },
        reason: decision.reason,
        keepable: permission.keepable(),
    }
}

/// The answer to GetOwnerCapacity.
pub fn owner_capacity_to_wire(capacity: OwnerCapacity) -> wire::GetOwnerCapacityResponse {
    wire::GetOwnerCapacityResponse {
        owner_count: i32::try_from(capacity.owners).unwrap_or(i32::MAX),
        max_owners: i32::try_from(capacity.max_owners).unwrap_or(i32::MAX),
        has_room: capacity.has_room,
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
        assert!(permission_from_wire(14).is_err());
        assert_eq!(permission_from_wire(13).unwrap(), Permission::AuditRead);
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
        assert!(tenantry_platform::etag::etag_allows("", 3));
        assert!(tenantry_platform::etag::etag_allows("3", 3));
        assert!(!tenantry_platform::etag::etag_allows("2", 3));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
