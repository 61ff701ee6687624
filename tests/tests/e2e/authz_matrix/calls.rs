//! One call per RPC of the five services, about a [`Target`], with a given bearer token. Each
//! sends a request that would succeed for an allowed caller, so a refusal can only come from
//! who is calling.

use prost_types::{FieldMask, Timestamp};
use tenantry_e2e::fresh_id;
use tenantry_proto::audit::v1 as audit;
use tenantry_proto::invitation::v1 as invitation;
use tenantry_proto::membership::v1 as membership;
use tenantry_proto::notification::v1 as notification;
use tenantry_proto::registry::v1 as registry;
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Status;

use super::world::Target;

/// Calls `method` (its name is unique across the five services) as the holder of `token`.
pub async fn call(
    cluster: &TestCluster,
    method: &str,
    token: Option<&str>,
    target: &Target,
) -> Result<(), Status> {
    let account = || target.account.clone();
    let partner = || target.partner.clone();
    let mut registry = cluster.registry(token);
    let mut members = cluster.membership(token);
    let mut invitations = cluster.invitation(token);
    let mut messages = cluster.notification(token);
    let mut trail = cluster.audit(token);
    match method {
        "CreateAccount" => registry
            .create_account(registry::CreateAccountRequest {
                account_id: target.create_id.clone().unwrap_or_else(|| fresh_id("made")),
                display_name: "Matrix Account".into(),
                request_id: String::new(),
            })
            .await
            .map(drop),
        "PromoteToPartner" => registry
            .promote_to_partner(registry::PromoteToPartnerRequest {
                name: account(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "CreateManagedCustomer" => registry
            .create_managed_customer(registry::CreateManagedCustomerRequest {
                parent: partner(),
                customer_id: fresh_id("made"),
                display_name: "Matrix Customer".into(),
                request_id: String::new(),
            })
            .await
            .map(drop),
        "ListManagedCustomers" => registry
            .list_managed_customers(registry::ListManagedCustomersRequest {
                parent: partner(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetAccount" => registry
            .get_account(registry::GetAccountRequest { name: account() })
            .await
            .map(drop),
        "BatchGetAccounts" => registry
            .batch_get_accounts(registry::BatchGetAccountsRequest {
                names: vec![account()],
            })
            .await
            .map(drop),
        "ListAccounts" => registry
            .list_accounts(registry::ListAccountsRequest::default())
            .await
            .map(drop),
        "UpdateAccount" => registry
            .update_account(registry::UpdateAccountRequest {
                account: Some(registry::Account {
                    name: account(),
                    display_name: "Renamed By The Matrix".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .map(drop),
        "DisableAccount" => registry
            .disable_account(registry::DisableAccountRequest {
                name: account(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "EnableAccount" => registry
            .enable_account(registry::EnableAccountRequest {
                name: account(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "DeleteAccount" => registry
            .delete_account(registry::DeleteAccountRequest {
                name: account(),
                etag: String::new(),
            })
            .await
            .map(drop),

        "AddMember" => members
            .add_member(membership::AddMemberRequest {
                parent: account(),
                principal: Some(membership::add_member_request::Principal::User(
                    TestUser::new("added").resource_name(),
                )),
                role: membership::Role::Employee as i32,
                ..Default::default()
            })
            .await
            .map(drop),
        "AddMyself" => members
            .add_myself(membership::AddMyselfRequest {
                account: account(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetMember" => members
            .get_member(membership::GetMemberRequest {
                name: target.member.clone(),
            })
            .await
            .map(drop),
        "UpdateMember" => members
            .update_member(membership::UpdateMemberRequest {
                member: Some(membership::Member {
                    name: target.member.clone(),
                    role: membership::Role::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["role".into()],
                }),
            })
            .await
            .map(drop),
        "RemoveMember" => members
            .remove_member(membership::RemoveMemberRequest {
                name: target.member.clone(),
                etag: String::new(),
            })
            .await
            .map(drop),
        // A day from now is later than the target's hour and well within 730 days.
        "ExtendMemberAccess" => members
            .extend_member_access(membership::ExtendMemberAccessRequest {
                name: target.member.clone(),
                expire_time: Some(seconds_from_now(86_400)),
                etag: String::new(),
            })
            .await
            .map(drop),
        "ListExpiringMembers" => members
            .list_expiring_members(membership::ListExpiringMembersRequest {
                parent: partner(),
                expire_before: Some(seconds_from_now(7 * 86_400)),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListMembers" => members
            .list_members(membership::ListMembersRequest {
                parent: account(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListMyAccounts" => members
            .list_my_accounts(membership::ListMyAccountsRequest::default())
            .await
            .map(drop),
        "Authorize" => members
            .authorize(membership::AuthorizeRequest {
                subject: Some(membership::Subject {
                    user: "users/matrix-subject".into(),
                    ..Default::default()
                }),
                account: account(),
                permission: membership::Permission::AccountRead as i32,
                bypass_view: false,
            })
            .await
            .map(drop),
        "CheckInvitee" => members
            .check_invitee(membership::CheckInviteeRequest {
                account: account(),
                email: "matrix-invitee@example.com".into(),
                role: membership::Role::Admin as i32,
            })
            .await
            .map(drop),
        "GetOwnerCapacity" => members
            .get_owner_capacity(membership::GetOwnerCapacityRequest { account: account() })
            .await
            .map(drop),
        "GetAccessPolicy" => members
            .get_access_policy(membership::GetAccessPolicyRequest {
                name: format!("{}/accessPolicy", account()),
            })
            .await
            .map(drop),
        // A policy that gates OWNER grants behind three approvals, on a fresh customer.
        "UpdateAccessPolicy" => members
            .update_access_policy(membership::UpdateAccessPolicyRequest {
                policy: Some(membership::AccessPolicy {
                    name: format!("{}/accessPolicy", account()),
                    gated_grants: vec![membership::GatedGrant::OwnerRole as i32],
                    required_approvals: 3,
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        // ADMIN for dora, an EMPLOYEE of the fresh customer: a grant the customer's OWNER and
        // ADMIN could make themselves, each with the other to approve.
        "CreateAccessRequest" => members
            .create_access_request(membership::CreateAccessRequestRequest {
                parent: account(),
                access_request: Some(membership::AccessRequest {
                    subject: target.member_user(),
                    role: membership::Role::Admin as i32,
                    reason: "Asked for by the authorization matrix.".into(),
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        // The caller asks for themself, with AddMyself's role (ADMIN): what a member of the
        // managing partner may ask for.
        "CreateAccessRequest (for themself)" => members
            .create_access_request(membership::CreateAccessRequestRequest {
                parent: account(),
                access_request: Some(membership::AccessRequest {
                    subject: caller_name(token),
                    role: membership::Role::Admin as i32,
                    reason: "Asked for by the authorization matrix.".into(),
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "GetAccessRequest" => members
            .get_access_request(membership::GetAccessRequestRequest {
                name: target.access_request.clone(),
            })
            .await
            .map(drop),
        "ListAccessRequests" => members
            .list_access_requests(membership::ListAccessRequestsRequest {
                parent: account(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListAccessRequestsWaitingForMe" => members
            .list_access_requests_waiting_for_me(
                membership::ListAccessRequestsWaitingForMeRequest::default(),
            )
            .await
            .map(drop),
        // The request needs two approvals and has the requester's: this one is the last.
        "ApproveAccessRequest" => members
            .approve_access_request(membership::ApproveAccessRequestRequest {
                name: target.access_request.clone(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "DeclineAccessRequest" => members
            .decline_access_request(membership::DeclineAccessRequestRequest {
                name: target.access_request.clone(),
                reason: "Declined by the authorization matrix.".into(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "CancelAccessRequest" => members
            .cancel_access_request(membership::CancelAccessRequestRequest {
                name: target.access_request.clone(),
                etag: String::new(),
            })
            .await
            .map(drop),

        "CreateInvitation" => invitations
            .create_invitation(invitation::CreateInvitationRequest {
                parent: account(),
                email: format!("{}@example.com", fresh_id("guest")),
                role: membership::Role::Employee as i32,
                ..Default::default()
            })
            .await
            .map(drop),
        "ListInvitations" => invitations
            .list_invitations(invitation::ListInvitationsRequest {
                parent: account(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetInvitation" => invitations
            .get_invitation(invitation::GetInvitationRequest {
                name: target.invitation.clone(),
            })
            .await
            .map(drop),
        "RevokeInvitation" => invitations
            .revoke_invitation(invitation::RevokeInvitationRequest {
                name: target.invitation.clone(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "ResendInvitation" => invitations
            .resend_invitation(invitation::ResendInvitationRequest {
                name: target.invitation.clone(),
                etag: String::new(),
            })
            .await
            .map(drop),
        "LookupInvitation" => invitations
            .lookup_invitation(invitation::LookupInvitationRequest {
                token: target.link.clone(),
            })
            .await
            .map(drop),
        "AcceptInvitation" => invitations
            .accept_invitation(invitation::AcceptInvitationRequest {
                token: target.link.clone(),
            })
            .await
            .map(drop),
        "ListMyInvitations" => invitations
            .list_my_invitations(invitation::ListMyInvitationsRequest::default())
            .await
            .map(drop),
        "BatchCreateInvitations" => invitations
            .batch_create_invitations(invitation::BatchCreateInvitationsRequest {
                parent: account(),
                requests: vec![invitation::CreateInvitationRequest {
                    email: format!("{}@example.com", fresh_id("guest")),
                    role: membership::Role::Employee as i32,
                    ..Default::default()
                }],
            })
            .await
            .map(drop),
        "DeclineInvitation" => invitations
            .decline_invitation(invitation::DeclineInvitationRequest {
                token: target.link.clone(),
            })
            .await
            .map(drop),

        "SendMessage" => messages
            .send_message(notification::SendMessageRequest {
                parent: partner(),
                title: "Matrix note".into(),
                body: "Sent by the authorization matrix.".into(),
                read_policy: notification::ReadPolicy::AllMustRead as i32,
                recipients: vec![account()],
                ..Default::default()
            })
            .await
            .map(drop),
        "ListMessages" => messages
            .list_messages(notification::ListMessagesRequest {
                parent: partner(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetMessage" => messages
            .get_message(notification::GetMessageRequest {
                name: target.message.clone(),
            })
            .await
            .map(drop),
        "ListMessageReceipts" => messages
            .list_message_receipts(notification::ListMessageReceiptsRequest {
                name: target.message.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListPendingMessages" => messages
            .list_pending_messages(notification::ListPendingMessagesRequest::default())
            .await
            .map(drop),
        "AcknowledgeMessage" => messages
            .acknowledge_message(notification::AcknowledgeMessageRequest {
                name: target.message.clone(),
            })
            .await
            .map(drop),
        "WatchInbox" => {
            let mut stream = messages
                .watch_inbox(notification::WatchInboxRequest {})
                .await?
                .into_inner();
            let first = stream.message().await?;
            assert!(
                matches!(
                    first.and_then(|response| response.event),
                    Some(notification::watch_inbox_response::Event::Snapshot(_))
                ),
                "WatchInbox opens with a snapshot"
            );
            Ok(())
        }

        "ListAuditEntries" => trail
            .list_audit_entries(audit::ListAuditEntriesRequest {
                parent: account(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetAuditEntry" => trail
            .get_audit_entry(audit::GetAuditEntryRequest {
                name: target.audit_entry.clone(),
            })
            .await
            .map(drop),
        "WatchAuditEntries" => {
            let mut stream = trail
                .watch_audit_entries(audit::WatchAuditEntriesRequest {
                    parent: account(),
                    after_sequence: 0,
                })
                .await?
                .into_inner();
            let first = stream.message().await?;
            assert_eq!(
                first
                    .and_then(|response| response.audit_entry)
                    .map(|entry| entry.sequence),
                Some(1),
                "WatchAuditEntries from 0 opens with entry 1"
            );
            Ok(())
        }
        "VerifyAuditChain" => trail
            .verify_audit_chain(audit::VerifyAuditChainRequest { parent: account() })
            .await
            .map(drop),
        // Recent history is never purged: a cut-off 30 days ago is valid and removes nothing
        // another cell reads.
        "PurgeAuditEntries" => trail
            .purge_audit_entries(audit::PurgeAuditEntriesRequest {
                before_time: Some(days_ago(30)),
            })
            .await
            .map(drop),
        other => panic!("the matrix has no call for {other}"),
    }
}

/// `users/{sub}` of the bearer of `token`, read from the token's claims (a name no user has
/// when there is no token or it cannot be read: such calls are refused before it matters).
fn caller_name(token: Option<&str>) -> String {
    use base64::Engine as _;
    let sub = token
        .and_then(|token| token.split('.').nth(1))
        .and_then(|claims| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .ok()
        })
        .and_then(|claims| serde_json::from_slice::<serde_json::Value>(&claims).ok())
        .and_then(|claims| claims.get("sub")?.as_str().map(str::to_string));
    format!(
        "users/{}",
        sub.unwrap_or_else(|| "matrix-nobody".to_string())
    )
}

/// The instant `days` days before now.
fn days_ago(days: u64) -> Timestamp {
    Timestamp::from(std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400))
}

/// The instant `seconds` seconds after now.
fn seconds_from_now(seconds: u64) -> Timestamp {
    Timestamp::from(std::time::SystemTime::now() + std::time::Duration::from_secs(seconds))
}
