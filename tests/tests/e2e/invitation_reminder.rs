//! The reminder e-mail (issue 15): sent once before the expiry, with a link of its own, by
//! whichever replica gets it first, and not again after a restart; never for an invitation
//! accepted, declined or revoked before it was due.

use std::time::Duration;

use tenantry_e2e::{expect_code, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    AcceptInvitationRequest, CreateInvitationRequest, DeclineInvitationRequest,
    GetInvitationRequest, Invitation, LookupInvitationRequest, RevokeInvitationRequest,
};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::smtp::ReceivedMail;
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip, postgres_or_skip,
};
use tonic::Code;

/// Seconds from now until the reminders of the test's invitations are due.
const DUE_IN: i64 = 6;

fn reminders_to(cluster: &TestCluster, email: &str) -> Vec<ReceivedMail> {
    cluster
        .mail_files()
        .into_iter()
        .filter(|mail| mail.to.contains(email) && mail.subject.starts_with("Reminder:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_goes_out_once_across_replicas_and_a_restart() {
    let (Some(_), Some(_)) = (postgres_or_skip(), amqp_or_skip()) else {
        return;
    };
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    options.invitation.reminder_hours = 1;
    options.invitation.sweep_interval_seconds = 1;
    let mut cluster = TestCluster::start_with(options).await;
    // A second process of every service: both sweep for due reminders every second.
    let replica = cluster.start_replica().await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;

    // Five invitations expiring in an hour and DUE_IN seconds: reminders due in DUE_IN s.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let expire = prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).unwrap() + 3600 + DUE_IN,
        nanos: 0,
    };
    let mut invitations: Vec<Invitation> = Vec::new();
    for name in ["bob", "carol", "dan", "erin", "frank"] {
        invitations.push(
            cluster
                .invitation_as(alice)
                .create_invitation(CreateInvitationRequest {
                    parent: customer.name.clone(),
                    email: format!("{name}@example.com"),
                    role: Role::Employee as i32,
                    expire_time: Some(expire),
                    ..Default::default()
                })
                .await
                .expect("invite")
                .into_inner()
                .invitation
                .expect("invitation"),
        );
    }
    let first_link = |name: &str| {
        let cluster = &cluster;
        let to = format!("{name}@example.com");
        async move {
            cluster.wait_for_mail_files(&to, 1).await[0]
                .accept_token()
                .expect("a link")
        }
    };
    let bob_first = first_link("bob").await;
    // Carol accepts, Dan declines, Erin's is revoked: before their reminders are due.
    let carol = TestUser::new("carol");
    cluster
        .invitation_as(&carol)
        .accept_invitation(AcceptInvitationRequest {
            token: first_link("carol").await,
        })
        .await
        .expect("carol accepts");
    cluster
        .invitation_as(&TestUser::new("dan"))
        .decline_invitation(DeclineInvitationRequest {
            token: first_link("dan").await,
        })
        .await
        .expect("dan declines");
    first_link("erin").await;
    cluster
        .invitation_as(alice)
        .revoke_invitation(RevokeInvitationRequest {
            name: invitations[3].name.clone(),
            etag: String::new(),
        })
        .await
        .expect("erin's revoked");
    first_link("frank").await;

    // Bob's and Frank's reminders arrive, once each, with links of their own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(DUE_IN as u64 + 30);
    while reminders_to(&cluster, "bob@example.com").is_empty()
        || reminders_to(&cluster, "frank@example.com").is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reminders never came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both replicas keep sweeping every second; then every process restarts and sweeps again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    replica.stop().await;
    cluster.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["bob", "frank"] {
        assert_eq!(
            reminders_to(&cluster, &format!("{name}@example.com")).len(),
            1,
            "{name} got exactly one reminder"
        );
    }
    for name in ["carol", "dan", "erin"] {
        assert!(
            reminders_to(&cluster, &format!("{name}@example.com")).is_empty(),
            "no reminder after {name}'s invitation closed"
        );
    }
    let reminder = &reminders_to(&cluster, "bob@example.com")[0];
    assert!(reminder.text.contains("A reminder:"));
    let bob_reminder = reminder.accept_token().expect("the reminder's link");
    assert_ne!(
        bob_reminder, bob_first,
        "the reminder has a link of its own"
    );
    let seen = cluster
        .invitation_as(alice)
        .get_invitation(GetInvitationRequest {
            name: invitations[0].name.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .invitation
        .expect("invitation");
    assert!(seen.reminder_sent_time.is_some(), "the inviter sees it");

    // Both links lead to the invitation; the reminder's accepts it, once.
    let bob = TestUser::new("bob");
    cluster
        .invitation_as(&bob)
        .lookup_invitation(LookupInvitationRequest { token: bob_first })
        .await
        .expect("the first link still works");
    cluster
        .invitation_as(&bob)
        .accept_invitation(AcceptInvitationRequest {
            token: bob_reminder.clone(),
        })
        .await
        .expect("accepted through the reminder's link");
    expect_code(
        cluster
            .invitation_as(&TestUser::new("mallory"))
            .accept_invitation(AcceptInvitationRequest {
                token: bob_reminder,
            })
            .await,
        Code::PermissionDenied,
    );
    cluster.stop().await;
}
