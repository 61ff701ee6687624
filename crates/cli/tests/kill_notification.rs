//! `kill -9` of the notification process in the middle of a 20,000-delivery fan-out: a new
//! process on the same database and queues finishes it with exactly 20,000 deliveries, one per
//! member, counters to match, and the message DELIVERED.
//!
//! Real processes where it matters: `tenantry serve notification` on its own PostgreSQL database
//! is the process killed (SIGKILL: no shutdown hook, no release of its job, a page possibly
//! half-written in an open transaction). Customer registry and membership run in this test's
//! process as one node (SQLite files, like `tenantry up`), on the same RabbitMQ. The 20,000
//! members are loaded straight into membership's database, as `AddMember` would write them.
//!
//! Needs TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL; under CI=true a missing one is a
//! failure.

mod support;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use support::{ServeProcess, TestResources, authorized, backend_url, free_port, with_database};
use tenantry_cli::{EventsSpec, Node, NodeSpec, PeerUrls, ServiceKind};
use tenantry_events::{AmqpConfig, RetryPolicy};
use tenantry_platform::config::AuthConfig;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{AddMemberRequest, Role, add_member_request};
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{
    GetMessageRequest, ListPendingMessagesRequest, Message, MessageState, ReadPolicy,
    SendMessageRequest,
};
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, PromoteToPartnerRequest,
};

const JWT_SECRET: &str = "kill-notification-test-secret";
const INTERNAL_SECRET: &str = "kill-notification-internal";
const RECIPIENTS: usize = 20_000;
/// Deliveries per fan-out page (TENANTRY_FANOUT_BATCH): 80 pages, so the kill lands between
/// pages or inside one.
const FANOUT_BATCH: usize = 250;
const NOTIFICATION: &str = tenantry_notification::SERVICE_NAME;

fn token(sub: &str, operator: bool) -> String {
    support::user_token(JWT_SECRET, sub, operator)
}

async fn count(database: &DatabaseConnection, sql: &str) -> usize {
    let row = database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .expect("count")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a number") as usize
}

/// Loads `count` EMPLOYEE members `fan-{n}` of `account_id` into membership's database.
async fn load_members(database_url: &str, account_id: &str, count: usize) {
    let database = sea_orm::Database::connect(database_url)
        .await
        .expect("membership's database");
    let now = "2026-01-01 00:00:00+00:00";
    for start in (0..count).step_by(1000) {
        let rows: Vec<String> = (start..(start + 1000).min(count))
            .map(|n| {
                format!(
                    "('{account_id}', 'fan-{n}', 'EMPLOYEE', 'DIRECT', 'users/fixture', '{now}', '{now}', 1)"
                )
            })
            .collect();
        database
            .execute_unprepared(&format!(
                "INSERT INTO members (account_id, user_id, role, source, added_by, create_time, \
                 update_time, version) VALUES {}",
                rows.join(", ")
            ))
            .await
            .expect("load members");
    }
    let _ = database.close().await;
}

async fn get_message(process: &ServeProcess, token: &str, name: &str) -> Message {
    NotificationServiceClient::new(process.channel().await)
        .get_message(authorized(
            GetMessageRequest {
                name: name.to_string(),
            },
            token,
        ))
        .await
        .expect("get message")
        .into_inner()
        .message
        .expect("message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_fan_out_loses_and_duplicates_nothing() {
    let (Some(amqp), Some(postgres)) = (
        backend_url("TENANTRY_TEST_AMQP_URL"),
        backend_url("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    // Declared before the processes, so dropped after them: also on a failed assertion.
    let resources = TestResources::create("kill-notification", &amqp, &postgres).await;
    let (dir, prefix) = (&resources.dir, &resources.prefix);
    let notification_database_url = with_database(&postgres, &resources.database);
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());

    // Customer registry and membership: one node in this process.
    let membership_database_url = sqlite("membership.db");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let peers = Node::start(
        NodeSpec {
            services: vec![
                (ServiceKind::CustomerRegistry, sqlite("registry.db")),
                (ServiceKind::Membership, membership_database_url.clone()),
            ],
            auth: AuthConfig::with_secrets(JWT_SECRET, INTERNAL_SECRET),
            peers: PeerUrls::default(),
            max_request_bytes: 256 * 1024,
            shutdown_grace: Duration::from_secs(5),
            registry: tenantry_registry::Config::default(),
            membership: tenantry_membership::Config::default(),
            invitation: tenantry_invitation::Config::default(),
            mail: tenantry_mail::MailConfig::default(),
            notification: tenantry_notification::Config::default(),
            audit: tenantry_audit::Config::default(),
            events: EventsSpec::new(
                Some(AmqpConfig {
                    url: amqp.clone(),
                    exchange: "tenantry.events".into(),
                    queue_prefix: prefix.clone(),
                    prefetch: 16,
                    retry: RetryPolicy::default(),
                    ..AmqpConfig::default()
                }),
                RetryPolicy::default(),
            ),
            mail_dir: dir.join("mail"),
            admin_listen: None,
        },
        listener,
    )
    .await
    .expect("start registry and membership");
    assert!(peers.wait_ready(Duration::from_secs(60)).await);
    let peers_url = format!("http://{}", peers.local_addr());
    let peers_channel = tonic::transport::Endpoint::from_shared(peers_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");

    // The notification process, started twice on the same database and queues.
    let settings = vec![
        ("TENANTRY_JWT_SECRET", JWT_SECRET.to_string()),
        ("TENANTRY_INTERNAL_SECRET", INTERNAL_SECRET.to_string()),
        ("TENANTRY_AMQP_URL", amqp.clone()),
        ("TENANTRY_AMQP_PREFIX", prefix.clone()),
        ("TENANTRY_REGISTRY_URL", peers_url.clone()),
        ("TENANTRY_MEMBERSHIP_URL", peers_url.clone()),
        ("TENANTRY_DATABASE_URL", notification_database_url.clone()),
        ("TENANTRY_FANOUT_BATCH", FANOUT_BATCH.to_string()),
    ];
    let start_notification = |log_name: &'static str| {
        ServeProcess::start(
            "notification",
            NOTIFICATION,
            free_port(),
            dir,
            log_name,
            &settings,
        )
    };
    let first = start_notification("notification-1").await;

    // Acme (a partner, Alice its OWNER) manages BigCorp, which has 20,000 members.
    let (operator, alice) = (token("ops", true), token("alice", false));
    let mut registry = CustomerRegistryServiceClient::new(peers_channel.clone());
    registry
        .create_account(authorized(
            CreateAccountRequest {
                account_id: "acme".into(),
                display_name: "Acme".into(),
                request_id: String::new(),
            },
            &operator,
        ))
        .await
        .expect("create acme");
    registry
        .promote_to_partner(authorized(
            PromoteToPartnerRequest {
                name: "accounts/acme".into(),
                etag: String::new(),
            },
            &operator,
        ))
        .await
        .expect("promote acme");
    MembershipServiceClient::new(peers_channel.clone())
        .add_member(authorized(
            AddMemberRequest {
                parent: "accounts/acme".into(),
                principal: Some(add_member_request::Principal::User("users/alice".into())),
                role: Role::Owner as i32,
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect("alice owns acme");
    registry
        .create_managed_customer(authorized(
            CreateManagedCustomerRequest {
                parent: "accounts/acme".into(),
                customer_id: "bigcorp".into(),
                display_name: "BigCorp".into(),
                request_id: String::new(),
            },
            &alice,
        ))
        .await
        .expect("create bigcorp");
    load_members(&membership_database_url, "bigcorp", RECIPIENTS).await;

    let notification_db = sea_orm::Database::connect(notification_database_url.as_str())
        .await
        .expect("notification database");
    let sent = Instant::now();
    let message = NotificationServiceClient::new(first.channel().await)
        .send_message(authorized(
            SendMessageRequest {
                parent: "accounts/acme".into(),
                title: "Everyone".into(),
                body: "Maintenance on Sunday.".into(),
                read_policy: ReadPolicy::AllMustRead as i32,
                recipients: vec!["accounts/bigcorp".into()],
                ..Default::default()
            },
            &alice,
        ))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message");

    // SIGKILL once between 20% and 80% of the deliveries are written.
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let written = count(&notification_db, "SELECT COUNT(*) FROM deliveries").await;
        if written >= RECIPIENTS / 5 {
            assert!(
                written <= RECIPIENTS * 4 / 5,
                "the fan-out went past 80% between two looks ({written}); nothing to interrupt"
            );
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "the fan-out did not reach 20% within 120 s ({written})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed_after = sent.elapsed();
    first.kill().await;
    let after_kill = count(&notification_db, "SELECT COUNT(*) FROM deliveries").await;
    assert!(after_kill < RECIPIENTS, "the fan-out was interrupted");

    // A new process finishes the job from its cursor.
    let restarted = Instant::now();
    let second = start_notification("notification-2").await;
    let deadline = Instant::now() + Duration::from_secs(150);
    let delivered = loop {
        let view = get_message(&second, &alice, &message.name).await;
        if view.state == MessageState::Delivered as i32 {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the fan-out did not finish after the restart: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let finished_after = restarted.elapsed();

    let deliveries = count(&notification_db, "SELECT COUNT(*) FROM deliveries").await;
    let users = count(
        &notification_db,
        "SELECT COUNT(DISTINCT user_id) FROM deliveries",
    )
    .await;
    let counted = count(
        &notification_db,
        "SELECT COALESCE(SUM(recipient_count), 0)::BIGINT FROM recipient_accounts",
    )
    .await;
    let open_jobs = count(
        &notification_db,
        "SELECT COUNT(*) FROM fanout_jobs WHERE NOT done",
    )
    .await;
    assert_eq!(deliveries, RECIPIENTS, "exactly one delivery per member");
    assert_eq!(users, RECIPIENTS, "20,000 distinct users");
    assert_eq!(counted, RECIPIENTS, "the recipient counter matches");
    assert_eq!(open_jobs, 0);
    let stats: Vec<i32> = delivered
        .stats
        .iter()
        .map(|stats| stats.recipient_count)
        .collect();
    assert_eq!(
        stats,
        vec![RECIPIENTS as i32],
        "GetMessage's recipient count"
    );
    // One member's login inbox shows the message once.
    let inbox = NotificationServiceClient::new(second.channel().await)
        .list_pending_messages(authorized(
            ListPendingMessagesRequest {
                page_size: 10,
                page_token: String::new(),
            },
            &token("fan-12345", false),
        ))
        .await
        .expect("inbox")
        .into_inner()
        .items;
    assert_eq!(
        inbox
            .iter()
            .map(|item| item.message.as_str())
            .collect::<Vec<_>>(),
        vec![message.name.as_str()]
    );

    eprintln!(
        "kill -9 of notification {killed_after:.1?} into the fan-out with {at_kill} of \
         {RECIPIENTS} deliveries written ({after_kill} once it was gone); the new process \
         finished {finished_after:.1?} after its start: {deliveries} deliveries, {users} \
         distinct users, recipient count {counted}, DELIVERED"
    );
    let _ = notification_db.close().await;
    let (exited_zero, _) = second.terminate(Duration::from_secs(20)).await;
    assert!(
        exited_zero,
        "the second notification process exited non-zero"
    );
    peers.stop().await.expect("stop registry and membership");
}
