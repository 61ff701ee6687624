//! Partner messages: both read policies across two customers (with a user in both), racing
//! single-read acknowledgements, the live inbox, withdrawals, the sender's view and refusals,
//! on SQLite and PostgreSQL. The production shape (RabbitMQ, several replicas, a 20,000-delivery
//! fan-out that survives a restart mid-way) is in `production_shape`.

mod production_shape;
mod registry_calls;

use std::time::{Duration, Instant};

use tenantry_e2e::{
    add_member, create_customer, expect_code, expect_invalid_field, inbox, inbox_until,
    partner_with_owner, send_message, watch_inbox,
};
use tenantry_proto::membership::v1::{RemoveMemberRequest, Role};
use tenantry_proto::notification::v1::{
    AcknowledgeMessageRequest, GetMessageRequest, ListMessageReceiptsRequest, Message,
    MessageState, ReadPolicy, SendMessageRequest, watch_inbox_response,
};
use tenantry_proto::registry::v1::{DeleteAccountRequest, GetAccountRequest};
use tenantry_testkit::{TestCluster, TestUser, on_both_backends};
use tokio_stream::StreamExt;
use tonic::Code;

async fn acknowledge(
    cluster: &TestCluster,
    user: &TestUser,
    message: &str,
) -> Result<tenantry_proto::notification::v1::AcknowledgeMessageResponse, tonic::Status> {
    cluster
        .notification_as(user)
        .acknowledge_message(AcknowledgeMessageRequest {
            name: message.to_string(),
        })
        .await
        .map(|response| response.into_inner())
}

async fn get_message(cluster: &TestCluster, actor: &TestUser, name: &str) -> Message {
    cluster
        .notification_as(actor)
        .get_message(GetMessageRequest {
            name: name.to_string(),
        })
        .await
        .expect("get message")
        .into_inner()
        .message
        .expect("message")
}

fn has(title: &str) -> impl Fn(&[tenantry_proto::notification::v1::InboxItem]) -> bool + '_ {
    move |items| items.iter().any(|item| item.title == title)
}

fn lacks(title: &str) -> impl Fn(&[tenantry_proto::notification::v1::InboxItem]) -> bool + '_ {
    move |items| !items.iter().any(|item| item.title == title)
}

/// Three users across two customers — one in each and one in both — and one message of each
/// policy to both customers.
async fn both_policies_across_two_customers(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let alice = &partner.owner;
    let globex = create_customer(cluster, alice, &partner.account.name, "globex")
        .await
        .expect("globex");
    let initech = create_customer(cluster, alice, &partner.account.name, "initech")
        .await
        .expect("initech");
    let (gus, ian, bea) = (
        TestUser::new("gus"),
        TestUser::new("ian"),
        TestUser::new("bea"),
    );
    for (account, user) in [
        (&globex.name, &gus),
        (&initech.name, &ian),
        (&globex.name, &bea),
        (&initech.name, &bea),
    ] {
        add_member(cluster, &operator, account, user, Role::Employee)
            .await
            .expect("add member");
    }
    let both = [globex.name.as_str(), initech.name.as_str()];
    let all_read = send_message(
        cluster,
        alice,
        &partner.account.name,
        &both,
        "Maintenance",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send all-must-read");
    let single = send_message(
        cluster,
        alice,
        &partner.account.name,
        &both,
        "Invoice",
        ReadPolicy::SingleReadOnly,
    )
    .await
    .expect("send single-read");

    // Everyone sees both at "login"; bea, reached through two accounts, sees each once.
    for user in [&gus, &ian, &bea] {
        inbox_until(cluster, user, "both messages", |items| items.len() == 2).await;
    }
    let bea_inbox = inbox(cluster, &bea).await;
    assert_eq!(bea_inbox[0].title, "Invoice", "newest first");
    assert_eq!(bea_inbox[0].accounts.len(), 2, "one item, both accounts");

    // SINGLE_READ_ONLY: gus resolves it for globex only.
    let ack = acknowledge(cluster, &gus, &single.name)
        .await
        .expect("gus acks");
    assert_eq!(ack.acknowledged_accounts, vec![globex.name.clone()]);
    inbox_until(cluster, &gus, "the invoice gone", lacks("Invoice")).await;
    // bea still has it through initech; ian (initech) too.
    let bea_now = inbox_until(cluster, &bea, "the invoice via initech only", |items| {
        items
            .iter()
            .any(|item| item.title == "Invoice" && item.accounts == vec![initech.name.clone()])
    })
    .await;
    assert_eq!(bea_now.len(), 2);
    inbox_until(cluster, &ian, "the invoice", has("Invoice")).await;
    // ian resolves it for initech; now nobody has it.
    acknowledge(cluster, &ian, &single.name)
        .await
        .expect("ian acks");
    inbox_until(cluster, &bea, "the invoice gone", lacks("Invoice")).await;
    // Acknowledging something someone else resolved is not an error.
    let late = acknowledge(cluster, &bea, &single.name)
        .await
        .expect("late ack is fine");
    assert_eq!(late.already_resolved_accounts.len(), 2);

    // ALL_MUST_READ: gus's ack removes it for gus only; bea's ack counts for both accounts.
    acknowledge(cluster, &gus, &all_read.name)
        .await
        .expect("gus acks");
    inbox_until(cluster, &gus, "empty", |items| items.is_empty()).await;
    inbox_until(cluster, &bea, "the maintenance note", has("Maintenance")).await;
    let bea_ack = acknowledge(cluster, &bea, &all_read.name)
        .await
        .expect("bea acks");
    assert_eq!(bea_ack.acknowledged_accounts.len(), 2);
    let again = acknowledge(cluster, &bea, &all_read.name)
        .await
        .expect("idempotent");
    assert_eq!(again.acknowledge_time, bea_ack.acknowledge_time);
    inbox_until(cluster, &bea, "empty", |items| items.is_empty()).await;
    inbox_until(cluster, &ian, "the maintenance note", has("Maintenance")).await;

    // The sender's view.
    let single_view = get_message(cluster, alice, &single.name).await;
    for stats in &single_view.stats {
        assert!(stats.resolved, "{stats:?}");
        let expected = if stats.account == globex.name {
            &gus
        } else {
            &ian
        };
        assert_eq!(stats.resolved_by, expected.resource_name());
        assert_eq!(stats.recipient_count, 2);
    }
    let all_view = get_message(cluster, alice, &all_read.name).await;
    let globex_stats = all_view
        .stats
        .iter()
        .find(|stats| stats.account == globex.name)
        .expect("globex stats");
    assert_eq!(
        (
            globex_stats.recipient_count,
            globex_stats.acknowledged_count
        ),
        (2, 2)
    );
    let receipts = cluster
        .notification_as(alice)
        .list_message_receipts(ListMessageReceiptsRequest {
            name: all_read.name.clone(),
            ..Default::default()
        })
        .await
        .expect("receipts")
        .into_inner()
        .receipts;
    assert_eq!(
        receipts.len(),
        3,
        "gus, and bea for both accounts: {receipts:?}"
    );
}

/// 50 members of one customer acknowledge one SINGLE_READ_ONLY message at once: one resolver,
/// everyone's inbox empty for it, the other customer's inbox untouched.
async fn concurrent_single_read_acknowledgements(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let alice = &partner.owner;
    let globex = create_customer(cluster, alice, &partner.account.name, "globex")
        .await
        .expect("globex");
    let initech = create_customer(cluster, alice, &partner.account.name, "initech")
        .await
        .expect("initech");
    let racers: Vec<TestUser> = (0..50)
        .map(|n| TestUser::new(&format!("racer{n}")))
        .collect();
    for racer in &racers {
        add_member(cluster, &operator, &globex.name, racer, Role::Employee)
            .await
            .expect("add racer");
    }
    let bystander = TestUser::new("bystander");
    add_member(
        cluster,
        &operator,
        &initech.name,
        &bystander,
        Role::Employee,
    )
    .await
    .expect("add bystander");
    let message = send_message(
        cluster,
        alice,
        &partner.account.name,
        &[&globex.name, &initech.name],
        "Contested",
        ReadPolicy::SingleReadOnly,
    )
    .await
    .expect("send");
    for racer in [&racers[0], &racers[49]] {
        inbox_until(cluster, racer, "the message", has("Contested")).await;
    }
    inbox_until(cluster, &bystander, "the message", has("Contested")).await;
    // Wait for the whole fan-out before racing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_message(cluster, alice, &message.name).await.state != MessageState::Delivered as i32 {
        assert!(Instant::now() < deadline, "fan-out did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let results = futures::future::join_all(
        racers
            .iter()
            .map(|racer| acknowledge(cluster, racer, &message.name)),
    )
    .await;
    let resolvers = results
        .iter()
        .map(|result| result.as_ref().expect("every ack succeeds"))
        .filter(|ack| ack.acknowledged_accounts == vec![globex.name.clone()])
        .count();
    assert_eq!(
        resolvers, 1,
        "exactly one acknowledgement resolved it for globex"
    );
    let stats = get_message(cluster, alice, &message.name).await.stats;
    let globex_stats = stats
        .iter()
        .find(|s| s.account == globex.name)
        .expect("globex");
    assert!(globex_stats.resolved);
    assert!(
        racers
            .iter()
            .any(|racer| racer.resource_name() == globex_stats.resolved_by)
    );
    let initech_stats = stats
        .iter()
        .find(|s| s.account == initech.name)
        .expect("initech");
    assert!(!initech_stats.resolved);
    for racer in &racers {
        assert!(
            lacks("Contested")(&inbox(cluster, racer).await),
            "{}",
            racer.sub
        );
    }
    assert!(
        has("Contested")(&inbox(cluster, &bystander).await),
        "the other customer keeps it"
    );
}

/// WatchInbox sees an arrival and a removal; a removed member and a deleted account lose their
/// pending deliveries.
async fn live_inbox_and_withdrawals(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, "acme", "alice").await;
    let alice = &partner.owner;
    let globex = create_customer(cluster, alice, &partner.account.name, "globex")
        .await
        .expect("globex");
    let initech = create_customer(cluster, alice, &partner.account.name, "initech")
        .await
        .expect("initech");
    let (wanda, rex, dora) = (
        TestUser::new("wanda"),
        TestUser::new("rex"),
        TestUser::new("dora"),
    );
    add_member(cluster, &operator, &globex.name, &wanda, Role::Employee)
        .await
        .expect("wanda");
    add_member(cluster, &operator, &globex.name, &rex, Role::Employee)
        .await
        .expect("rex");
    add_member(cluster, &operator, &initech.name, &dora, Role::Employee)
        .await
        .expect("dora");

    let (mut watch, snapshot) = watch_inbox(cluster.notification_as(&wanda)).await;
    assert!(snapshot.items.is_empty(), "{snapshot:?}");
    // The live push is per replica; give the subscription a moment to be bound.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let message = send_message(
        cluster,
        alice,
        &partner.account.name,
        &[&globex.name, &initech.name],
        "Live",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send");
    let arrived = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("an arrival")
        .expect("stream open")
        .expect("ok");
    assert!(
        matches!(arrived.event, Some(watch_inbox_response::Event::Arrived(ref item)) if item.message == message.name),
        "{arrived:?}"
    );
    acknowledge(cluster, &wanda, &message.name)
        .await
        .expect("ack");
    let removed = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a removal")
        .expect("stream open")
        .expect("ok");
    assert!(
        matches!(removed.event, Some(watch_inbox_response::Event::Removed(ref name)) if *name == message.name),
        "{removed:?}"
    );

    // Rex is removed from globex: his pending delivery through it is withdrawn.
    inbox_until(cluster, &rex, "the message", has("Live")).await;
    cluster
        .membership_as(&operator)
        .remove_member(RemoveMemberRequest {
            name: format!("{}/members/{}", globex.name, rex.sub),
            etag: String::new(),
        })
        .await
        .expect("remove rex");
    inbox_until(cluster, &rex, "the message withdrawn", lacks("Live")).await;

    // Initech is deleted: dora's pending delivery is withdrawn.
    inbox_until(cluster, &dora, "the message", has("Live")).await;
    let current = cluster
        .registry_as(alice)
        .get_account(GetAccountRequest {
            name: initech.name.clone(),
        })
        .await
        .expect("read")
        .into_inner()
        .account
        .expect("account");
    cluster
        .registry_as(alice)
        .delete_account(DeleteAccountRequest {
            name: initech.name.clone(),
            etag: current.etag,
        })
        .await
        .expect("delete initech");
    inbox_until(cluster, &dora, "the message withdrawn", lacks("Live")).await;
    let stats = get_message(cluster, alice, &message.name).await.stats;
    let withdrawn: i32 = stats.iter().map(|s| s.withdrawn_count).sum();
    assert_eq!(withdrawn, 2, "rex and dora: {stats:?}");
}

/// What the service refuses.
async fn message_refusals(cluster: &TestCluster) {
    let operator = TestUser::operator("ops");
    let first = partner_with_owner(cluster, &operator, "first", "alice").await;
    let second = partner_with_owner(cluster, &operator, "second", "bob").await;
    let globex = create_customer(cluster, &first.owner, &first.account.name, "globex")
        .await
        .expect("globex");
    let member = TestUser::new("member");
    add_member(cluster, &operator, &globex.name, &member, Role::Employee)
        .await
        .expect("member");

    // A partner messaging a customer it does not manage.
    expect_code(
        send_message(
            cluster,
            &second.owner,
            &second.account.name,
            &[&globex.name],
            "Hi",
            ReadPolicy::AllMustRead,
        )
        .await,
        Code::InvalidArgument,
    );
    // A partner's member messaging as another partner.
    expect_code(
        send_message(
            cluster,
            &second.owner,
            &first.account.name,
            &[&globex.name],
            "Hi",
            ReadPolicy::AllMustRead,
        )
        .await,
        Code::PermissionDenied,
    );
    // A customer's user acting as a partner.
    expect_code(
        send_message(
            cluster,
            &member,
            &first.account.name,
            &[&globex.name],
            "Hi",
            ReadPolicy::AllMustRead,
        )
        .await,
        Code::PermissionDenied,
    );
    let request = |title: String, body: String, policy: i32| SendMessageRequest {
        parent: first.account.name.clone(),
        title,
        body,
        read_policy: policy,
        recipients: vec![globex.name.clone()],
        ..Default::default()
    };
    let mut client = cluster.notification_as(&first.owner);
    expect_invalid_field(
        client
            .send_message(request("x".repeat(121), "ok".into(), 1))
            .await,
        "title",
    );
    expect_invalid_field(
        client
            .send_message(request("ok".into(), "y".repeat(2001), 1))
            .await,
        "body",
    );
    expect_invalid_field(
        client
            .send_message(request("ok".into(), "ok".into(), 0))
            .await,
        "read_policy",
    );
    expect_invalid_field(
        client
            .send_message(request("ok".into(), "ok".into(), 7))
            .await,
        "read_policy",
    );
    // Limits count characters, not bytes.
    let message = client
        .send_message(request(
            "ü".repeat(120),
            "ß".repeat(2000),
            ReadPolicy::AllMustRead as i32,
        ))
        .await
        .expect("120 and 2,000 characters are fine")
        .into_inner()
        .message
        .expect("message");

    // Outsiders cannot read receipts or someone else's message, nor acknowledge it.
    expect_code(
        cluster
            .notification_as(&second.owner)
            .list_message_receipts(ListMessageReceiptsRequest {
                name: message.name.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        cluster
            .notification_as(&member)
            .get_message(GetMessageRequest {
                name: message.name.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        acknowledge(cluster, &second.owner, &message.name).await,
        Code::PermissionDenied,
    );
}

on_both_backends!(both_policies, super::both_policies_across_two_customers);
on_both_backends!(
    single_read_race,
    super::concurrent_single_read_acknowledgements
);
on_both_backends!(live_inbox, super::live_inbox_and_withdrawals);
on_both_backends!(refusals, super::message_refusals);
