//! BatchCreateInvitations: up to [`MAX_BATCH`] CreateInvitation calls in one, each answered on
//! its own — the valid ones are created even when others are refused.

use tenantry_platform::{AccountId, ApiError, Principal};
use tenantry_proto::invitation::v1 as pb;
use tonic::{Request, Status};
use tonic_types::StatusExt;

use super::InvitationApi;
use super::errors::Failure;

/// The most invitations one batch may create.
pub const MAX_BATCH: usize = 100;

impl InvitationApi {
    pub(super) async fn batch_create(
        &self,
        principal: Principal,
        request: pb::BatchCreateInvitationsRequest,
    ) -> Result<pb::BatchCreateInvitationsResponse, Failure> {
        principal.user()?;
        let account_id = AccountId::from_name("parent", &request.parent)?;
        if request.requests.is_empty() || request.requests.len() > MAX_BATCH {
            return Err(ApiError::invalid_field(
                "requests",
                format!("1 to {MAX_BATCH} invitations per call"),
            )
            .into());
        }
        // Refusals that would be the same for every item answer the whole call.
        self.authorize(&principal, &account_id, None).await?;
        self.account_must_be_active(&account_id).await?;
        let mut results = Vec::with_capacity(request.requests.len());
        // One after another, in order: an item repeating an earlier item's e-mail meets the
        // invitation that item created (ALREADY_EXISTS), whatever the timing.
        for (index, mut item) in request.requests.into_iter().enumerate() {
            let result = if !item.parent.is_empty() && item.parent != request.parent {
                Err(Status::from(ApiError::invalid_field(
                    "parent",
                    "must be empty or this call's parent: one batch invites to one account",
                )))
            } else {
                item.parent = request.parent.clone();
                let mut call = Request::new(item);
                call.extensions_mut().insert(principal.clone());
                self.create(call).await.map_err(Status::from)
            };
            results.push(match result {
                Ok(invitation) => pb::BatchCreateInvitationResult {
                    invitation: Some(invitation),
                    error: None,
                },
                Err(status) => pb::BatchCreateInvitationResult {
                    invitation: None,
                    error: Some(item_error(index, &status)),
                },
            });
        }
        Ok(pb::BatchCreateInvitationsResponse { results })
    }
}

/// The refusal of item `index`, its bad fields named `requests[index].field`.
fn item_error(index: usize, status: &Status) -> pb::ItemError {
    let details = status.get_error_details();
    pb::ItemError {
        code: status.code() as i32,
        reason: details
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default(),
        message: status.message().to_string(),
        metadata: details
            .error_info()
            .map(|info| info.metadata.clone().into_iter().collect())
            .unwrap_or_default(),
        field_violations: details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|violation| pb::FieldViolation {
                        field: format!("requests[{index}].{}", violation.field),
                        description: violation.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_items_fields_are_named_by_its_place() {
        let status: Status = ApiError::invalid_fields(vec![
            ("email".into(), "not an address".into()),
            ("role".into(), "required".into()),
        ])
        .into();
        let error = item_error(7, &status);
        assert_eq!(error.code, tonic::Code::InvalidArgument as i32);
        let fields: Vec<&str> = error
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["requests[7].email", "requests[7].role"]);
        assert!(!error.reason.is_empty());
    }

    #[test]
    fn an_items_error_info_metadata_is_kept() {
        let status: Status = ApiError::failed_precondition("APPROVAL_REQUIRED", "p", "gated")
            .with_metadata("access_policy", "accounts/a/accessPolicy")
            .into();
        let error = item_error(0, &status);
        assert_eq!(error.reason, "APPROVAL_REQUIRED");
        assert_eq!(
            error.metadata.get("access_policy").map(String::as_str),
            Some("accounts/a/accessPolicy")
        );
    }
}
