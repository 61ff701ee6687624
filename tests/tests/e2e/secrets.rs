//! Invitation secrets in a hostile world: they rest only as SHA-256 hashes (every table of every
//! service is read back, text and binary columns alike, and every event on the bus), and
//! guessing them is cut off per caller and per network address while others go on.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sha2::{Digest, Sha256};
use tenantry_e2e::{expect_code, invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::invitation::v1::{
    AcceptInvitationRequest, EmailDeliveryState, GetInvitationRequest, LookupInvitationRequest,
    ResendInvitationRequest,
};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::{Backend, ClusterOptions, ServiceKind, TestCluster, TestUser};
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_types::StatusExt;

/// Waits for the `count`-th invitation e-mail to `email` of `invitation` and for the invitation
/// to say SENT (the mailer records the secret's hash as it commits, just after the send);
/// returns that e-mail's token.
async fn token_of_mail(
    cluster: &TestCluster,
    admin: &TestUser,
    invitation: &str,
    email: &str,
    count: usize,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mails: Vec<_> = cluster
            .mail_files()
            .into_iter()
            .filter(|mail| mail.to.contains(email))
            .collect();
        let sent = cluster
            .invitation_as(admin)
            .get_invitation(GetInvitationRequest {
                name: invitation.to_string(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .and_then(|invitation| invitation.delivery)
            .is_some_and(|delivery| delivery.state == EmailDeliveryState::Sent as i32);
        if mails.len() >= count && sent {
            return mails[count - 1].accept_token().expect("an accept link");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "e-mail {count} to {email} never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every spelling of a secret that would betray it at rest: the token itself, and its 32 bytes
/// as hex (any case: SQLite quotes blobs in upper case, PostgreSQL in lower) and as base64 in
/// every alphabet and padding.
fn spellings(token: &str) -> Vec<String> {
    let raw = URL_SAFE_NO_PAD.decode(token).expect("a base64url token");
    assert_eq!(raw.len(), 32, "256 bits");
    let hex: String = raw.iter().map(|byte| format!("{byte:02x}")).collect();
    vec![
        token.to_string(),
        hex.clone(),
        hex.to_uppercase(),
        STANDARD.encode(&raw),
        STANDARD_NO_PAD.encode(&raw),
        URL_SAFE.encode(&raw),
    ]
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Every row of every table of a database, each rendered as one line of text with binary
/// columns as hex.
async fn dump(url: &str) -> Vec<(String, String)> {
    let database = sea_orm::Database::connect(url).await.expect("connect");
    let backend = database.get_database_backend();
    let texts = |sql: String| {
        let database = &database;
        async move {
            database
                .query_all_raw(Statement::from_string(backend, sql))
                .await
                .expect("query")
                .iter()
                .map(|row| row.try_get_by_index::<String>(0).expect("text"))
                .collect::<Vec<String>>()
        }
    };
    let tables = match backend {
        DbBackend::Postgres => {
            texts(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                    .into(),
            )
            .await
        }
        _ => texts("SELECT name FROM sqlite_master WHERE type = 'table'".into()).await,
    };
    assert!(tables.len() > 3, "tables found: {tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        let sql = match backend {
            // The row as a composite value: every column, bytea as \x… hex.
            DbBackend::Postgres => format!("SELECT t::text FROM \"{table}\" AS t"),
            _ => {
                let columns: Vec<String> = database
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("PRAGMA table_info(\"{table}\")"),
                    ))
                    .await
                    .expect("table info")
                    .iter()
                    .map(|row| row.try_get::<String>("", "name").expect("column name"))
                    .collect();
                // quote(): text as a literal, blobs as X'…' hex.
                let quoted: Vec<String> =
                    columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
                format!("SELECT {} FROM \"{table}\"", quoted.join(" || '|' || "))
            }
        };
        for row in texts(sql).await {
            rows.push((table.clone(), row));
        }
    }
    let _ = database.close().await;
    rows
}

/// Three invitations mailed, one resent (its first secret superseded), one accepted, one looked
/// up: no table of any service and no event holds any of the four secrets in any spelling; the
/// live secrets' SHA-256 is what the invitation table holds.
async fn secrets_rest_only_as_hashes(backend: Backend) {
    let mut options = ClusterOptions::new(backend);
    options.invitation.resend_interval_seconds = 0;
    let cluster = TestCluster::start_with(options).await;
    let mut events = cluster.subscribe_events(&["#"]).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let invitees: Vec<TestUser> = (0..3)
        .map(|n| TestUser::new(&format!("invitee{n}")))
        .collect();
    let mut invitations = Vec::new();
    let mut tokens = Vec::new();
    for invitee in &invitees {
        let invitation = invite(
            &cluster,
            alice,
            &customer.name,
            &invitee.email,
            Role::Employee,
        )
        .await
        .expect("invite");
        tokens.push(token_of_mail(&cluster, alice, &invitation.name, &invitee.email, 1).await);
        invitations.push(invitation);
    }
    let resent = cluster
        .invitation_as(alice)
        .resend_invitation(ResendInvitationRequest {
            name: invitations[0].name.clone(),
            etag: String::new(),
        })
        .await
        .expect("resend");
    assert!(resent.into_inner().invitation.is_some());
    let superseded = tokens[0].clone();
    tokens[0] = token_of_mail(&cluster, alice, &invitations[0].name, &invitees[0].email, 2).await;
    assert_ne!(tokens[0], superseded, "a resend mints a new secret");
    cluster
        .invitation_as(&invitees[1])
        .accept_invitation(AcceptInvitationRequest {
            token: tokens[1].clone(),
        })
        .await
        .expect("accept");
    cluster
        .invitation_as(&invitees[2])
        .lookup_invitation(LookupInvitationRequest {
            token: tokens[2].clone(),
        })
        .await
        .expect("lookup");

    let mut secrets = tokens.clone();
    secrets.push(superseded.clone());
    let needles: Vec<(String, String)> = secrets
        .iter()
        .flat_map(|token| {
            spellings(token)
                .into_iter()
                .map(move |s| (token.clone(), s))
        })
        .collect();
    let mut invitation_rows = Vec::new();
    for kind in ServiceKind::ALL {
        let rows = dump(cluster.database_url(kind)).await;
        for (table, row) in &rows {
            for (secret, spelling) in &needles {
                assert!(
                    !row.contains(spelling.as_str()),
                    "{} table {table} holds the secret {secret} as {spelling}: {row}",
                    kind.name()
                );
            }
        }
        if kind == ServiceKind::Invitation {
            invitation_rows = rows;
        }
    }
    let stored_hash = |token: &str| {
        let hash = sha256_hex(token);
        invitation_rows
            .iter()
            .any(|(table, row)| table == "invitations" && row.contains(&hash))
    };
    assert!(
        stored_hash(&tokens[0]),
        "the resent secret's hash is stored"
    );
    assert!(stored_hash(&tokens[2]), "a pending secret's hash is stored");
    assert!(!stored_hash(&superseded), "the superseded hash is gone");

    // Nothing on the bus either (the events of the whole run).
    let mut seen = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        seen += 1;
        for (secret, spelling) in &needles {
            let payload = String::from_utf8_lossy(&event.payload);
            assert!(
                !payload.contains(spelling.as_str()),
                "event {} carries the secret {secret}",
                event.event_type
            );
        }
    }
    assert!(seen >= 6, "the run's events were observed ({seen})");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rest_only_as_hashes_on_sqlite() {
    secrets_rest_only_as_hashes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rest_only_as_hashes_on_postgres() {
    if tenantry_testkit::postgres_or_skip().is_none() {
        eprintln!("skipped: set TENANTRY_TEST_POSTGRES_URL to run the PostgreSQL suite");
        return;
    }
    secrets_rest_only_as_hashes(Backend::Postgres).await;
}

/// An invitation client for `user` whose connection comes from `source` (any 127.0.0.0/8
/// address reaches the cluster over loopback, and the server sees it as the caller's address).
async fn invitation_from(
    cluster: &TestCluster,
    source: Ipv4Addr,
    user: &TestUser,
) -> tenantry_testkit::InvitationClient {
    let channel = Endpoint::from_shared(format!("http://{}", cluster.addr()))
        .expect("url")
        .local_address(Some(IpAddr::V4(source)))
        .connect()
        .await
        .expect("connect from the source address");
    let token = user.token();
    InvitationServiceClient::with_interceptor(channel, tenantry_testkit::Bearer::new(Some(&token)))
}

async fn lookup(
    client: &mut tenantry_testkit::InvitationClient,
    token: &str,
) -> Result<tenantry_proto::invitation::v1::LookupInvitationResponse, tonic::Status> {
    client
        .lookup_invitation(LookupInvitationRequest {
            token: token.to_string(),
        })
        .await
        .map(|response| response.into_inner())
}

/// A refusal for guessing: RESOURCE_EXHAUSTED with a RetryInfo delay.
#[track_caller]
fn expect_cut_off<T: std::fmt::Debug>(result: Result<T, tonic::Status>, who: &str) {
    let status = expect_code(result, Code::ResourceExhausted);
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("{who}: RetryInfo with a delay: {status:?}"));
    assert!(delay > Duration::ZERO, "{who}: {delay:?}");
}

/// One login guessing is cut off after its share while another login from the same address
/// goes on; many logins guessing from one address cut that address off, while a caller from
/// another address goes on and accepts its invitation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_cut_off_per_caller_and_per_address() {
    const PER_CALLER: usize = 5;
    const PER_ADDRESS: usize = 12;
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.invitation.guesses_per_caller = PER_CALLER;
    options.invitation.guesses_per_address = PER_ADDRESS;
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let bob = TestUser::new("bob");
    let invitation = invite(
        &cluster,
        &partner.owner,
        &customer.name,
        &bob.email,
        Role::Employee,
    )
    .await
    .expect("invite bob");
    let bob_token = token_of_mail(&cluster, &partner.owner, &invitation.name, &bob.email, 1).await;
    let here = Ipv4Addr::new(127, 0, 0, 1);
    let elsewhere = Ipv4Addr::new(127, 0, 0, 2);
    let guess = || URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());

    // Per caller: mallory's guesses run out; bob, from the same address, is unaffected.
    let mallory = TestUser::new("mallory");
    let mut mallory_client = invitation_from(&cluster, here, &mallory).await;
    for _ in 0..PER_CALLER {
        expect_code(lookup(&mut mallory_client, &guess()).await, Code::NotFound);
    }
    expect_cut_off(lookup(&mut mallory_client, &guess()).await, "mallory");
    expect_cut_off(
        lookup(&mut mallory_client, &bob_token).await,
        "mallory, even with a real link",
    );
    let mut mallory_elsewhere = invitation_from(&cluster, elsewhere, &mallory).await;
    expect_cut_off(
        lookup(&mut mallory_elsewhere, &guess()).await,
        "mallory from another address",
    );
    let mut bob_here = invitation_from(&cluster, here, &bob).await;
    lookup(&mut bob_here, &bob_token)
        .await
        .expect("bob is not cut off by mallory");

    // Per address: fresh logins from here use up the address's share, then even a new login
    // (and bob) is refused here.
    for n in PER_CALLER..PER_ADDRESS {
        let puppet = TestUser::new(&format!("puppet{n}"));
        let mut client = invitation_from(&cluster, here, &puppet).await;
        expect_code(lookup(&mut client, &guess()).await, Code::NotFound);
    }
    let newcomer = TestUser::new("newcomer");
    let mut newcomer_here = invitation_from(&cluster, here, &newcomer).await;
    expect_cut_off(
        lookup(&mut newcomer_here, &guess()).await,
        "a new login here",
    );
    expect_cut_off(lookup(&mut bob_here, &bob_token).await, "bob from here");

    // Another address goes on: a stranger's guess is merely unknown, and bob accepts.
    let mut newcomer_elsewhere = invitation_from(&cluster, elsewhere, &newcomer).await;
    expect_code(
        lookup(&mut newcomer_elsewhere, &guess()).await,
        Code::NotFound,
    );
    let mut bob_elsewhere = invitation_from(&cluster, elsewhere, &bob).await;
    bob_elsewhere
        .accept_invitation(AcceptInvitationRequest { token: bob_token })
        .await
        .expect("bob accepts from another address");
    cluster.stop().await;
}
