//! DeclineInvitation (issue 15): the invitee turns an invitation down; the inviter sees who and
//! when, the link stops working, and nobody else holding the link can decline it.

use tenantry_e2e::{expect_code, invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    AcceptInvitationRequest, DeclineInvitationRequest, GetInvitationRequest, InvitationState,
    ListInvitationsRequest, LookupInvitationRequest,
};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::Code;
use tonic_types::StatusExt;

/// The ErrorInfo reason of a refusal.
fn reason<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    (status.code(), reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invitee_declines_and_the_inviter_sees_it() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let bob = TestUser::new("bob");
    let invitation = invite(&cluster, alice, &customer.name, &bob.email, Role::Employee)
        .await
        .expect("invite bob");
    let token = cluster.wait_for_mail_files(&bob.email, 1).await[0]
        .accept_token()
        .expect("an accept link");

    // Someone else holding the link (forwarded) may neither decline nor accept it.
    let mallory = TestUser::new("mallory");
    expect_code(
        cluster
            .invitation_as(&mallory)
            .decline_invitation(DeclineInvitationRequest {
                token: token.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        cluster
            .invitation_as(&bob)
            .decline_invitation(DeclineInvitationRequest {
                token: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );

    let declined = cluster
        .invitation_as(&bob)
        .decline_invitation(DeclineInvitationRequest {
            token: token.clone(),
        })
        .await
        .expect("bob declines")
        .into_inner();
    assert_eq!(declined.account, customer.name);
    assert_eq!(declined.account_display_name, customer.display_name);
    assert!(declined.decline_time.is_some());
    // A retry by bob answers the same.
    let again = cluster
        .invitation_as(&bob)
        .decline_invitation(DeclineInvitationRequest {
            token: token.clone(),
        })
        .await
        .expect("a retried decline")
        .into_inner();
    assert_eq!(again, declined);

    // The link no longer accepts; the page's lookup says why.
    assert_eq!(
        reason(
            cluster
                .invitation_as(&bob)
                .accept_invitation(AcceptInvitationRequest {
                    token: token.clone()
                })
                .await
        ),
        (Code::FailedPrecondition, "INVITATION_DECLINED".to_string())
    );
    let looked_up = cluster
        .invitation_as(&bob)
        .lookup_invitation(LookupInvitationRequest {
            token: token.clone(),
        })
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!(looked_up.state(), InvitationState::Declined);

    // The inviter sees who declined and when, and can filter on it.
    let seen = cluster
        .invitation_as(alice)
        .get_invitation(GetInvitationRequest {
            name: invitation.name.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .invitation
        .expect("invitation");
    assert_eq!(seen.state(), InvitationState::Declined);
    assert_eq!(seen.declined_by, bob.resource_name());
    assert_eq!(seen.decline_time, declined.decline_time);
    let list = |states: Vec<InvitationState>| {
        let mut invitations = cluster.invitation_as(alice);
        let parent = customer.name.clone();
        async move {
            invitations
                .list_invitations(ListInvitationsRequest {
                    parent,
                    states: states.into_iter().map(|state| state as i32).collect(),
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .invitations
                .into_iter()
                .map(|listed| listed.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(vec![InvitationState::Declined]).await,
        vec![invitation.name.clone()]
    );
    assert!(list(vec![]).await.is_empty(), "no longer PENDING");

    // A declined invitation does not block a new one for the same address.
    let second = invite(&cluster, alice, &customer.name, &bob.email, Role::Employee)
        .await
        .expect("invite bob again");
    // Once accepted, it cannot be declined.
    let mails = cluster.wait_for_mail_files(&bob.email, 2).await;
    let second_token = mails
        .iter()
        .filter_map(|mail| mail.accept_token())
        .find(|candidate| *candidate != token)
        .expect("the second link");
    cluster
        .invitation_as(&bob)
        .accept_invitation(AcceptInvitationRequest {
            token: second_token.clone(),
        })
        .await
        .expect("accept the second");
    assert_eq!(
        reason(
            cluster
                .invitation_as(&bob)
                .decline_invitation(DeclineInvitationRequest {
                    token: second_token
                })
                .await
        ),
        (Code::FailedPrecondition, "INVITATION_ACCEPTED".to_string())
    );
    assert_ne!(second.name, invitation.name);
    cluster.stop().await;
}
