//! SIGTERM to a running `tenantry serve` process while calls are in flight: the calls it had
//! accepted complete, later ones are refused cleanly (UNAVAILABLE, or HTTP/2's refusal of a
//! stream the server never took — never a reset of a call it had taken), and the process exits
//! 0 well within its grace period; the database holds exactly the calls that succeeded.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::operator_token;
use tenantry_proto::registry::v1::CreateAccountRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::Code;

const SECRET: &str = "graceful-shutdown-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    // `serve` needs a broker.
    let Some(amqp) = support::backend_url("TENANTRY_TEST_AMQP_URL") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!(
        "tenantry-shutdown-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let prefix = format!(
        "shutdown-{}.",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "customer-registry"])
        .env(
            "TENANTRY_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("registry.db").display()),
        )
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANTRY_MEMBERSHIP_URL", "http://127.0.0.1:1")
        .env("TENANTRY_AMQP_URL", &amqp)
        .env("TENANTRY_AMQP_PREFIX", &prefix)
        .env("TENANTRY_JWT_SECRET", SECRET)
        .env("TENANTRY_INTERNAL_SECRET", "graceful-shutdown-internal")
        .env("TENANTRY_SHUTDOWN_GRACE_SECONDS", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start tenantry serve");

    // Wait until the service is SERVING.
    let url = format!("http://127.0.0.1:{port}");
    let channel = loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let serving = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "tenantry.registry.v1.CustomerRegistryService".into(),
                })
                .await
                .is_ok_and(|response| response.into_inner().status == 1);
            if serving {
                break channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // 300 creates at once: SQLite serializes them, so many are in flight when SIGTERM lands.
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", operator_token(SECRET))
        .parse()
        .expect("header");
    let create = |index: usize| {
        let channel = channel.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut client = CustomerRegistryServiceClient::new(channel);
            let mut request = tonic::Request::new(CreateAccountRequest {
                account_id: format!("acct-{index}"),
                display_name: format!("Account {index}"),
                request_id: String::new(),
            });
            request.metadata_mut().insert("authorization", token);
            client.create_account(request).await
        })
    };
    let mut calls: Vec<_> = (0..300).map(create).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let pid = child.id().expect("pid").to_string();
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    // More calls keep coming while the server drains: some cross its GOAWAY on the wire, later
    // ones find the listener closed.
    for index in 300..500 {
        calls.push(create(index));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let mut succeeded = 0;
    let mut refused = 0;
    let mut refused_unsent = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(status) => {
                // A call that crossed the server's GOAWAY on the wire is refused by HTTP/2
                // itself, and one still queued in the client when the connection closed is
                // never sent: both unprocessed. tonic's client calls them INTERNAL and
                // CANCELLED, the gRPC spec UNAVAILABLE, as Tenantry's own peer channels do.
                let refused_unsent_now = std::error::Error::source(&status)
                    .is_some_and(tenantry_platform::clients::refused_before_processing);
                assert!(
                    status.code() == Code::Unavailable || refused_unsent_now,
                    "a call is either finished or cleanly refused: {status:?}"
                );
                refused += 1;
                refused_unsent += usize::from(refused_unsent_now);
            }
        }
    }
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the process exits within its grace period")
        .expect("exit status");
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(succeeded > 0, "some calls were in flight and completed");
    eprintln!(
        "SIGTERM: {succeeded} in-flight calls completed, {refused} refused \
         ({refused_unsent} of them before they were sent or by GOAWAY), exit 0 after {took:?}"
    );

    // Every call that succeeded is durable.
    let database =
        sea_orm::Database::connect(format!("sqlite://{}", dir.join("registry.db").display()))
            .await
            .expect("open the database");
    use sea_orm::{ConnectionTrait, Statement};
    let row = database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            "SELECT COUNT(*) FROM accounts".to_string(),
        ))
        .await
        .expect("count")
        .expect("row");
    let stored: i64 = row.try_get_by_index(0).expect("number");
    assert_eq!(stored as usize, succeeded);
    let _ = database.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // The process published account.created events to its own prefixed exchange; remove it.
    if let Ok(connection) =
        lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default()).await
        && let Ok(channel) = connection.create_channel().await
    {
        for exchange in [
            format!("{prefix}tenantry.events"),
            format!("{prefix}tenantry.events.control"),
        ] {
            let _ = channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = connection.close(0, "done".into()).await;
    }
}
