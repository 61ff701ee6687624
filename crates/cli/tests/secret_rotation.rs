//! Secrets from files, and the README's rotation of the internal secret with the cluster running.
//!
//! - Rotation: one `tenantry serve` per service (PostgreSQL, RabbitMQ; local views and token
//!   cache off, so every call asks its peer and every token is verified); registry and
//!   invitation read their internal secrets from `…_FILE`s. The README's three steps, one
//!   process restarted (SIGTERM) at a time; after each restart, calls needing service-to-service
//!   calls in every direction succeed and the callees' `/metrics` count those calls OK. A page
//!   token from before works until step 3, then INVALID_ARGUMENT naming `page_token`. A stray
//!   secret is refused (the control). No log holds a secret. Needs TENANTRY_TEST_POSTGRES_URL and
//!   TENANTRY_TEST_AMQP_URL (a failure under CI=true when missing).
//! - Secret files: bad ones make `serve` exit 2 naming the setting, never the value; the database
//!   URL read from `TENANTRY_DATABASE_URL_FILE` is logged with its password masked. No backend.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{
    ServeProcess, TestResources, authorized, backend_url, http_get, user_token, with_database,
};
use tenantry_proto::invitation::v1::CreateInvitationRequest;
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{
    AddMemberRequest, AddMyselfRequest, Role, add_member_request,
};
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{ReadPolicy, SendMessageRequest};
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, ListAccountsRequest,
    PromoteToPartnerRequest,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// (the `serve` argument, the gRPC service name), in this order.
const SERVICES: [(&str, &str); 4] = [
    ("customer-registry", tenantry_registry::SERVICE_NAME),
    ("membership", tenantry_membership::SERVICE_NAME),
    ("invitation", tenantry_invitation::SERVICE_NAME),
    ("notification", tenantry_notification::SERVICE_NAME),
];
const REGISTRY: usize = 0;
const MEMBERSHIP: usize = 1;
const INVITATION: usize = 2;
const NOTIFICATION: usize = 3;

/// A secret no log line could hold by chance.
fn random_secret(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// The internal secrets a process is started with: the current one, the previous one.
type Keys<'a> = (&'a str, Option<&'a str>);

/// One `tenantry serve` process per service, restarted in place (same ports) with other keys.
struct Cluster {
    dir: PathBuf,
    /// Service `n` listens on `ports[2 * n]`, its admin port is `ports[2 * n + 1]`.
    ports: [u16; 8],
    /// Each service's environment besides the internal secrets.
    settings: Vec<Vec<(&'static str, String)>>,
    processes: Vec<Option<ServeProcess>>,
    /// Processes started so far (names the logs and secret files of each start).
    starts: usize,
    origin: Instant,
}

impl Cluster {
    fn environment(&self, service: usize, keys: Keys) -> Vec<(&'static str, String)> {
        let by_file = service == REGISTRY || service == INVITATION;
        let mut environment = self.settings[service].clone();
        for (name, value) in [
            ("TENANTRY_INTERNAL_SECRET", Some(keys.0)),
            ("TENANTRY_INTERNAL_SECRET_PREVIOUS", keys.1),
        ] {
            let Some(value) = value else { continue };
            if !by_file {
                environment.push((name, value.to_string()));
                continue;
            }
            let file = self
                .dir
                .join("secrets")
                .join(format!("{}-{name}", self.starts));
            std::fs::write(&file, format!("{value}\n")).expect("secret file");
            let name = match name {
                "TENANTRY_INTERNAL_SECRET" => "TENANTRY_INTERNAL_SECRET_FILE",
                _ => "TENANTRY_INTERNAL_SECRET_PREVIOUS_FILE",
            };
            environment.push((name, file.display().to_string()));
        }
        environment
    }

    async fn start(&mut self, service: usize, keys: Keys<'_>) {
        let environment = self.environment(service, keys);
        self.starts += 1;
        let (name, grpc_name) = SERVICES[service];
        let (port, log_name) = (
            self.ports[2 * service],
            format!("{:02}-{name}", self.starts),
        );
        let process =
            ServeProcess::start(name, grpc_name, port, &self.dir, &log_name, &environment).await;
        self.processes[service] = Some(process);
    }

    /// SIGTERM (a clean exit), then the same service with `keys`; waits until all are ready.
    async fn restart(&mut self, service: usize, keys: Keys<'_>) -> Duration {
        let began = Instant::now();
        self.stop(service).await;
        self.start(service, keys).await;
        self.wait_ready().await;
        began.elapsed()
    }

    async fn stop(&mut self, service: usize) {
        let process = self.processes[service].take().expect("running");
        let (clean, _) = process.terminate(Duration::from_secs(60)).await;
        assert!(clean, "{} did not exit 0 on SIGTERM", SERVICES[service].0);
    }

    /// Every process answers 200 on `/readyz`.
    async fn wait_ready(&self) {
        for (service, (name, _)) in SERVICES.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let answer = http_get(self.ports[2 * service + 1], "/readyz").await;
                if matches!(answer, Some((200, _))) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}: /readyz not 200 within 60 s: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// A new connection to `service` (none is kept across restarts).
    fn channel(&self, service: usize) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.ports[2 * service]))
            .expect("url")
            .connect_lazy()
    }

    /// Every process's `/metrics`, in service order.
    async fn scrape(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (service, (name, _)) in SERVICES.iter().enumerate() {
            match http_get(self.ports[2 * service + 1], "/metrics").await {
                Some((200, body)) => all.push(body),
                other => panic!("{name}: GET /metrics answered {other:?}"),
            }
        }
        all
    }

    fn note(&self, line: &str) {
        eprintln!("[{:5.1}s] {line}", self.origin.elapsed().as_secs_f64());
    }
}

/// `grpc_server_handled_total` of `method` (every method if empty) answered with `code`.
fn handled(metrics: &str, method: &str, code: &str) -> f64 {
    let (method, code) = (
        format!("grpc_method=\"{method}\""),
        format!("grpc_code=\"{code}\""),
    );
    metrics
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{") && line.contains(&code))
        .filter(|line| method == "grpc_method=\"\"" || line.contains(&method))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The metrics now, after asserting that each callee answered its method OK since `before`.
async fn called(
    cluster: &Cluster,
    before: Vec<String>,
    callees: &[(usize, &str)],
    call: &str,
) -> Vec<String> {
    let after = cluster.scrape().await;
    for &(callee, method) in callees {
        let was = handled(&before[callee], method, "OK");
        let is = handled(&after[callee], method, "OK");
        let callee = SERVICES[callee].0;
        assert!(
            is > was,
            "{call} made no successful {method} on {callee} ({was} → {is})"
        );
    }
    after
}

/// A customer of Acme.
fn customer(customer_id: &str) -> CreateManagedCustomerRequest {
    CreateManagedCustomerRequest {
        parent: "accounts/acme".into(),
        customer_id: customer_id.into(),
        display_name: format!("Customer {customer_id}"),
        ..Default::default()
    }
}

/// A message from Acme to cust-1.
fn notice(title: &str) -> SendMessageRequest {
    SendMessageRequest {
        parent: "accounts/acme".into(),
        title: title.into(),
        body: "Maintenance on Sunday.".into(),
        read_policy: ReadPolicy::AllMustRead as i32,
        recipients: vec!["accounts/cust-1".into()],
        ..Default::default()
    }
}

/// Calls that each need service-to-service calls, every direction covered; each answer and
/// the callees' counts are checked. Then no process has refused a token or failed internally
/// since it started.
async fn hops(cluster: &Cluster, when: &str, round: usize, alice: &str, bob: &str) {
    let before = cluster.scrape().await;
    CustomerRegistryServiceClient::new(cluster.channel(REGISTRY))
        .create_managed_customer(authorized(customer(&format!("hop-{round}")), alice))
        .await
        .unwrap_or_else(|status| panic!("{when}: CreateManagedCustomer: {status:?}"));
    let call = format!("{when}: CreateManagedCustomer");
    let before = called(cluster, before, &[(MEMBERSHIP, "Authorize")], &call).await;
    // Bob belongs to no partner: membership checks its refusal against the registry's facts.
    let account = "accounts/cust-1".to_string();
    let refused = MembershipServiceClient::new(cluster.channel(MEMBERSHIP))
        .add_myself(authorized(
            AddMyselfRequest {
                account,
                ..Default::default()
            },
            bob,
        ))
        .await
        .expect_err("bob may not add himself");
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{when}: AddMyself: {refused:?}"
    );
    let call = format!("{when}: AddMyself");
    let before = called(cluster, before, &[(REGISTRY, "GetAccount")], &call).await;
    let invitation = CreateInvitationRequest {
        parent: "accounts/acme".into(),
        email: format!("hop{round}@example.com"),
        role: Role::Employee as i32,
        ..Default::default()
    };
    InvitationServiceClient::new(cluster.channel(INVITATION))
        .create_invitation(authorized(invitation, alice))
        .await
        .unwrap_or_else(|status| panic!("{when}: CreateInvitation: {status:?}"));
    let call = format!("{when}: CreateInvitation");
    let callees = [(MEMBERSHIP, "Authorize"), (REGISTRY, "GetAccount")];
    let before = called(cluster, before, &callees, &call).await;
    NotificationServiceClient::new(cluster.channel(NOTIFICATION))
        .send_message(authorized(notice(&format!("Notice {round}")), alice))
        .await
        .unwrap_or_else(|status| panic!("{when}: SendMessage: {status:?}"));
    let call = format!("{when}: SendMessage");
    let callees = [(MEMBERSHIP, "Authorize"), (REGISTRY, "BatchGetAccounts")];
    let after = called(cluster, before, &callees, &call).await;
    for (metrics, (name, _)) in after.iter().zip(SERVICES) {
        for code in ["Unauthenticated", "Internal"] {
            let count = handled(metrics, "", code);
            assert_eq!(
                count, 0.0,
                "{when}: {name} answered {code} since it started"
            );
        }
    }
}

/// One page of ListAccounts (size 1) after `page_token`: its account and the next token.
async fn list_page(
    cluster: &Cluster,
    operator: &str,
    page_token: &str,
) -> Result<(String, String), Status> {
    let request = ListAccountsRequest {
        page_size: 1,
        page_token: page_token.to_string(),
        ..Default::default()
    };
    let page = CustomerRegistryServiceClient::new(cluster.channel(REGISTRY))
        .list_accounts(authorized(request, operator))
        .await?
        .into_inner();
    Ok((page.accounts[0].name.clone(), page.next_page_token))
}

/// Acme (a partner, Alice its OWNER) manages cust-1..cust-3.
async fn set_up(cluster: &Cluster, operator: &str, alice: &str) {
    let mut registry = CustomerRegistryServiceClient::new(cluster.channel(REGISTRY));
    let create = CreateAccountRequest {
        account_id: "acme".into(),
        display_name: "Acme".into(),
        ..Default::default()
    };
    registry
        .create_account(authorized(create, operator))
        .await
        .expect("create acme");
    let name = "accounts/acme".to_string();
    let promote = PromoteToPartnerRequest {
        name,
        ..Default::default()
    };
    registry
        .promote_to_partner(authorized(promote, operator))
        .await
        .expect("promote acme");
    let owner = AddMemberRequest {
        parent: "accounts/acme".into(),
        principal: Some(add_member_request::Principal::User("users/alice".into())),
        role: Role::Owner as i32,
        ..Default::default()
    };
    MembershipServiceClient::new(cluster.channel(MEMBERSHIP))
        .add_member(authorized(owner, operator))
        .await
        .expect("alice owns acme");
    for n in 1..=3 {
        registry
            .create_managed_customer(authorized(customer(&format!("cust-{n}")), alice))
            .await
            .expect("alice creates a customer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_secret_is_rotated_with_the_cluster_running() {
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
        resources.push(TestResources::create(&format!("rot-{service}"), &amqp, &postgres).await);
    }
    let dir = resources[0].dir.clone();
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
    let [old, new, jwt] = ["old", "new", "jwt"].map(random_secret);
    // All bound at once, then released: the peers are told each other's addresses up front.
    let listeners = [(); 8].map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let ports = listeners.map(|listener| listener.local_addr().expect("port").port());
    let url = |service: usize| format!("http://127.0.0.1:{}", ports[2 * service]);
    let settings = (0..4)
        .map(|service| {
            let database = with_database(&postgres, &resources[service].database);
            vec![
                ("TENANTRY_JWT_SECRET", jwt.clone()),
                ("TENANTRY_AMQP_URL", amqp.clone()),
                ("TENANTRY_AMQP_PREFIX", resources[0].prefix.clone()),
                ("TENANTRY_REGISTRY_URL", url(REGISTRY)),
                ("TENANTRY_MEMBERSHIP_URL", url(MEMBERSHIP)),
                ("TENANTRY_DATABASE_URL", database),
                ("TENANTRY_DATABASE_POOL_SIZE", "4".to_string()),
                (
                    "TENANTRY_ADMIN_LISTEN",
                    format!("127.0.0.1:{}", ports[2 * service + 1]),
                ),
                ("TENANTRY_MAIL_DIR", dir.join("mail").display().to_string()),
                ("TENANTRY_VIEW_CAPACITY", "0".to_string()),
                ("TENANTRY_TOKEN_CACHE_SIZE", "0".to_string()),
                (
                    "TENANTRY_LOG",
                    "debug,lapin=info,h2=info,hyper=info,tower=info".to_string(),
                ),
            ]
        })
        .collect();
    let mut cluster = Cluster {
        dir: dir.clone(),
        ports,
        settings,
        processes: (0..4).map(|_| None).collect(),
        starts: 0,
        origin: Instant::now(),
    };
    for service in 0..4 {
        cluster.start(service, (&old, None)).await;
    }
    cluster.wait_ready().await;
    cluster.note("4 processes up signing with `old` (registry, invitation: from *_FILE)");
    let operator = user_token(&jwt, "ops", true);
    let [alice, bob] = ["alice", "bob"].map(|sub| user_token(&jwt, sub, false));
    set_up(&cluster, &operator, &alice).await;
    let (first, old_token) = list_page(&cluster, &operator, "").await.expect("page 1");
    assert!(!old_token.is_empty(), "ListAccounts has more than one page");
    cluster.note(&format!(
        "acme, 3 customers; ListAccounts page 1 = [{first}], token kept"
    ));
    let mut round = 1;
    hops(&cluster, "before the rotation", round, &alice, &bob).await;
    cluster.note(
        "hops OK: registry→membership, membership→registry, invitation→both, notification→both",
    );

    let steps = [
        ("step 1 (sign old, accept new)", (&*old, Some(&*new))),
        ("step 2 (sign new, accept old)", (&*new, Some(&*old))),
        ("step 3 (sign new, only new)", (&*new, None)),
    ];
    let mut new_token = String::new();
    for (step, keys) in steps {
        for (service, (name, _)) in SERVICES.iter().enumerate() {
            let took = cluster.restart(service, keys).await;
            round += 1;
            let when = format!("{step}, {name} restarted");
            hops(&cluster, &when, round, &alice, &bob).await;
            let took = took.as_secs_f64();
            cluster.note(&format!("{step}: {name} restarted in {took:.1} s; hops OK"));
        }
        let continued = list_page(&cluster, &operator, &old_token).await;
        if step.starts_with("step 3") {
            let status = continued.expect_err("the old page token after step 3");
            let fields = status.get_error_details().bad_request().map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| v.field.clone())
                    .collect::<Vec<_>>()
            });
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert_eq!(fields, Some(vec!["page_token".to_string()]), "{status:?}");
            cluster.note(&format!(
                "{step}: the old page token: INVALID_ARGUMENT naming page_token"
            ));
            let (account, _) = list_page(&cluster, &operator, &new_token)
                .await
                .expect("a page token issued after step 2");
            cluster.note(&format!(
                "{step}: a page token of step 2 continues at {account}"
            ));
            continue;
        }
        let (account, _) = continued
            .unwrap_or_else(|status| panic!("{step}: the page token from before: {status:?}"));
        // Nothing was created since: page 2 of a new listing holds the same account.
        let (_, token) = list_page(&cluster, &operator, "").await.expect("page 1");
        let (expected, _) = list_page(&cluster, &operator, &token)
            .await
            .expect("page 2");
        assert_eq!(
            account, expected,
            "{step}: the old token continued elsewhere"
        );
        assert_ne!(account, first);
        new_token = token;
        cluster.note(&format!(
            "{step}: the page token from before continues at {account}"
        ));
    }

    // The control: notification signing with a secret nobody else has is refused.
    let stray = random_secret("stray");
    cluster.restart(NOTIFICATION, (&stray, None)).await;
    let answer = NotificationServiceClient::new(cluster.channel(NOTIFICATION))
        .send_message(authorized(notice("Stray"), &alice))
        .await;
    let refused = answer.expect_err("SendMessage with a stray internal secret");
    let metrics = cluster.scrape().await;
    let unauthenticated = handled(&metrics[MEMBERSHIP], "", "Unauthenticated")
        + handled(&metrics[REGISTRY], "", "Unauthenticated");
    assert!(
        unauthenticated > 0.0,
        "the stray service token was accepted"
    );
    let code = refused.code();
    cluster.note(&format!(
        "control: a stray secret on notification: SendMessage {code:?}, \
         {unauthenticated} service token(s) refused"
    ));

    let logs = assert_no_secret_in_logs(&dir, &[&old, &new, &jwt, &stray]);
    assert_eq!(logs, 17, "4 starts, 3 × 4 restarts and the control");
    cluster.note(&format!(
        "{logs} process logs (TENANTRY_LOG=debug) hold none of the secrets"
    ));
    for service in 0..4 {
        cluster.stop(service).await;
    }
    drop(resources);
}

/// Asserts that no `{dir}/*.log` holds any of `secrets` (the secret files are not logs);
/// returns how many logs there are.
fn assert_no_secret_in_logs(dir: &std::path::Path, secrets: &[&str]) -> usize {
    let mut logs = 0;
    for entry in std::fs::read_dir(dir).expect("test dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "log") {
            logs += 1;
            let text = std::fs::read_to_string(&path).expect("log");
            for secret in secrets {
                assert!(!text.contains(secret), "{} holds {secret}", path.display());
            }
        }
    }
    logs
}

/// `tenantry serve membership` with exactly `environment`.
fn serve_membership(environment: &[(&str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command
        .env_clear()
        .args(["serve", "membership"])
        .envs(
            environment
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        )
        .kill_on_drop(true);
    command
}

/// `tenantry serve membership` with exactly `environment`, which must refuse to start at once
/// with status 2, naming each of `names` on stderr and holding none of `values`. Its stderr.
async fn refused(
    case: &str,
    environment: &[(&str, String)],
    names: &[&str],
    values: &[&str],
) -> String {
    let output = serve_membership(environment).output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("a refused start exits at once")
        .expect("run tenantry");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    eprintln!("({case}) {}: {}", output.status, stderr.trim());
    assert_eq!(output.status.code(), Some(2), "({case}) {stderr}");
    for name in names {
        assert!(
            stderr.contains(&format!("error: {name}")),
            "({case}) names {name}: {stderr}"
        );
    }
    for value in values {
        assert!(!stderr.contains(value), "({case}) leaks a value: {stderr}");
    }
    stderr
}

#[tokio::test]
async fn secret_files_are_read_and_bad_ones_refused_without_leaking() {
    let dir = std::env::temp_dir().join(format!("tenantry-secret-files-{}", random_secret("t")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: &str, content: &str| {
        std::fs::write(dir.join(name), content).expect("write");
        dir.join(name).display().to_string()
    };
    let (direct, in_file) = (random_secret("direct"), random_secret("in-file"));

    // (a) Both the variable and its file.
    let environment = [
        ("TENANTRY_INTERNAL_SECRET", direct.clone()),
        (
            "TENANTRY_INTERNAL_SECRET_FILE",
            file("internal", &format!("{in_file}\n")),
        ),
    ];
    let names = ["TENANTRY_INTERNAL_SECRET and TENANTRY_INTERNAL_SECRET_FILE are both set"];
    refused("a", &environment, &names, &[&direct, &in_file]).await;

    // (b) A file that does not exist.
    let missing = dir.join("missing").display().to_string();
    let environment = [("TENANTRY_JWT_SECRET_FILE", missing)];
    let stderr = refused("b", &environment, &["TENANTRY_JWT_SECRET_FILE"], &[]).await;
    assert!(stderr.contains("cannot read"), "{stderr}");

    // (c) An empty file, and one holding only a line break: both reported at once.
    let environment = [
        (
            "TENANTRY_INTERNAL_SECRET_PREVIOUS_FILE",
            file("previous", "\n"),
        ),
        ("TENANTRY_AMQP_URL_FILE", file("amqp-empty", "")),
    ];
    let names = [
        "TENANTRY_INTERNAL_SECRET_PREVIOUS_FILE",
        "TENANTRY_AMQP_URL_FILE",
    ];
    let stderr = refused("c", &environment, &names, &[]).await;
    assert_eq!(stderr.matches("is empty").count(), 2, "{stderr}");

    // (d) The database URL from a file, its password in the query string. Nothing listens on
    // port 1, so the process retries the database and says so.
    let (password, amqp_password) = (random_secret("pw"), random_secret("amqp-pw"));
    let (internal, jwt) = (random_secret("internal"), random_secret("jwt"));
    let database_url =
        format!("postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&password={password}");
    let amqp_url = format!("amqp://guest:{amqp_password}@127.0.0.1:1/%2f\n");
    let environment = [
        (
            "TENANTRY_DATABASE_URL_FILE",
            file("database-url", &format!("{database_url}\n")),
        ),
        ("TENANTRY_AMQP_URL_FILE", file("amqp-url", &amqp_url)),
        (
            "TENANTRY_INTERNAL_SECRET_FILE",
            file("internal", &format!("{internal}\n")),
        ),
        ("TENANTRY_JWT_SECRET", jwt.clone()),
        ("TENANTRY_REGISTRY_URL", "http://127.0.0.1:1".to_string()),
        ("TENANTRY_LISTEN", "127.0.0.1:0".to_string()),
        ("TENANTRY_LOG", "debug,lapin=info".to_string()),
        ("TENANTRY_LOG_FORMAT", "json".to_string()),
    ];
    let log_path = dir.join("membership.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = serve_membership(&environment)
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start tenantry serve");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // The first attempt gives up after the pool's acquire timeout (10 s).
    let deadline = Instant::now() + Duration::from_secs(45);
    while !read_log().contains("database not ready") {
        if let Some(status) = child.try_wait().expect("status") {
            panic!(
                "(d) tenantry serve exited at start ({status}) instead of retrying the database \
                 read from TENANTRY_DATABASE_URL_FILE; log:\n{}",
                read_log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "(d) no `database not ready` within 45 s:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = child.id().expect("pid").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(signalled.expect("kill").success(), "kill -TERM {pid}");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exit within 30 s of SIGTERM")
        .expect("exit status");
    let text = read_log();
    let retries: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("database not ready"))
        .collect();
    eprintln!(
        "(d) {exit} after SIGTERM; {} `database not ready`, e.g.\n{}",
        retries.len(),
        retries[0]
    );
    let masked = "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&password=***";
    assert!(
        retries.iter().all(|line| line.contains(masked)),
        "(d) the database URL is logged masked: {retries:#?}"
    );
    // The database and AMQP passwords, the internal and the JWT secrets.
    assert_no_secret_in_logs(&dir, &[&password, &amqp_password, &internal, &jwt]);
    let _ = std::fs::remove_dir_all(&dir);
}
