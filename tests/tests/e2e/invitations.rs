//! Invitations by e-mail: the seed flow from "invite" to "the user sees the customer", on the
//! embedded default (SQLite, in-process bus, `.eml` files) and on the production shape
//! (PostgreSQL, RabbitMQ, a real SMTP server), plus the refusals around it.

use std::time::Duration;

use tenantry_e2e::{expect_code, invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    AcceptInvitationRequest, EmailDeliveryState, GetInvitationRequest, InvitationState,
    LookupInvitationRequest, ResendInvitationRequest, RevokeInvitationRequest,
};
use tenantry_proto::membership::v1::{
    ListMembersRequest, ListMyAccountsRequest, Member, MemberSource, Role,
};
use tenantry_testkit::smtp::{ReceivedMail, SmtpServer};
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip, postgres_or_skip,
};
use tonic::Code;

const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// `member` as `viewer` sees them in the account's ListMembers (the first page).
async fn listed_member(
    cluster: &TestCluster,
    viewer: &TestUser,
    account: &str,
    member: &TestUser,
) -> Member {
    cluster
        .membership_as(viewer)
        .list_members(ListMembersRequest {
            parent: account.to_string(),
            ..Default::default()
        })
        .await
        .expect("list members")
        .into_inner()
        .members
        .into_iter()
        .find(|listed| listed.user == member.resource_name())
        .expect("listed")
}

/// Invite → e-mail → lookup → accept → member of the customer, seen in the account switcher.
async fn invite_accept_flow(
    cluster: &TestCluster,
    received: impl AsyncFn(&str, usize) -> Vec<ReceivedMail>,
) {
    let operator = TestUser::operator("ops");
    let (partner, customer) = partner_admin_in_customer(cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let bob = TestUser::new("bob");

    let invitation = invite(cluster, alice, &customer.name, &bob.email, Role::Employee)
        .await
        .expect("the customer's admin invites bob");
    assert_eq!(invitation.state, InvitationState::Pending as i32);

    let mails = received(&bob.email, 1).await;
    let mail = &mails[0];
    assert!(
        mail.subject.contains("Customer globex"),
        "the subject names the account: {:?}",
        mail.subject
    );
    let link_token = mail.accept_token().expect("an accept link in the e-mail");
    assert!(mail.text.contains("/invitations/accept?token="));
    assert!(
        mail.html
            .as_deref()
            .is_some_and(|html| html.contains(&link_token))
    );

    // The delivery is visible on the invitation.
    let mut delivered = None;
    for _ in 0..100 {
        let current = cluster
            .invitation_as(alice)
            .get_invitation(GetInvitationRequest {
                name: invitation.name.clone(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .expect("invitation");
        if current.delivery.as_ref().map(|d| d.state) == Some(EmailDeliveryState::Sent as i32) {
            delivered = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = delivered.expect("delivery state SENT");
    assert!(delivered.delivery.expect("delivery").attempts >= 1);

    // The accept page.
    let page = cluster
        .invitation_as(&bob)
        .lookup_invitation(LookupInvitationRequest {
            token: link_token.clone(),
        })
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!(page.account, customer.name);
    assert_eq!(page.account_display_name, "Customer globex");
    assert_eq!(page.role, Role::Employee as i32);
    assert!(page.email_matches);

    // Someone else cannot accept bob's invitation.
    expect_code(
        cluster
            .invitation_as(&TestUser::new("mallory"))
            .accept_invitation(AcceptInvitationRequest {
                token: link_token.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    let member = cluster
        .invitation_as(&bob)
        .accept_invitation(AcceptInvitationRequest {
            token: link_token.clone(),
        })
        .await
        .expect("accept")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(member.user, bob.resource_name());
    assert_eq!(member.source, MemberSource::Invitation as i32);
    assert_eq!(member.role, Role::Employee as i32);
    // Complete at once: the e-mail of bob's token came with the acceptance, so the partner's
    // list shows it before bob ever calls membership himself.
    assert_eq!(member.email, bob.email);
    let listed = listed_member(cluster, alice, &customer.name, &bob).await;
    assert_eq!(listed.email, bob.email);

    // Single use: bob retrying gets the same membership (an idempotent retry); anyone else —
    // even another login with bob's e-mail address — is refused.
    let again = cluster
        .invitation_as(&bob)
        .accept_invitation(AcceptInvitationRequest {
            token: link_token.clone(),
        })
        .await
        .expect("a retry by the same user")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(again.name, member.name);
    let second_login = TestUser {
        sub: format!("{}-second-login", bob.sub),
        ..bob.clone()
    };
    expect_code(
        cluster
            .invitation_as(&second_login)
            .accept_invitation(AcceptInvitationRequest { token: link_token })
            .await,
        Code::FailedPrecondition,
    );

    let switcher = cluster
        .membership_as(&bob)
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts")
        .into_inner();
    let row = switcher
        .accounts
        .iter()
        .find(|row| row.account == customer.name)
        .expect("bob sees the customer");
    assert_eq!(row.display_name, "Customer globex");
    assert_eq!(row.role, Role::Employee as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_and_accept_on_the_embedded_default() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    invite_accept_flow(&cluster, async |to: &str, count: usize| {
        cluster.wait_for_mail_files(to, count).await
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_and_accept_on_postgres_rabbitmq_and_smtp() {
    // All three asked (no short circuit), so the notice names every suite that is missing.
    let (postgres, amqp, aiosmtpd) = (
        postgres_or_skip(),
        amqp_or_skip(),
        tenantry_testkit::smtp_or_skip(),
    );
    if postgres.is_none() || amqp.is_none() || !aiosmtpd {
        eprintln!("skipped: needs PostgreSQL, RabbitMQ and aiosmtpd (see .ci/run)");
        return;
    }
    let smtp = SmtpServer::start().await;
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    options.mail.smtp_url = Some(smtp.url());
    let cluster = TestCluster::start_with(options).await;
    invite_accept_flow(&cluster, async |to: &str, count: usize| {
        smtp.wait_for(to, count, MAIL_TIMEOUT).await
    })
    .await;
    cluster.stop().await;
    smtp.stop().await;
}

/// Every refusal of the issue: expired, revoked, reused and wrong-e-mail acceptances, a guessed
/// secret, resend too soon, inviting a member, a non-admin inviting, an ADMIN inviting an OWNER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_refusals() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;

    // A non-admin may not invite.
    let emma = TestUser::new("emma");
    tenantry_e2e::add_member(&cluster, alice, &customer.name, &emma, Role::Employee)
        .await
        .expect("add employee");
    expect_code(
        invite(
            &cluster,
            &emma,
            &customer.name,
            "x@example.com",
            Role::Employee,
        )
        .await,
        Code::PermissionDenied,
    );
    // While the customer has no OWNER its ADMIN may invite the first one; once it has one,
    // only an OWNER invites an OWNER (alice is ADMIN of the customer via Add Myself).
    let first_owner = invite(
        &cluster,
        alice,
        &customer.name,
        "boss@example.com",
        Role::Owner,
    )
    .await
    .expect("an ADMIN invites the first OWNER");
    cluster
        .invitation_as(alice)
        .revoke_invitation(RevokeInvitationRequest {
            name: first_owner.name,
            etag: String::new(),
        })
        .await
        .expect("revoke");
    let olga = TestUser::new("olga");
    tenantry_e2e::add_member(&cluster, &operator, &customer.name, &olga, Role::Owner)
        .await
        .expect("operator adds an owner");
    expect_code(
        invite(
            &cluster,
            alice,
            &customer.name,
            "boss@example.com",
            Role::Owner,
        )
        .await,
        Code::PermissionDenied,
    );
    // Inviting a current member.
    expect_code(
        invite(&cluster, alice, &customer.name, &emma.email, Role::Admin).await,
        Code::AlreadyExists,
    );
    // An OWNER invitation beyond the OWNER limit (2) is refused up front.
    tenantry_e2e::add_member(
        &cluster,
        &operator,
        &customer.name,
        &TestUser::new("oscar"),
        Role::Owner,
    )
    .await
    .expect("operator adds the second owner");
    let full = expect_code(
        invite(
            &cluster,
            &olga,
            &customer.name,
            "third@example.com",
            Role::Owner,
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(full.message().contains("OWNER"), "{}", full.message());
    // One pending invitation per address.
    let carol = TestUser::new("carol");
    let first = invite(
        &cluster,
        alice,
        &customer.name,
        &carol.email,
        Role::Employee,
    )
    .await
    .expect("invite carol");
    expect_code(
        invite(
            &cluster,
            alice,
            &customer.name,
            &carol.email.to_uppercase(),
            Role::Employee,
        )
        .await,
        Code::AlreadyExists,
    );
    // Resend too soon.
    let _ = cluster.wait_for_mail_files(&carol.email, 1).await;
    expect_code(
        cluster
            .invitation_as(alice)
            .resend_invitation(ResendInvitationRequest {
                name: first.name.clone(),
                etag: String::new(),
            })
            .await,
        Code::ResourceExhausted,
    );
    // A guessed secret.
    expect_code(
        cluster
            .invitation_as(&carol)
            .lookup_invitation(LookupInvitationRequest {
                token: "A".repeat(43),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        cluster
            .invitation_as(&carol)
            .accept_invitation(AcceptInvitationRequest {
                token: "guessed-token".into(),
            })
            .await,
        Code::NotFound,
    );
    // Wrong e-mail.
    let token = cluster.wait_for_mail_files(&carol.email, 1).await[0]
        .accept_token()
        .expect("token");
    expect_code(
        cluster
            .invitation_as(&TestUser::new("dave"))
            .accept_invitation(AcceptInvitationRequest {
                token: token.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    // Revoked.
    cluster
        .invitation_as(alice)
        .revoke_invitation(RevokeInvitationRequest {
            name: first.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("revoke");
    expect_code(
        cluster
            .invitation_as(&carol)
            .accept_invitation(AcceptInvitationRequest { token })
            .await,
        Code::FailedPrecondition,
    );
    // Expired: an invitation that lives one second.
    let frank = TestUser::new("frank");
    let expires = std::time::SystemTime::now() + Duration::from_secs(1);
    let short = cluster
        .invitation_as(alice)
        .create_invitation(tenantry_proto::invitation::v1::CreateInvitationRequest {
            parent: customer.name.clone(),
            email: frank.email.clone(),
            role: Role::Employee as i32,
            expire_time: Some(expires.into()),
            ..Default::default()
        })
        .await
        .expect("short-lived invitation")
        .into_inner()
        .invitation
        .expect("invitation");
    let token = cluster.wait_for_mail_files(&frank.email, 1).await[0]
        .accept_token()
        .expect("token");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect_code(
        cluster
            .invitation_as(&frank)
            .accept_invitation(AcceptInvitationRequest { token })
            .await,
        Code::FailedPrecondition,
    );
    let expired = cluster
        .invitation_as(alice)
        .get_invitation(GetInvitationRequest { name: short.name })
        .await
        .expect("get")
        .into_inner()
        .invitation
        .expect("invitation");
    assert_eq!(
        expired.state,
        InvitationState::Expired as i32,
        "expiry applied on read"
    );
    cluster.stop().await;
}

/// The invitation service follows the other services' events: a pending invitation of someone
/// added directly is closed (`member.added`), and a deleted account's pending invitations are
/// withdrawn (`account.deleted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_invitations_follow_member_and_account_events() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    // Read as the operator: once the customer is deleted its members are gone.
    let state_of = async |name: &str| {
        cluster
            .invitation_as(&operator)
            .get_invitation(GetInvitationRequest {
                name: name.to_string(),
            })
            .await
            .expect("get")
            .into_inner()
            .invitation
            .expect("invitation")
            .state
    };
    let eventually_revoked = async |name: &str| {
        for _ in 0..200 {
            if state_of(name).await == InvitationState::Revoked as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{name} was not withdrawn");
    };

    // Gina logs in once (the user directory learns her e-mail), is invited, and is then added
    // directly: her pending invitation is closed.
    let gina = TestUser::new("gina");
    cluster
        .membership_as(&gina)
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("gina logs in");
    let invitation = invite(&cluster, alice, &customer.name, &gina.email, Role::Employee)
        .await
        .expect("invite gina");
    tenantry_e2e::add_member(&cluster, alice, &customer.name, &gina, Role::Employee)
        .await
        .expect("add gina directly");
    eventually_revoked(&invitation.name).await;

    // Deleting the customer withdraws what is still pending.
    let pending = invite(
        &cluster,
        alice,
        &customer.name,
        "henry@example.com",
        Role::Employee,
    )
    .await
    .expect("invite henry");
    let current = cluster
        .registry_as(alice)
        .get_account(tenantry_proto::registry::v1::GetAccountRequest {
            name: customer.name.clone(),
        })
        .await
        .expect("read customer")
        .into_inner()
        .account
        .expect("account");
    cluster
        .registry_as(alice)
        .delete_account(tenantry_proto::registry::v1::DeleteAccountRequest {
            name: customer.name.clone(),
            etag: current.etag,
        })
        .await
        .expect("the partner deletes the customer");
    eventually_revoked(&pending.name).await;
    cluster.stop().await;
}

/// With the e-mail check configured off, whoever holds the link may accept; the invitation's
/// address (the inviter's choice) must not become theirs in membership's directory, and a
/// token e-mail the API would refuse must not make the acceptance fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_without_the_e_mail_check_never_takes_the_invitations_address() {
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.invitation.require_matching_email = false;
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    invite(
        &cluster,
        alice,
        &customer.name,
        "victim@example.com",
        Role::Employee,
    )
    .await
    .expect("invite");
    let token = cluster.wait_for_mail_files("victim@example.com", 1).await[0]
        .accept_token()
        .expect("an accept link");

    // The link reaches someone whose token's e-mail is one the API refuses (no dot).
    let other = TestUser {
        email: "admin@localhost".into(),
        ..TestUser::new("other")
    };
    let member = cluster
        .invitation_as(&other)
        .accept_invitation(AcceptInvitationRequest { token })
        .await
        .expect("accepted: the profile never blocks the membership")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(member.user, other.resource_name());
    let listed = listed_member(&cluster, alice, &customer.name, &other).await;
    assert_ne!(
        listed.email.to_lowercase(),
        "victim@example.com",
        "the invitation's address became someone else's"
    );
    cluster.stop().await;
}
