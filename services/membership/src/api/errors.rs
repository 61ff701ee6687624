//! The one mapping from [`MembershipError`] to the error a caller sees.

use tenantry_platform::ApiError;
use tenantry_platform::idempotency::RequestIdReused;
use tenantry_platform::names::{account_name, member_name};

use crate::domain::MembershipError;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

impl From<MembershipError> for ApiError {
    fn from(error: MembershipError) -> Self {
        match error {
            MembershipError::PermissionDenied => ApiError::permission_denied(),
            MembershipError::AccountNotFound(account_id) => ApiError::not_found(
                "ACCOUNT_NOT_FOUND",
                format!("{} does not exist", account_name(&account_id)),
            ),
            MembershipError::MemberNotFound {
                account_id,
                user_id,
            } => ApiError::not_found(
                "MEMBER_NOT_FOUND",
                format!("{} does not exist", member_name(&account_id, &user_id)),
            ),
            MembershipError::UserNotFound(email) => ApiError::not_found(
                "USER_NOT_FOUND",
                format!(
                    "email: no known user has the e-mail address {email}; add them by `user`, \
                     or invite them"
                ),
            ),
            MembershipError::AmbiguousEmail(email) => ApiError::failed_precondition(
                "AMBIGUOUS_EMAIL",
                "email",
                format!("several users have the e-mail address {email}; add one by `user`"),
            ),
            MembershipError::AlreadyMember {
                account_id,
                user_id,
            } => ApiError::already_exists(
                "ALREADY_MEMBER",
                format!(
                    "{} already exists; change the role with UpdateMember",
                    member_name(&account_id, &user_id)
                ),
            ),
            MembershipError::OwnerLimit(account_id) => ApiError::failed_precondition(
                "OWNER_LIMIT",
                account_name(&account_id),
                format!(
                    "{} already has {} OWNERs, the most an account may have",
                    account_name(&account_id),
                    crate::domain::owners::MAX_OWNERS
                ),
            ),
            MembershipError::LastOwner(account_id) => ApiError::failed_precondition(
                "LAST_OWNER",
                account_name(&account_id),
                format!(
                    "the last OWNER of {} can be neither removed nor demoted; make someone else \
                     OWNER first",
                    account_name(&account_id)
                ),
            ),
            MembershipError::AccountDeleted(account_id) => ApiError::failed_precondition(
                "ACCOUNT_DELETED",
                account_name(&account_id),
                format!("{} is deleted", account_name(&account_id)),
            ),
            MembershipError::AccountNotActive(account_id) => ApiError::failed_precondition(
                "ACCOUNT_NOT_ACTIVE",
                account_name(&account_id),
                format!("{} is not ACTIVE", account_name(&account_id)),
            ),
            MembershipError::NotTimeBound(member) => ApiError::failed_precondition(
                "NOT_TIME_BOUND",
                "expire_time",
                format!(
                    "{member} has no expiry: its access does not end, so it cannot be extended"
                ),
            ),
            MembershipError::ExpiryNotLater {
                member,
                expire_time,
            } => ApiError::failed_precondition(
                "EXPIRY_NOT_LATER",
                "expire_time",
                format!(
                    "{member} already lasts until {}; ask for a later time (to end access \
                     earlier, remove the member)",
                    expire_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
            MembershipError::AccessEnded {
                member,
                expire_time,
            } => ApiError::failed_precondition(
                "ACCESS_ENDED",
                "expire_time",
                format!(
                    "{member} ended at {} and is being removed; add the member again instead",
                    expire_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
            MembershipError::LastOwnerExpiry(account_id) => ApiError::failed_precondition(
                "LAST_OWNER",
                account_name(&account_id),
                format!(
                    "the last OWNER of {} cannot be time-bound; ask for no access_duration, or \
                     make someone else OWNER first",
                    account_name(&account_id)
                ),
            ),
            MembershipError::ApprovalRequired { policy, grant } => ApiError::failed_precondition(
                "APPROVAL_REQUIRED",
                policy.clone(),
                format!(
                    "{policy} puts this grant ({}) behind approval; ask for it with \
                     CreateAccessRequest",
                    grant.as_str()
                ),
            )
            .with_metadata("access_policy", policy)
            .with_metadata("gated_grant", grant.as_str()),
            MembershipError::PolicyRefused { field, description } => {
                ApiError::invalid_field(field, description)
            }
            MembershipError::RequestNotFound(name) => {
                ApiError::not_found("ACCESS_REQUEST_NOT_FOUND", format!("{name} does not exist"))
            }
            MembershipError::NotPending { request, state } => ApiError::failed_precondition(
                "NOT_PENDING",
                request.clone(),
                format!("{request} is {}, no longer PENDING", state.as_str()),
            ),
            MembershipError::AlreadyApproved(request) => ApiError::failed_precondition(
                "ALREADY_APPROVED",
                request.clone(),
                format!("{request} already has your approval"),
            ),
            MembershipError::AlreadyGranted { member, why } => ApiError::failed_precondition(
                "ALREADY_GRANTED",
                member.clone(),
                format!("{member} {why}"),
            ),
            MembershipError::NotEnoughApprovers {
                account_id,
                eligible,
                needed,
            } => ApiError::failed_precondition(
                "NOT_ENOUGH_APPROVERS",
                account_name(&account_id),
                format!(
                    "{} has {eligible} other people who may approve this grant and the access \
                     policy needs {needed}; add approvers, or have the policy escalate to the \
                     partner's OWNERs",
                    account_name(&account_id)
                ),
            ),
            MembershipError::RequesterNotEntitled(request) => ApiError::failed_precondition(
                "REQUESTER_NOT_ENTITLED",
                request.clone(),
                format!(
                    "the requester of {request} may no longer ask for this grant (they left the \
                     account or lost the role that let them); decline it, or ask anew"
                ),
            ),
            MembershipError::RequestPending(request) => ApiError::failed_precondition(
                "REQUEST_PENDING",
                request.clone(),
                format!("{request} already asks for this subject; approve, decline or cancel it"),
            ),
            MembershipError::StaleEtag(resource) => ApiError::stale_etag(&resource),
            MembershipError::ConcurrentChange => {
                ApiError::concurrent_change("a concurrent change won; retry the call")
            }
            MembershipError::RequestIdReused => RequestIdReused.into(),
            MembershipError::Corrupt(what) => ApiError::internal(&Corrupt(what)),
            MembershipError::Store(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_reasons() {
        let cases = [
            (
                MembershipError::PermissionDenied,
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            ),
            (
                MembershipError::OwnerLimit("a".into()),
                Code::FailedPrecondition,
                "OWNER_LIMIT",
            ),
            (
                MembershipError::LastOwner("a".into()),
                Code::FailedPrecondition,
                "LAST_OWNER",
            ),
            (
                MembershipError::UserNotFound("x@y".into()),
                Code::NotFound,
                "USER_NOT_FOUND",
            ),
            (
                MembershipError::AlreadyMember {
                    account_id: "a".into(),
                    user_id: "u".into(),
                },
                Code::AlreadyExists,
                "ALREADY_MEMBER",
            ),
            (
                MembershipError::StaleEtag("m".into()),
                Code::Aborted,
                "ETAG_MISMATCH",
            ),
            (
                MembershipError::RequestIdReused,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
        ];
        for (error, code, reason) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.code(), api.reason()), (code, reason));
        }
    }
}
