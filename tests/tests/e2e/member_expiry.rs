//! Time-bound partner access end to end (issue 18, part 3 and part 4's reminders): a partner
//! person adds themself to a customer for one hour; the partner's warning list shows it; an
//! extension moves it; once the clock passes the end, the sweep ends the membership with
//! `member.expired`, their next call that needs the customer membership is refused and their
//! inbox loses the customer's pending message. With a real SMTP server, the member and the
//! partner's OWNERs are reminded once before the end.
//!
//! The clock is the test's: instead of waiting an hour, the test runs membership's own expiry
//! sweep (`Store::expire_due`) on the cluster's membership database with `now` two hours
//! ahead; the event it writes goes out through the cluster's relay like any other.

use chrono::{Duration, Utc};
use tenantry_e2e::{
    add_member, create_customer, expect_code, inbox_until, partner_with_owner, send_message,
};
use tenantry_proto::invitation::v1::ListInvitationsRequest;
use tenantry_proto::membership::v1::Role;
use tenantry_proto::membership::v1::{
    AddMyselfRequest, ExtendMemberAccessRequest, ListExpiringMembersRequest,
};
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{Backend, ClusterOptions, ServiceKind, TestCluster, TestUser};
use tonic::Code;

fn timestamp(time: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(tenantry_platform::time::to_timestamp(time))
}

async fn access_ends_with_the_clock(backend: Backend) {
    let cluster = TestCluster::start(backend).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "exp-partner", "pam").await;
    let customer = create_customer(&cluster, &partner.owner, &partner.account.name, "exp-cust")
        .await
        .expect("create customer");
    let pam = &partner.owner;

    // Add Myself for one hour.
    let joined = cluster
        .membership_as(pam)
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            access_duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .expect("add myself for an hour")
        .into_inner();
    assert!(joined.created);
    let member = joined.member.expect("member");
    let ends = member.expire_time.expect("a time-bound membership");
    let in_an_hour = Utc::now() + Duration::hours(1);
    assert!(
        (ends.seconds - in_an_hour.timestamp()).abs() <= 60,
        "{ends:?}"
    );

    // The partner's warning list shows it.
    let expiring = cluster
        .membership_as(pam)
        .list_expiring_members(ListExpiringMembersRequest {
            parent: partner.account.name.clone(),
            expire_before: timestamp(Utc::now() + Duration::days(1)),
            ..Default::default()
        })
        .await
        .expect("list expiring")
        .into_inner();
    assert_eq!(
        expiring
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        [member.name.as_str()]
    );

    // Pam may not extend her own access; the operator extends it by ten minutes.
    let extended_end = Utc::now() + Duration::minutes(70);
    expect_code(
        cluster
            .membership_as(pam)
            .extend_member_access(ExtendMemberAccessRequest {
                name: member.name.clone(),
                expire_time: timestamp(extended_end),
                etag: String::new(),
            })
            .await,
        Code::PermissionDenied,
    );
    let extended = cluster
        .membership_as(&operator)
        .extend_member_access(ExtendMemberAccessRequest {
            name: member.name.clone(),
            expire_time: timestamp(extended_end),
            etag: member.etag.clone(),
        })
        .await
        .expect("the operator extends")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(
        extended.expire_time.map(|t| t.seconds),
        Some(extended_end.timestamp())
    );

    // While a member, Pam manages the customer's invitations and gets its messages.
    cluster
        .invitation_as(pam)
        .list_invitations(ListInvitationsRequest {
            parent: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("a member ADMIN lists invitations");
    send_message(
        &cluster,
        pam,
        &partner.account.name,
        &[customer.name.as_str()],
        "Maintenance tonight",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send message");
    inbox_until(&cluster, pam, "the customer's message", |items| {
        items.len() == 1
    })
    .await;

    // Two hours later by the sweep's clock: expired.
    let database =
        tenantry_platform::db::Database::new(cluster.database_url(ServiceKind::Membership));
    database
        .connect_and_migrate::<tenantry_membership::store::migrations::Migrator>()
        .await
        .expect("membership database");
    let store = tenantry_membership::store::Store::new(database, tenantry_events::Outbox::new());
    let (_, expired) = store
        .expire_due(Utc::now() + Duration::hours(2), 100)
        .await
        .expect("sweep");
    assert_eq!(expired, 1);

    // Her next call that needs the membership is refused, and her inbox is emptied.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = cluster
            .invitation_as(pam)
            .list_invitations(ListInvitationsRequest {
                parent: customer.name.clone(),
                ..Default::default()
            })
            .await;
        match listed {
            Err(status) if status.code() == Code::PermissionDenied => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still allowed after the expiry: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    }
    inbox_until(&cluster, pam, "no message", |items| items.is_empty()).await;
    let expiring = cluster
        .membership_as(pam)
        .list_expiring_members(ListExpiringMembersRequest {
            parent: partner.account.name.clone(),
            expire_before: timestamp(Utc::now() + Duration::days(1)),
            ..Default::default()
        })
        .await
        .expect("list expiring")
        .into_inner();
    assert!(expiring.members.is_empty(), "{:?}", expiring.members);
}

#[tokio::test]
async fn access_ends_with_the_clock_on_sqlite() {
    access_ends_with_the_clock(Backend::Sqlite).await;
}

#[tokio::test]
async fn access_ends_with_the_clock_on_postgres() {
    if tenantry_testkit::postgres_or_skip().is_none() {
        return;
    }
    access_ends_with_the_clock(Backend::Postgres).await;
}

/// With a real SMTP server: a partner EMPLOYEE adds themself for one hour, so the last
/// reminder (1 day before the end) is due at once. They and the partner's OWNER each get
/// exactly one e-mail, not one per sweep run; the text names the account and the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_and_the_partner_owners_are_reminded_once() {
    if !tenantry_testkit::smtp_or_skip() {
        eprintln!("skipped: needs aiosmtpd (see .ci/run)");
        return;
    }
    let smtp = SmtpServer::start().await;
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.mail.smtp_url = Some(smtp.url());
    options.membership.member_sweep_seconds = 1;
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "rem-partner", "pam").await;
    let customer = create_customer(&cluster, &partner.owner, &partner.account.name, "rem-cust")
        .await
        .expect("create customer");
    let eli = TestUser::new("eli");
    add_member(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &eli,
        Role::Employee,
    )
    .await
    .expect("add the employee");
    cluster
        .membership_as(&eli)
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            access_duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .expect("add myself for an hour");

    let timeout = std::time::Duration::from_secs(30);
    let to_eli = smtp.wait_for(&eli.email, 1, timeout).await;
    let to_pam = smtp.wait_for(&partner.owner.email, 1, timeout).await;
    assert!(
        to_eli[0]
            .subject
            .starts_with("Your access to Customer rem-cust ends in 5"),
        "{}",
        to_eli[0].subject
    );
    assert!(
        to_pam[0].subject.contains(&eli.email),
        "{}",
        to_pam[0].subject
    );
    assert!(
        to_eli[0].text.contains("Customer rem-cust") && to_eli[0].text.contains("ends on"),
        "{}",
        to_eli[0].text
    );
    assert_ne!(to_eli[0].message_id, to_pam[0].message_id);
    // Three more sweep runs: nothing more.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(smtp.received_by(&eli.email).len(), 1);
    assert_eq!(smtp.received_by(&partner.owner.email).len(), 1);
    cluster.stop().await;
    smtp.stop().await;
}
