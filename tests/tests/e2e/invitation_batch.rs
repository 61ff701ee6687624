//! BatchCreateInvitations and ListMyInvitations (issue 15): a partner invites a customer's
//! whole team at once, and a person finds what they were invited to by their verified e-mail.

use tenantry_e2e::{expect_code, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    BatchCreateInvitationsRequest, CreateInvitationRequest, ListInvitationsRequest,
    ListMyInvitationsRequest,
};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::Code;

fn item(email: String, role: Role) -> CreateInvitationRequest {
    CreateInvitationRequest {
        email,
        role: role as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_100_with_3_bad_rows_creates_97() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let mut requests: Vec<CreateInvitationRequest> = (0..100)
        .map(|index| item(format!("person-{index}@globex.example"), Role::Employee))
        .collect();
    // Row 10: an address the mailer could not send to. Row 50: no role. Row 99: the same
    // person as row 0 (case differs).
    requests[10].email = "jane..doe@globex.example".into();
    requests[50].role = Role::Unspecified as i32;
    requests[99].email = "PERSON-0@globex.example".into();
    let results = cluster
        .invitation_as(alice)
        .batch_create_invitations(BatchCreateInvitationsRequest {
            parent: customer.name.clone(),
            requests,
        })
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert_eq!(results.len(), 100, "one result per request");
    let refused: Vec<(usize, i32, Vec<String>, String)> = results
        .iter()
        .enumerate()
        .filter_map(|(index, result)| {
            let error = result.error.as_ref()?;
            assert!(result.invitation.is_none());
            Some((
                index,
                error.code,
                error
                    .field_violations
                    .iter()
                    .map(|violation| violation.field.clone())
                    .collect(),
                error.reason.clone(),
            ))
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            (
                10,
                Code::InvalidArgument as i32,
                vec!["requests[10].email".to_string()],
                "INVALID_ARGUMENT".to_string()
            ),
            (
                50,
                Code::InvalidArgument as i32,
                vec!["requests[50].role".to_string()],
                "INVALID_ARGUMENT".to_string()
            ),
            (
                99,
                Code::AlreadyExists as i32,
                vec![],
                "INVITATION_PENDING".to_string()
            ),
        ]
    );
    let created: Vec<_> = results
        .iter()
        .filter_map(|result| result.invitation.as_ref())
        .collect();
    assert_eq!(created.len(), 97);
    let listed = cluster
        .invitation_as(alice)
        .list_invitations(ListInvitationsRequest {
            parent: customer.name.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .invitations;
    assert_eq!(listed.len(), 97, "97 invitations stored");
    // Every one of them is mailed.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while cluster.mail_files().len() < 97 {
        assert!(tokio::time::Instant::now() < deadline, "97 e-mails");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The whole call is refused when no item could be: another account, too many, no right.
    expect_code(
        cluster
            .invitation_as(alice)
            .batch_create_invitations(BatchCreateInvitationsRequest {
                parent: customer.name.clone(),
                requests: (0..101)
                    .map(|index| item(format!("more-{index}@globex.example"), Role::Employee))
                    .collect(),
            })
            .await,
        Code::InvalidArgument,
    );
    let employee = TestUser::new("emp");
    tenantry_e2e::add_member(&cluster, alice, &customer.name, &employee, Role::Employee)
        .await
        .expect("add an employee");
    expect_code(
        cluster
            .invitation_as(&employee)
            .batch_create_invitations(BatchCreateInvitationsRequest {
                parent: customer.name.clone(),
                requests: vec![item("x@globex.example".into(), Role::Employee)],
            })
            .await,
        Code::PermissionDenied,
    );
    // An item naming another account is refused on its own.
    let mixed = cluster
        .invitation_as(alice)
        .batch_create_invitations(BatchCreateInvitationsRequest {
            parent: customer.name.clone(),
            requests: vec![
                CreateInvitationRequest {
                    parent: "accounts/acme".into(),
                    ..item("elsewhere@globex.example".into(), Role::Employee)
                },
                item("here@globex.example".into(), Role::Employee),
            ],
        })
        .await
        .expect("answered")
        .into_inner()
        .results;
    assert_eq!(
        mixed[0].error.as_ref().expect("refused").field_violations[0].field,
        "requests[0].parent"
    );
    assert!(mixed[1].invitation.is_some());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_lists_the_invitations_to_their_verified_address() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (acme, globex) = partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let (initech, hooli) = partner_admin_in_customer(&cluster, &operator, "initech", "hooli").await;
    let kim = TestUser::new("kim");
    for (inviter, account) in [(&acme.owner, &globex.name), (&initech.owner, &hooli.name)] {
        tenantry_e2e::invite(
            &cluster,
            inviter,
            account,
            &kim.email.to_uppercase(),
            Role::Admin,
        )
        .await
        .expect("invite kim");
    }
    tenantry_e2e::invite(
        &cluster,
        &acme.owner,
        &globex.name,
        "other@example.com",
        Role::Admin,
    )
    .await
    .expect("invite someone else");

    let mine = cluster
        .invitation_as(&kim)
        .list_my_invitations(ListMyInvitationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list mine")
        .into_inner();
    assert_eq!(mine.invitations.len(), 1);
    assert_eq!(mine.invitations[0].account, hooli.name, "newest first");
    assert_eq!(mine.invitations[0].account_display_name, hooli.display_name);
    assert!(!mine.next_page_token.is_empty());
    let rest = cluster
        .invitation_as(&kim)
        .list_my_invitations(ListMyInvitationsRequest {
            page_size: 1,
            page_token: mine.next_page_token,
        })
        .await
        .expect("the next page")
        .into_inner();
    assert_eq!(rest.invitations.len(), 1);
    assert_eq!(rest.invitations[0].account, globex.name);
    assert_eq!(rest.invitations[0].role(), Role::Admin);
    assert!(rest.next_page_token.is_empty());

    // Without a verified e-mail there is nothing to match.
    let unverified = kim.token_signed_with(tenantry_testkit::TEST_JWT_SECRET, |claims| {
        claims.email_verified = None;
    });
    let status = cluster
        .invitation(Some(&unverified))
        .list_my_invitations(ListMyInvitationsRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("verified"),
        "{}",
        status.message()
    );
    cluster.stop().await;
}
