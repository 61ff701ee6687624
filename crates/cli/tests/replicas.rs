//! Two replicas of every service (eight `tenantry serve` processes on PostgreSQL and RabbitMQ),
//! peer URLs listing both replicas, under ~10 s of concurrent load from this test; at ~5 s one
//! replica of each service gets SIGKILL (later on a slow machine, until every service has had
//! enough calls to judge).
//!
//! - Balance: until the kill, each replica served 30–70 % of its service's calls (all methods
//!   together, the internal `Authorize` calls the other services balance over membership's
//!   replicas included), read from each process's `/metrics`.
//! - Failures: nothing fails before the kill; at the kill at most the calls in flight on the
//!   dead replicas fail (at most 2 per load task), and only with UNAVAILABLE or with the
//!   CANCELLED/UNKNOWN tonic makes of a connection reset — never INTERNAL and the like; a
//!   call started a second after the kill never fails. The test client takes a replica out
//!   when a call to it failed at the transport; it retries nothing.
//! - No write lost: every customer, member, invitation and message whose call answered OK is
//!   there afterwards, read through the surviving replicas.
//! - No effect twice: each invitation (every one in the database, not only those answered OK)
//!   was e-mailed exactly once (except, printed as a NOTE, an e-mail the killed mailer had sent
//!   but not committed: a known product limitation, see `verify.rs`), each message was fanned out once (one delivery per recipient,
//!   recipient counter to match), membership's account replica matches the registry's accounts
//!   version for version, every invitation is SENT, and the fan-out's `processed_events` hold
//!   one row per message. Redeliveries the consumers caught (`outcome="duplicate"`) are printed.
//!
//! Needs TENANTRY_TEST_POSTGRES_URL and TENANTRY_TEST_AMQP_URL; under CI=true a missing one is a
//! failure.

mod replicas_cluster;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use replicas_cluster::verify::{MIN_CALLS, Written, assert_balanced, verify};
use replicas_cluster::{
    INVITATION, MEMBERSHIP, NOTIFICATION, Pool, REGISTRY, SERVICES, calls_per_service, error_lines,
    scrape, signed_millis, start_cluster, transport_failure,
};
use support::{TestResources, authorized, backend_url, with_database};
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::invitation::v1::{CreateInvitationRequest, ListInvitationsRequest};
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{
    AddMemberRequest, ListMembersRequest, Role, add_member_request,
};
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{
    ListPendingMessagesRequest, ReadPolicy, SendMessageRequest,
};
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, GetAccountRequest, PromoteToPartnerRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

const JWT_SECRET: &str = "replicas-test-secret";
const INTERNAL_SECRET: &str = "replicas-internal-secret";
/// Concurrent load tasks, each with one call in flight at a time.
const TASKS: usize = 12;
/// The load runs this long before the kills, longer (up to a minute) on a slow machine until
/// every service has had enough calls to judge its balance.
const BEFORE_KILL: Duration = Duration::from_secs(5);
const AFTER_KILL: Duration = Duration::from_secs(5);
/// Calls started this long after the kills returned must all succeed.
const SETTLE: Duration = Duration::from_secs(1);
/// Members of `news`, the recipient account of every message.
const READERS: usize = 3;

fn token(sub: &str, operator: bool) -> String {
    support::user_token(JWT_SECRET, sub, operator)
}

#[derive(Clone, Copy)]
enum Op {
    GetAccount,
    CreateManagedCustomer,
    ListMembers,
    AddMember,
    CreateInvitation,
    ListInvitations,
    SendMessage,
    ListPendingMessages,
}

/// One round of each load task. Registry and membership also serve the other services'
/// internal calls (account look-ups, `Authorize`, member lists of the fan-out), so the
/// invitation and notification reads come more often: every service gets enough calls to
/// judge its balance.
const MIX: [Op; 12] = [
    Op::GetAccount,
    Op::CreateInvitation,
    Op::ListPendingMessages,
    Op::ListMembers,
    Op::ListInvitations,
    Op::SendMessage,
    Op::CreateManagedCustomer,
    Op::ListPendingMessages,
    Op::ListInvitations,
    Op::AddMember,
    Op::ListPendingMessages,
    Op::ListInvitations,
];

/// What the load tasks share.
struct Load {
    pools: [Pool; 4],
    alice: String,
    reader: String,
    tag: String,
    stop: AtomicBool,
}

/// One call of the load.
struct Call {
    op: &'static str,
    service: usize,
    replica: Option<usize>,
    start: Instant,
    end: Instant,
    error: Option<Status>,
}

/// What one load task did, and what its calls answered OK created.
#[derive(Default)]
struct TaskResult {
    calls: Vec<Call>,
    customers: Vec<String>,
    members: Vec<String>,
    invitations: Vec<(String, String)>,
    messages: Vec<String>,
}

enum Created {
    Nothing,
    Customer(String),
    Member(String),
    Invitation(String, String),
    Message(String),
}

async fn load_task(load: Arc<Load>, task: usize) -> TaskResult {
    let mut result = TaskResult::default();
    let mut round = 0usize;
    while !load.stop.load(Ordering::Acquire) {
        round += 1;
        let unique = format!("{task}x{round}");
        let request_id = uuid::Uuid::new_v4().to_string();
        let start = Instant::now();
        let (alice, reader) = (load.alice.clone(), load.reader.clone());
        let pool = |service: usize| &load.pools[service];
        let (op, service, (replica, answer)) = match MIX[(round + task) % MIX.len()] {
            Op::GetAccount => {
                // A different customer each time where possible: some decisions are misses.
                let name = match result.customers.len() {
                    0 => "accounts/acme".to_string(),
                    known => result.customers[round % known].clone(),
                };
                let call = pool(REGISTRY).call(|channel| async move {
                    CustomerRegistryServiceClient::new(channel)
                        .get_account(authorized(GetAccountRequest { name }, &alice))
                        .await
                        .map(|_| Created::Nothing)
                });
                ("GetAccount", REGISTRY, call.await)
            }
            Op::CreateManagedCustomer => {
                let call = pool(REGISTRY).call(|channel| async move {
                    let request = CreateManagedCustomerRequest {
                        parent: "accounts/acme".into(),
                        customer_id: format!("c{unique}"),
                        display_name: format!("Customer {unique}"),
                        request_id,
                    };
                    CustomerRegistryServiceClient::new(channel)
                        .create_managed_customer(authorized(request, &alice))
                        .await
                        .map(|response| {
                            Created::Customer(response.into_inner().account.expect("account").name)
                        })
                });
                ("CreateManagedCustomer", REGISTRY, call.await)
            }
            Op::ListMembers => {
                let call = pool(MEMBERSHIP).call(|channel| async move {
                    let request = ListMembersRequest {
                        parent: "accounts/acme".into(),
                        page_size: 10,
                        ..Default::default()
                    };
                    MembershipServiceClient::new(channel)
                        .list_members(authorized(request, &alice))
                        .await
                        .map(|_| Created::Nothing)
                });
                ("ListMembers", MEMBERSHIP, call.await)
            }
            Op::AddMember => {
                let user = format!("users/m{unique}-{}", load.tag);
                let call = pool(MEMBERSHIP).call(|channel| async move {
                    let request = AddMemberRequest {
                        parent: "accounts/acme".into(),
                        principal: Some(add_member_request::Principal::User(user.clone())),
                        role: Role::Employee as i32,
                        request_id,
                        ..Default::default()
                    };
                    MembershipServiceClient::new(channel)
                        .add_member(authorized(request, &alice))
                        .await
                        .map(|_| Created::Member(user))
                });
                ("AddMember", MEMBERSHIP, call.await)
            }
            Op::CreateInvitation => {
                let email = format!("inv{unique}-{}@example.com", load.tag);
                let call = pool(INVITATION).call(|channel| async move {
                    let request = CreateInvitationRequest {
                        parent: "accounts/acme".into(),
                        email: email.clone(),
                        role: Role::Employee as i32,
                        request_id,
                        ..Default::default()
                    };
                    InvitationServiceClient::new(channel)
                        .create_invitation(authorized(request, &alice))
                        .await
                        .map(|response| {
                            let invitation = response.into_inner().invitation.expect("invitation");
                            Created::Invitation(invitation.name, email)
                        })
                });
                ("CreateInvitation", INVITATION, call.await)
            }
            Op::ListInvitations => {
                let call = pool(INVITATION).call(|channel| async move {
                    let request = ListInvitationsRequest {
                        parent: "accounts/acme".into(),
                        page_size: 5,
                        ..Default::default()
                    };
                    InvitationServiceClient::new(channel)
                        .list_invitations(authorized(request, &alice))
                        .await
                        .map(|_| Created::Nothing)
                });
                ("ListInvitations", INVITATION, call.await)
            }
            Op::SendMessage => {
                let call = pool(NOTIFICATION).call(|channel| async move {
                    let request = SendMessageRequest {
                        parent: "accounts/acme".into(),
                        title: format!("Message {unique}"),
                        body: "Maintenance on Sunday.".into(),
                        read_policy: ReadPolicy::AllMustRead as i32,
                        recipients: vec!["accounts/news".into()],
                        request_id,
                        ..Default::default()
                    };
                    NotificationServiceClient::new(channel)
                        .send_message(authorized(request, &alice))
                        .await
                        .map(|response| {
                            Created::Message(response.into_inner().message.expect("message").name)
                        })
                });
                ("SendMessage", NOTIFICATION, call.await)
            }
            Op::ListPendingMessages => {
                let call = pool(NOTIFICATION).call(|channel| async move {
                    let request = ListPendingMessagesRequest {
                        page_size: 5,
                        page_token: String::new(),
                    };
                    NotificationServiceClient::new(channel)
                        .list_pending_messages(authorized(request, &reader))
                        .await
                        .map(|_| Created::Nothing)
                });
                ("ListPendingMessages", NOTIFICATION, call.await)
            }
        };
        let error = match answer {
            Ok(Created::Nothing) => None,
            Ok(Created::Customer(name)) => {
                result.customers.push(name);
                None
            }
            Ok(Created::Member(user)) => {
                result.members.push(user);
                None
            }
            Ok(Created::Invitation(name, email)) => {
                result.invitations.push((name, email));
                None
            }
            Ok(Created::Message(name)) => {
                result.messages.push(name);
                None
            }
            Err(status) => Some(status),
        };
        result.calls.push(Call {
            op,
            service,
            replica,
            start,
            end: Instant::now(),
            error,
        });
    }
    result
}

/// Acme (a partner, Alice its OWNER) manages `news`, which has READERS members.
async fn set_up(registry: Channel, membership: Channel) {
    let (operator, alice) = (token("ops", true), token("alice", false));
    let mut registry = CustomerRegistryServiceClient::new(registry);
    let mut membership = MembershipServiceClient::new(membership);
    let create = CreateAccountRequest {
        account_id: "acme".into(),
        display_name: "Acme".into(),
        request_id: String::new(),
    };
    registry
        .create_account(authorized(create, &operator))
        .await
        .expect("create acme");
    let promote = PromoteToPartnerRequest {
        name: "accounts/acme".into(),
        etag: String::new(),
    };
    registry
        .promote_to_partner(authorized(promote, &operator))
        .await
        .expect("promote acme");
    let add = |parent: &str, user: String, role: Role| AddMemberRequest {
        parent: parent.into(),
        principal: Some(add_member_request::Principal::User(user)),
        role: role as i32,
        ..Default::default()
    };
    membership
        .add_member(authorized(
            add("accounts/acme", "users/alice".into(), Role::Owner),
            &operator,
        ))
        .await
        .expect("alice owns acme");
    let news = CreateManagedCustomerRequest {
        parent: "accounts/acme".into(),
        customer_id: "news".into(),
        display_name: "News".into(),
        request_id: String::new(),
    };
    registry
        .create_managed_customer(authorized(news, &alice))
        .await
        .expect("create news");
    for reader in 0..READERS {
        let request = add(
            "accounts/news",
            format!("users/reader{reader}"),
            Role::Employee,
        );
        membership
            .add_member(authorized(request, &operator))
            .await
            .expect("a reader of news");
    }
}

/// Asserts what the callers saw around the kills (see the module documentation).
fn assert_failures(calls: &[&Call], killed_at: Instant, killed_done: Instant) {
    let failures: Vec<&&Call> = calls.iter().filter(|call| call.error.is_some()).collect();
    let describe = |call: &Call| {
        let status = call.error.as_ref().expect("failed");
        format!(
            "{} on {}#{:?} started {:+} ms, ended {:+} ms from the kill: {:?} {:?} (transport: {})",
            call.op,
            SERVICES[call.service].0,
            call.replica.map(|index| index + 1),
            signed_millis(call.start, killed_at),
            signed_millis(call.end, killed_at),
            status.code(),
            status.message(),
            transport_failure(status)
        )
    };
    for call in &failures {
        eprintln!("failed: {}", describe(call));
    }
    for call in &failures {
        let status = call.error.as_ref().expect("failed");
        assert!(
            call.end >= killed_at,
            "a call failed before any replica was killed: {}",
            describe(call)
        );
        let allowed = status.code() == Code::Unavailable || transport_failure(status);
        assert!(
            allowed,
            "a call failed with a code other than UNAVAILABLE or a transport-level \
             CANCELLED/UNKNOWN: {}",
            describe(call)
        );
        assert!(
            call.start < killed_done + SETTLE,
            "a call started {SETTLE:?} after the kills failed: {}",
            describe(call)
        );
    }
    assert!(
        failures.len() <= 2 * TASKS,
        "{} calls failed; at most {} (2 per load task) were in flight at the kill",
        failures.len(),
        2 * TASKS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_share_the_load_and_survive_the_death_of_one() {
    let (Some(amqp), Some(postgres)) = (
        backend_url("TENANTRY_TEST_AMQP_URL"),
        backend_url("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    // Declared before the processes, so dropped (databases, queues, files) after them.
    let mut resources = Vec::new();
    for service in ["reg", "mem", "inv", "not"] {
        resources
            .push(TestResources::create(&format!("replicas-{service}"), &amqp, &postgres).await);
    }
    let (dir, prefix) = (&resources[0].dir, &resources[0].prefix);
    let database_urls: Vec<String> = resources
        .iter()
        .map(|resources| with_database(&postgres, &resources.database))
        .collect();
    // One mail directory per invitation replica: an e-mail sent twice shows who sent it.
    let mail_dirs = [dir.join("mail-1"), dir.join("mail-2")];

    // The eight processes: peers must know both replicas' addresses, so the ports are chosen
    // first. `serve` migrates; the two replicas of a service race for the migration lock.
    let ports = replicas_cluster::free_ports(16);
    let peer_url = |service: usize| {
        format!(
            "http://127.0.0.1:{},http://127.0.0.1:{}",
            ports[4 * service],
            ports[4 * service + 2]
        )
    };
    let (registry_url, membership_url) = (peer_url(REGISTRY), peer_url(MEMBERSHIP));
    let mut replicas = start_cluster(dir, &ports, |n, admin_port| {
        let service = n / 2;
        vec![
            ("TENANTRY_JWT_SECRET", JWT_SECRET.to_string()),
            ("TENANTRY_INTERNAL_SECRET", INTERNAL_SECRET.to_string()),
            ("TENANTRY_AMQP_URL", amqp.clone()),
            ("TENANTRY_AMQP_PREFIX", prefix.clone()),
            ("TENANTRY_REGISTRY_URL", registry_url.clone()),
            ("TENANTRY_MEMBERSHIP_URL", membership_url.clone()),
            ("TENANTRY_DATABASE_URL", database_urls[service].clone()),
            // 8 processes × 6 stay well below a default server's 100 connections.
            ("TENANTRY_DATABASE_POOL_SIZE", "6".to_string()),
            ("TENANTRY_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
            ("TENANTRY_MAIL_DIR", mail_dirs[n % 2].display().to_string()),
            ("TENANTRY_LOG", "warn".to_string()),
        ]
    })
    .await;
    let channel_to = |service: usize, index: usize| replicas[service * 2 + index].channel();
    set_up(
        channel_to(REGISTRY, 0).await,
        channel_to(MEMBERSHIP, 1).await,
    )
    .await;

    let urls = |service: usize| [0, 1].map(|index| replicas[service * 2 + index].url());
    let load = Arc::new(Load {
        pools: [REGISTRY, MEMBERSHIP, INVITATION, NOTIFICATION]
            .map(|service| Pool::new(urls(service))),
        alice: token("alice", false),
        reader: token("reader0", false),
        tag: uuid::Uuid::new_v4().simple().to_string()[..6].to_string(),
        stop: AtomicBool::new(false),
    });
    let before = scrape(&replicas).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| tokio::spawn(load_task(load.clone(), task)))
        .collect();
    tokio::time::sleep(BEFORE_KILL).await;
    let load_start = Instant::now() - BEFORE_KILL;
    let mut at_kill = scrape(&replicas).await;
    while calls_per_service(&before, &at_kill)
        .iter()
        .any(|calls| *calls < 1.5 * MIN_CALLS)
        && load_start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        at_kill = scrape(&replicas).await;
    }
    let before_kill = load_start.elapsed();

    // SIGKILL one replica of each service, all four at once.
    let victims: Vec<usize> = (0..4)
        .map(|service| service * 2 + usize::from(rand::random::<bool>()))
        .collect();
    let killed: Vec<String> = victims.iter().map(|&n| replicas[n].label()).collect();
    let processes: Vec<_> = victims
        .iter()
        .map(|&n| replicas[n].process.take().expect("running"))
        .collect();
    let killed_at = Instant::now();
    futures::future::join_all(processes.into_iter().map(|process| process.kill())).await;
    let killed_done = Instant::now();
    tokio::time::sleep(AFTER_KILL).await;
    load.stop.store(true, Ordering::Release);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("load task"));
    }
    eprintln!(
        "killed {killed:?} {before_kill:.1?} into the load; the four were gone after {} ms",
        (killed_done - killed_at).as_millis()
    );
    assert_balanced(&replicas, &before, &at_kill);

    let calls: Vec<&Call> = results.iter().flat_map(|result| &result.calls).collect();
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for call in &calls {
        let entry = per_op.entry(call.op).or_default();
        entry.0 += 1;
        entry.1 += usize::from(call.error.is_some());
    }
    let failed = calls.iter().filter(|call| call.error.is_some()).count();
    eprintln!(
        "{} calls, {failed} failed (limit {}); per method (calls, failed): {per_op:?}",
        calls.len(),
        2 * TASKS
    );
    for line in error_lines(dir) {
        eprintln!("log: {line}");
    }
    assert_failures(&calls, killed_at, killed_done);

    // Reading back through the survivors.
    let mut written = Written::default();
    for result in results {
        written.customers.extend(result.customers);
        written.members.extend(result.members);
        written.invitations.extend(result.invitations);
        written.messages.extend(result.messages);
    }
    let survivors = [REGISTRY, MEMBERSHIP, INVITATION, NOTIFICATION].map(|service| {
        replicas[service * 2..service * 2 + 2]
            .iter()
            .find(|replica| replica.process.is_some())
            .expect("a survivor")
    });
    let (alice, operator) = (token("alice", false), token("ops", true));
    verify(
        survivors,
        &written,
        &database_urls,
        (&mail_dirs, victims[INVITATION] % 2),
        (&alice, &operator),
        READERS,
    )
    .await;
    drop(replicas);
}
