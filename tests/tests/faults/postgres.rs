//! PostgreSQL restarted under a steady load of reads and writes: every service's health goes
//! NOT_SERVING while the database is away and SERVING once it is back, callers get
//! UNAVAILABLE (never INTERNAL or UNKNOWN), the same processes answer again without a
//! restart, and nothing written — before the outage or acknowledged during it — is lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tenantry_e2e::{create_customer, invite, partner_with_owner, send_message};
use tenantry_proto::invitation::v1::ListInvitationsRequest;
use tenantry_proto::membership::v1::{
    AddMemberRequest, AddMyselfRequest, ListMembersRequest, Role, add_member_request,
};
use tenantry_proto::notification::v1::{ListMessagesRequest, ReadPolicy};
use tenantry_proto::registry::v1::{
    CreateManagedCustomerRequest, GetAccountRequest, ListManagedCustomersRequest,
};
use tenantry_testkit::proxy::TcpProxy;
use tenantry_testkit::{
    Backend, ClusterOptions, ServiceKind, TestCluster, TestUser, amqp_or_skip, postgres_or_skip,
};

use crate::observe::{HealthWatch, Tally, describe, metric, scrape};
use crate::system::{self, Outage};
use crate::{SERIAL, retrying, server_addr, through, via_proxy};

/// How long PostgreSQL stays stopped: a service checks its database every 5 s and gives a
/// check 2 s (`PING_TIMEOUT`), so an outage of 7 s is always seen.
const DATABASE_OUTAGE: Duration = Duration::from_secs(7);
/// Rows written before the outage, per kind.
const WRITTEN_BEFORE: usize = 10;

fn grpc_names() -> Vec<&'static str> {
    ServiceKind::ALL
        .iter()
        .map(|kind| kind.grpc_name())
        .collect()
}

/// The ids of the customers `partner` manages (every page).
async fn managed_customers(cluster: &TestCluster, actor: &TestUser, partner: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = cluster
            .registry_as(actor)
            .list_managed_customers(ListManagedCustomersRequest {
                parent: partner.to_string(),
                page_size: 1000,
                page_token,
                state: 0,
            })
            .await
            .expect("list managed customers")
            .into_inner();
        ids.extend(page.accounts.into_iter().map(|account| account.account_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// The user names of `account`'s members (every page).
async fn members(cluster: &TestCluster, actor: &TestUser, account: &str) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = cluster
            .membership_as(actor)
            .list_members(ListMembersRequest {
                parent: account.to_string(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list members")
            .into_inner();
        users.extend(page.members.into_iter().map(|member| member.user));
        if page.next_page_token.is_empty() {
            return users;
        }
        page_token = page.next_page_token;
    }
}

/// One read of each service, as `actor` about `customer` (sent by `partner`).
async fn read_each_service(
    cluster: &TestCluster,
    actor: &TestUser,
    partner: &str,
    customer: &str,
    tally: &Tally,
) {
    let account = cluster
        .registry_as(actor)
        .get_account(GetAccountRequest {
            name: customer.to_string(),
        })
        .await;
    tally.record(&account);
    let members = cluster
        .membership_as(actor)
        .list_members(ListMembersRequest {
            parent: customer.to_string(),
            page_size: 20,
            ..Default::default()
        })
        .await;
    tally.record(&members);
    let invitations = cluster
        .invitation_as(actor)
        .list_invitations(ListInvitationsRequest {
            parent: customer.to_string(),
            page_size: 20,
            ..Default::default()
        })
        .await;
    tally.record(&invitations);
    let messages = cluster
        .notification_as(actor)
        .list_messages(ListMessagesRequest {
            parent: partner.to_string(),
            page_size: 20,
            page_token: String::new(),
        })
        .await;
    tally.record(&messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load() {
    let _serial = SERIAL.lock().await;
    let (Some(database), Some(_)) = (postgres_or_skip(), amqp_or_skip()) else {
        eprintln!("skipped: needs TENANTRY_TEST_POSTGRES_URL and TENANTRY_TEST_AMQP_URL");
        return;
    };
    // The production shape: PostgreSQL and RabbitMQ.
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let (proxy, server) = if via_proxy() {
        let proxy = Arc::new(TcpProxy::start(server_addr(&database, 5432)).await);
        options.postgres_url = Some(through(&database, proxy.addr()));
        (Some(proxy), None)
    } else {
        let Some(server) = system::Postgres::locate(&database) else {
            return;
        };
        (None, Some(server))
    };
    let cluster = Arc::new(TestCluster::start_with(options).await);
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "acme", "alice").await;
    let alice = partner.owner.clone();
    let globex = create_customer(&cluster, &alice, &partner.account.name, "globex")
        .await
        .expect("globex");
    cluster
        .membership_as(&alice)
        .add_myself(AddMyselfRequest {
            account: globex.name.clone(),
            ..Default::default()
        })
        .await
        .expect("add myself");

    // Written before the outage: customers, members, an invitation and a message.
    let mut customers_before = Vec::new();
    let mut members_before = Vec::new();
    for index in 0..WRITTEN_BEFORE {
        let id = format!("before-{index}");
        create_customer(&cluster, &alice, &partner.account.name, &id)
            .await
            .expect("customer before the outage");
        customers_before.push(id);
        let member = TestUser::new(&format!("before{index}"));
        tenantry_e2e::add_member(&cluster, &alice, &globex.name, &member, Role::Employee)
            .await
            .expect("member before the outage");
        members_before.push(member.resource_name());
    }
    let invitation = invite(
        &cluster,
        &alice,
        &globex.name,
        "before@example.com",
        Role::Employee,
    )
    .await
    .expect("invitation before the outage");
    let message = send_message(
        &cluster,
        &alice,
        &partner.account.name,
        &[&globex.name],
        "Before the outage",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("message before the outage");

    // The steady load: two writers (retrying UNAVAILABLE with the same request_id) and a
    // reader of every service.
    let services = grpc_names();
    let health = HealthWatch::start(cluster.channel(), &services, Duration::from_millis(100));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::default();
    let customer_writer = {
        let (cluster, alice, partner, tally, stop) = (
            cluster.clone(),
            alice.clone(),
            partner.account.name.clone(),
            tally.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut written = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let request = CreateManagedCustomerRequest {
                    parent: partner.clone(),
                    customer_id: format!("load-{}", written.len()),
                    display_name: "Written under load".into(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                };
                let created = retrying(&tally, || {
                    let (mut client, request) = (cluster.registry_as(&alice), request.clone());
                    async move { client.create_managed_customer(request).await }
                })
                .await;
                match created {
                    Ok(_) => written.push(request.customer_id),
                    Err(status) => return Err(status),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(written)
        })
    };
    let member_writer = {
        let (cluster, alice, globex, tally, stop) = (
            cluster.clone(),
            alice.clone(),
            globex.name.clone(),
            tally.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut written = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let user = TestUser::new(&format!("load{}", written.len()));
                let request = AddMemberRequest {
                    parent: globex.clone(),
                    principal: Some(add_member_request::Principal::User(user.resource_name())),
                    role: Role::Employee as i32,
                    source: 0,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    invitee_profile: None,
                };
                let added = retrying(&tally, || {
                    let (mut client, request) = (cluster.membership_as(&alice), request.clone());
                    async move { client.add_member(request).await }
                })
                .await;
                match added {
                    Ok(_) => written.push(user.resource_name()),
                    Err(status) => return Err(status),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(written)
        })
    };
    let reader = {
        let (cluster, alice, partner, globex, tally, stop) = (
            cluster.clone(),
            alice.clone(),
            partner.account.name.clone(),
            globex.name.clone(),
            tally.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                read_each_service(&cluster, &alice, &partner, &globex, &tally).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ok_before = tally.ok();
    let stopped_at = health.now();
    let outage = match (&proxy, server) {
        (Some(proxy), _) => Outage::cut("PostgreSQL", proxy.clone()).await,
        (None, Some(server)) => server.stop().await,
        (None, None) => unreachable!("one way to stop the database"),
    };
    tokio::time::sleep(DATABASE_OUTAGE).await;
    let down = outage.end().await;
    let started_at = health.now();
    // The same processes serve again: no restart of the cluster.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !health.all_serving(&services) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not SERVING 30 s after PostgreSQL came back: {}",
            services
                .iter()
                .map(|service| format!("{service}: {}", describe(&health.transitions(service))))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serving_after = health.now() - started_at;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let customers_written = customer_writer
        .await
        .expect("customer writer")
        .expect("every customer write succeeded in the end");
    let members_written = member_writer
        .await
        .expect("member writer")
        .expect("every member write succeeded in the end");
    reader.await.expect("reader");
    health.stop_polling();

    // Callers saw UNAVAILABLE, and only that.
    let failures = tally.failures();
    assert!(
        failures.keys().all(|code| code == "Unavailable"),
        "calls failed with codes other than UNAVAILABLE: {failures:?}"
    );
    // Health followed the database: NOT_SERVING after the stop, SERVING again at the end.
    let mut transitions = Vec::new();
    for service in &services {
        let changes = health.transitions(service);
        assert!(
            changes
                .iter()
                .any(|(at, serving)| !serving && *at >= stopped_at),
            "{service} never reported NOT_SERVING while PostgreSQL was down: {}",
            describe(&changes)
        );
        assert!(
            changes.last().is_some_and(|(_, serving)| *serving),
            "{service} is not SERVING again: {}",
            describe(&changes)
        );
        transitions.push(format!("{service}: {}", describe(&changes)));
    }
    // The same cluster answers every service again.
    let after = Tally::default();
    read_each_service(
        &cluster,
        &alice,
        &partner.account.name,
        &globex.name,
        &after,
    )
    .await;
    assert_eq!(
        (after.ok(), after.failed()),
        (4, 0),
        "{:?}",
        after.failures()
    );
    // Nothing is lost: what was written before, and every write acknowledged under load.
    let customers = managed_customers(&cluster, &alice, &partner.account.name).await;
    for id in customers_before.iter().chain(&customers_written) {
        assert!(customers.contains(id), "customer {id} is missing");
    }
    assert_eq!(
        customers.len(),
        1 + customers_before.len() + customers_written.len(),
        "no customer was created twice: {customers:?}"
    );
    let globex_members = members(&cluster, &alice, &globex.name).await;
    for user in members_before.iter().chain(&members_written) {
        assert!(globex_members.contains(user), "member {user} is missing");
    }
    let invitations = cluster
        .invitation_as(&alice)
        .list_invitations(ListInvitationsRequest {
            parent: globex.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list invitations")
        .into_inner()
        .invitations;
    assert!(invitations.iter().any(|i| i.name == invitation.name));
    let messages = cluster
        .notification_as(&alice)
        .list_messages(ListMessagesRequest {
            parent: partner.account.name.clone(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list messages")
        .into_inner()
        .messages;
    assert!(messages.iter().any(|m| m.name == message.name));
    // The background work recovered too: an invitation made now is mailed (outbox, relay,
    // consumer), and no event was given up on while the database was away.
    invite(
        &cluster,
        &alice,
        &globex.name,
        "after@example.com",
        Role::Employee,
    )
    .await
    .expect("invitation after the outage");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !["before@example.com", "after@example.com"]
        .iter()
        .all(|address| {
            cluster
                .mail_files()
                .iter()
                .any(|mail| mail.to.contains(address))
        })
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the invitations before and after the outage were not both mailed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exposition = scrape(cluster.admin_addr()).await;
    let dead_letters = metric(&exposition, "tenantry_consumer_dead_letters_total", "");
    let failed_deliveries = metric(
        &exposition,
        "tenantry_consumer_deliveries_total",
        "outcome=\"failed\"",
    );
    assert_eq!(
        dead_letters, 0.0,
        "events were dead-lettered because the database was away"
    );

    eprintln!(
        "PostgreSQL {} for {down:.1?} under load; every service SERVING {serving_after:.1?} after \
         it was back (stop at {:.1}s, start at {:.1}s); health {}; calls OK {} ({ok_before} \
         before the outage) / failed {failures:?}; {} customers and {} members written under \
         load, all present with the {WRITTEN_BEFORE}+{WRITTEN_BEFORE} written before; event \
         handlers failed {failed_deliveries} times, dead letters {dead_letters}",
        if via_proxy() { "cut" } else { "stopped" },
        stopped_at.as_secs_f64(),
        started_at.as_secs_f64(),
        transitions.join("; "),
        tally.ok(),
        customers_written.len(),
        members_written.len(),
    );
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.stop().await,
        Err(_) => panic!("the load tasks still hold the cluster"),
    }
}
