//! ListMyInvitations: the pending invitations addressed to the caller's verified e-mail.

use std::collections::HashMap;

use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{AccountId, ApiError, UserIdentity};
use tenantry_proto::invitation::v1 as pb;

use super::InvitationApi;
use super::errors::Failure;
use crate::domain::normalize_email;

impl InvitationApi {
    pub(super) async fn list_mine(
        &self,
        user: &UserIdentity,
        request: &pb::ListMyInvitationsRequest,
    ) -> Result<pb::ListMyInvitationsResponse, Failure> {
        // The address is the only proof of whom an invitation is for: it must be verified.
        let email = user
            .email
            .as_deref()
            .filter(|_| user.email_verified)
            .ok_or_else(|| {
                ApiError::failed_precondition(
                    "EMAIL_NOT_VERIFIED",
                    user.resource_name(),
                    "your login carries no verified e-mail address (email_verified), so no \
                     invitation can be matched to it",
                )
            })?;
        let email = normalize_email(email);
        let scope = format!("ListMyInvitations|{email}");
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let now = now();
        let mut rows = self
            .store
            .pending_for_email(&email, page.after.as_deref(), page.size + 1, now)
            .await?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut rows, |row| {
            row.invitation_id.to_string()
        });
        let mut names: HashMap<AccountId, String> = HashMap::new();
        let mut invitations = Vec::with_capacity(rows.len());
        for row in rows {
            let account_display_name = match names.get(&row.account_id) {
                Some(name) => name.clone(),
                None => {
                    let name = self.display_name(&row.account_id).await?;
                    names.insert(row.account_id.clone(), name.clone());
                    name
                }
            };
            invitations.push(pb::MyInvitation {
                name: row.name(),
                account: row.account_id.name(),
                account_display_name,
                inviter_display_name: row.inviter_display_name,
                role: row.role.to_wire(),
                create_time: Some(to_timestamp(row.create_time)),
                expire_time: Some(to_timestamp(row.expire_time)),
            });
        }
        Ok(pb::ListMyInvitationsResponse {
            invitations,
            next_page_token,
        })
    }
}
