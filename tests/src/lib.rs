//! Shared steps of the end-to-end scenarios: the seed flow's set-up and status assertions.

use tenantry_proto::membership::v1::{AddMemberRequest, Role, add_member_request};
use tenantry_proto::registry::v1::{
    Account, CreateAccountRequest, CreateManagedCustomerRequest, PromoteToPartnerRequest,
};
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Code;
use tonic_types::StatusExt;

/// A partner account with one OWNER, created the way an operator does it.
#[derive(Debug)]
pub struct Partner {
    /// The partner account.
    pub account: Account,
    /// Its first OWNER.
    pub owner: TestUser,
}

/// Operator: create `account_id`, promote it to partner, add `owner` as its first OWNER.
pub async fn partner_with_owner(
    cluster: &TestCluster,
    operator: &TestUser,
    account_id: &str,
    owner_name: &str,
) -> Partner {
    let mut registry = cluster.registry_as(operator);
    let account = registry
        .create_account(CreateAccountRequest {
            account_id: account_id.to_string(),
            display_name: format!("{account_id} partner"),
            request_id: String::new(),
        })
        .await
        .expect("operator creates an account")
        .into_inner()
        .account
        .expect("account");
    let account = registry
        .promote_to_partner(PromoteToPartnerRequest {
            name: account.name.clone(),
            etag: account.etag.clone(),
        })
        .await
        .expect("operator promotes it to partner")
        .into_inner()
        .account
        .expect("account");
    assert!(account.partner);
    let owner = TestUser::new(owner_name);
    add_member(cluster, operator, &account.name, &owner, Role::Owner)
        .await
        .expect("operator adds the first owner");
    Partner { account, owner }
}

/// `actor` adds `user` to `account` (by user id) with `role`.
pub async fn add_member(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    user: &TestUser,
    role: Role,
) -> Result<tenantry_proto::membership::v1::Member, tonic::Status> {
    cluster
        .membership_as(actor)
        .add_member(AddMemberRequest {
            parent: account.to_string(),
            principal: Some(add_member_request::Principal::User(user.resource_name())),
            role: role as i32,
            source: 0,
            request_id: String::new(),
            invitee_profile: None,
        })
        .await
        .map(|response| response.into_inner().member.expect("member"))
}

/// `actor` creates a customer of `partner`.
pub async fn create_customer(
    cluster: &TestCluster,
    actor: &TestUser,
    partner: &str,
    customer_id: &str,
) -> Result<Account, tonic::Status> {
    cluster
        .registry_as(actor)
        .create_managed_customer(CreateManagedCustomerRequest {
            parent: partner.to_string(),
            customer_id: customer_id.to_string(),
            display_name: format!("Customer {customer_id}"),
            request_id: String::new(),
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
}

/// Asserts the call failed with `code`; returns the status for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
) -> tonic::Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            assert_eq!(
                status
                    .get_error_details()
                    .error_info()
                    .map(|info| info.domain.as_str()),
                Some("tenantry"),
                "every error carries ErrorInfo with domain tenantry: {status:?}"
            );
            status
        }
    }
}

/// Asserts INVALID_ARGUMENT with a BadRequest violation naming `field`.
#[track_caller]
pub fn expect_invalid_field<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = expect_code(result, Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        fields.contains(&field),
        "expected a violation naming {field}, got {fields:?} ({status:?})"
    );
}

/// A fresh account id (unique across test runs sharing a database server).
pub fn fresh_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The seed flow up to "switch to the customer": a partner with an OWNER who created
/// `customer_id` and assigned themself to it (ADMIN).
pub async fn partner_admin_in_customer(
    cluster: &TestCluster,
    operator: &TestUser,
    partner_id: &str,
    customer_id: &str,
) -> (Partner, Account) {
    let partner = partner_with_owner(cluster, operator, partner_id, "alice").await;
    let customer = create_customer(cluster, &partner.owner, &partner.account.name, customer_id)
        .await
        .expect("create customer");
    cluster
        .membership_as(&partner.owner)
        .add_myself(tenantry_proto::membership::v1::AddMyselfRequest {
            account: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("add myself");
    (partner, customer)
}

/// `actor` invites `email` to `account` with `role`.
pub async fn invite(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    email: &str,
    role: Role,
) -> Result<tenantry_proto::invitation::v1::Invitation, tonic::Status> {
    cluster
        .invitation_as(actor)
        .create_invitation(tenantry_proto::invitation::v1::CreateInvitationRequest {
            parent: account.to_string(),
            email: email.to_string(),
            given_name: "Ivy".to_string(),
            family_name: "Invitee".to_string(),
            role: role as i32,
            request_id: String::new(),
            expire_time: None,
        })
        .await
        .map(|response| response.into_inner().invitation.expect("invitation"))
}

/// Loads `count` EMPLOYEE members `{prefix}-{n}` into `account_id` straight into membership's
/// database (a fixture: adding tens of thousands of members one RPC at a time would only
/// measure the test's patience). The rows are the same as `AddMember` writes.
pub async fn load_members(cluster: &TestCluster, account_id: &str, prefix: &str, count: usize) {
    use sea_orm::ConnectionTrait;
    let url = cluster.database_url(tenantry_testkit::ServiceKind::Membership);
    let database = sea_orm::Database::connect(url)
        .await
        .expect("connect to membership's database");
    let now = "2026-01-01 00:00:00+00:00";
    for start in (0..count).step_by(1000) {
        let rows: Vec<String> = (start..(start + 1000).min(count))
            .map(|n| {
                format!(
                    "('{account_id}', '{prefix}-{n}', 'EMPLOYEE', 'DIRECT', 'users/fixture', '{now}', '{now}', 1)"
                )
            })
            .collect();
        database
            .execute_unprepared(&format!(
                "INSERT INTO members (account_id, user_id, role, source, added_by, create_time, update_time, version) VALUES {}",
                rows.join(", ")
            ))
            .await
            .expect("load members");
    }
    let _ = database.close().await;
}

/// `actor` sends a message from `partner` to `recipients` (empty: all customers).
pub async fn send_message(
    cluster: &TestCluster,
    actor: &TestUser,
    partner: &str,
    recipients: &[&str],
    title: &str,
    policy: tenantry_proto::notification::v1::ReadPolicy,
) -> Result<tenantry_proto::notification::v1::Message, tonic::Status> {
    cluster
        .notification_as(actor)
        .send_message(tenantry_proto::notification::v1::SendMessageRequest {
            parent: partner.to_string(),
            title: title.to_string(),
            body: format!("{title}: please read this at login."),
            read_policy: policy as i32,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            all_customers: recipients.is_empty(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().message.expect("message"))
}

/// The names of the messages in `user`'s login inbox, newest first (all pages).
pub async fn inbox(
    cluster: &TestCluster,
    user: &TestUser,
) -> Vec<tenantry_proto::notification::v1::InboxItem> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page = cluster
            .notification_as(user)
            .list_pending_messages(
                tenantry_proto::notification::v1::ListPendingMessagesRequest {
                    page_size: 100,
                    page_token: token,
                },
            )
            .await
            .expect("list pending messages")
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        token = page.next_page_token;
    }
}

/// Waits until `user`'s inbox satisfies `condition` (fan-out and withdrawals are asynchronous).
pub async fn inbox_until(
    cluster: &TestCluster,
    user: &TestUser,
    what: &str,
    condition: impl Fn(&[tenantry_proto::notification::v1::InboxItem]) -> bool,
) -> Vec<tenantry_proto::notification::v1::InboxItem> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let items = inbox(cluster, user).await;
        if condition(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}'s inbox never got {what}: {:?}",
            user.sub,
            items.iter().map(|item| &item.title).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The variable that tells a child process of the test binary which test it runs alone.
const OWN_PROCESS_VAR: &str = "TENANTRY_E2E_OWN_PROCESS";

/// Runs one test alone in a child process of this test binary, for a test that needs state
/// only one test of a process may have — a process-wide tracing subscriber: the end-to-end
/// tests share one binary, and a global subscriber would see (and slow down, and be changed by)
/// every test running beside it.
///
/// `module` is the test's `module_path!()` and `test` its function's name. In the parent it
/// starts `<this binary> <module>::<test> --exact` and returns `false` once that child passed
/// (it panics when the child failed); in the child it returns `true`: run the test's body. The
/// child's output becomes the parent test's output (shown when it fails, or with
/// `--nocapture`), except the child's notices of suites that did not run
/// ([`tenantry_testkit::note_not_run`]): those are passed on once, as the parent's own.
pub fn in_own_process(module: &str, test: &str) -> bool {
    // libtest names tests by their path inside the crate, without the crate's name.
    let path = module.split_once("::").map_or("", |(_, path)| path);
    let name = if path.is_empty() {
        test.to_string()
    } else {
        format!("{path}::{test}")
    };
    if std::env::var(OWN_PROCESS_VAR).is_ok_and(|running| running == name) {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        // --nocapture: the child's test output reaches the parent, which captures it as its own.
        .args([name.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(OWN_PROCESS_VAR, &name)
        .output()
        .expect("start the test in a process of its own");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        match tenantry_testkit::Suite::ALL
            .into_iter()
            .find(|suite| suite.notice() == line)
        {
            Some(suite) => tenantry_testkit::note_not_run(suite),
            None => eprintln!("{line}"),
        }
    }
    eprint!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed in its own process ({}); its output is above",
        output.status
    );
    false
}

/// `(host, port)` of a `scheme://user:pass@host:port/…` URL.
pub fn host_and_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((host_port.to_string(), default_port)),
    }
}

/// The socket address of `url`'s server (for a TCP proxy in front of it).
pub fn server_addr(url: &str, default_port: u16) -> std::net::SocketAddr {
    let (host, port) = host_and_port(url, default_port).expect("a server address");
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    format!("{host}:{port}").parse().expect("server address")
}

/// `url` with its `host:port` replaced by `addr` (credentials, path and query kept).
pub fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let credentials = authority
        .rsplit_once('@')
        .map(|(credentials, _)| format!("{credentials}@"))
        .unwrap_or_default();
    format!("{scheme}://{credentials}{addr}{tail}")
}

/// Opens `WatchInbox` with `client` and reads its first event, which must be the snapshot:
/// the open stream (for the arrivals and removals after it) and that snapshot.
pub async fn watch_inbox(
    mut client: tenantry_testkit::NotificationClient,
) -> (
    tonic::Streaming<tenantry_proto::notification::v1::WatchInboxResponse>,
    tenantry_proto::notification::v1::InboxSnapshot,
) {
    use tenantry_proto::notification::v1::{WatchInboxRequest, watch_inbox_response};
    use tokio_stream::StreamExt;
    let mut watch = client
        .watch_inbox(WatchInboxRequest {})
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("a snapshot first")
        .expect("stream open")
        .expect("ok");
    match first.event {
        Some(watch_inbox_response::Event::Snapshot(snapshot)) => (watch, snapshot),
        other => panic!("the first event is not the snapshot: {other:?}"),
    }
}
