//! Peer channels over several replicas: real gRPC servers (the platform's own `serve_with_tls`
//! with gRPC health) on free ports, each counting the calls it answers and the client
//! connections they came on.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenantry_platform::Authenticator;
use tenantry_platform::auth::ServiceTokenMinter;
use tenantry_platform::clients::{self, ChannelOptions, ServiceChannel};
use tenantry_platform::config::AuthConfig;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::{self, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const INTERNAL_SECRET: &str = "balanced-channels-internal-secret";

/// One replica: a gRPC server that records the client port of every call it answers.
struct Replica {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u16>>>,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Replica {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Self {
        Self::serve_with_tls(listener, None)
    }

    fn serve_with_tls(listener: TcpListener, tls: Option<ServerTlsConfig>) -> Self {
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (_, health) = tonic_health::server::health_reporter();
        let health = InterceptedService::new(health, move |request: tonic::Request<()>| {
            let port = request.remote_addr().map_or(0, |addr| addr.port());
            record.lock().unwrap().push(port);
            Ok(request)
        });
        let authenticator = Arc::new(
            Authenticator::new(AuthConfig::with_secrets("user-secret", INTERNAL_SECRET))
                .expect("authenticator"),
        );
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server::serve_with_tls(
            listener,
            Routes::new(health),
            authenticator,
            shutdown.clone(),
            Duration::from_secs(5),
            Metrics::default(),
            tls,
        ));
        Self {
            addr,
            seen,
            shutdown,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Graceful shutdown, as on SIGTERM: GOAWAY to the clients, then the port closes.
    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("server task").expect("server");
    }
}

fn minter() -> ServiceTokenMinter {
    ServiceTokenMinter::new("balanced-channels-test", INTERNAL_SECRET).expect("minter")
}

fn options() -> ChannelOptions {
    ChannelOptions {
        resolve_interval: Duration::from_secs(1),
    }
}

fn client(url: &str) -> HealthClient<ServiceChannel> {
    let channel =
        clients::channel_with_options(url, minter(), None, &options()).expect("valid URL");
    HealthClient::new(channel)
}

async fn check(client: &HealthClient<ServiceChannel>) -> Result<(), tonic::Status> {
    let mut client = client.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("the call hung"))?
    .map(|_| ())
}

/// `total` calls, `parallel` at a time; every one must succeed.
async fn calls(client: &HealthClient<ServiceChannel>, total: usize, parallel: usize) {
    for batch in 0..total.div_ceil(parallel) {
        let size = parallel.min(total - batch * parallel);
        let results = futures::future::join_all((0..size).map(|_| check(client))).await;
        for result in results {
            if let Err(status) = result {
                panic!("a call failed: {status:?}");
            }
        }
    }
}

fn assert_share(replicas: &[&Replica], total: usize) {
    let counts: Vec<usize> = replicas.iter().map(|replica| replica.calls()).collect();
    assert_eq!(counts.iter().sum::<usize>(), total, "{counts:?}");
    for count in &counts {
        assert!(
            *count * 5 >= total && *count * 5 <= total * 4,
            "each replica should answer 20–80 % of the calls: {counts:?}"
        );
    }
}

#[tokio::test]
async fn a_list_spreads_calls_over_its_replicas() {
    let replicas = [
        Replica::start().await,
        Replica::start().await,
        Replica::start().await,
    ];
    let url = replicas
        .iter()
        .map(Replica::url)
        .collect::<Vec<_>>()
        .join(",");
    let client = client(&url);
    calls(&client, 210, 7).await;
    assert_share(&replicas.iter().collect::<Vec<_>>(), 210);
    // One connection per replica, not one per call.
    for replica in &replicas {
        assert!(replica.connections() <= 2, "{}", replica.connections());
    }
}

#[tokio::test]
async fn a_replica_that_stops_costs_no_calls() {
    let [first, second, third] = [
        Replica::start().await,
        Replica::start().await,
        Replica::start().await,
    ];
    let url = format!("{},{},{}", first.url(), second.url(), third.url());
    let client = client(&url);
    calls(&client, 90, 3).await;
    assert!(first.calls() > 0 && second.calls() > 0 && third.calls() > 0);

    let before = (second.calls(), third.calls());
    first.stop().await;
    // Its port now refuses connections; every later call goes to the other two.
    calls(&client, 200, 4).await;
    let after = (second.calls() - before.0, third.calls() - before.1);
    assert_eq!(after.0 + after.1, 200, "{after:?}");
    assert!(after.0 >= 40 && after.1 >= 40, "{after:?}");

    // Calls made one by one see the same.
    calls(&client, 50, 1).await;

    // With every replica gone, calls fail at once with UNAVAILABLE instead of waiting.
    second.stop().await;
    third.stop().await;
    let started = std::time::Instant::now();
    let status = check(&client).await.expect_err("no replica is left");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_replica_that_comes_back_is_used_again() {
    let first = Replica::start().await;
    let second = Replica::start().await;
    let addr = first.addr;
    let client = client(&format!("{},{}", first.url(), second.url()));
    calls(&client, 20, 2).await;
    first.stop().await;
    calls(&client, 20, 2).await;
    // The same port serves again (SO_REUSEADDR: tokio sets it on Unix).
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let again = Replica::serve(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while again.calls() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica was not used again"
        );
        calls(&client, 10, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dns_names_resolve_to_replicas() {
    // `localhost` resolves to 127.0.0.1 and often also ::1: serve on both where possible.
    let v4 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind(("::1", port)).await.ok();
    let replicas: Vec<Replica> = std::iter::once(v4).chain(v6).map(Replica::serve).collect();
    let resolved: BTreeSet<SocketAddr> = tokio::net::lookup_host(("localhost", port))
        .await
        .expect("localhost resolves")
        .collect();
    let serving: Vec<&Replica> = replicas
        .iter()
        .filter(|replica| resolved.contains(&replica.addr))
        .collect();
    assert!(
        !serving.is_empty(),
        "localhost resolves to {resolved:?}, none served"
    );

    let client = client(&format!("dns:///localhost:{port}"));
    calls(&client, 200, 4).await;
    if serving.len() > 1 {
        assert_share(&serving, 200);
    } else {
        assert_eq!(serving[0].calls(), 200);
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_calls_with_unavailable() {
    let client = client("dns:///tenantry-no-such-host.invalid:50051");
    let status = check(&client).await.expect_err("nothing to call");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no replica of"), "{status:?}");
}

#[tokio::test]
async fn dropping_the_channel_ends_its_tasks() {
    let replica = Replica::start().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let idle = metrics.num_alive_tasks();
    let port = replica.addr.port();
    for url in [
        format!("dns:///127.0.0.1:{port}"),
        format!("{},http://127.0.0.1:{port}/", replica.url()),
    ] {
        let client = client(&url);
        calls(&client, 10, 2).await;
        assert!(metrics.num_alive_tasks() > idle);
        drop(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metrics.num_alive_tasks() > idle {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url}: {} tasks left running, {idle} before",
                metrics.num_alive_tasks()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Like [`calls`], but a call may lose the race with its connection's age-out: sent while the
/// server's GOAWAY is on its way, it is refused unprocessed, and the client sees its
/// connection close (CANCELLED or UNAVAILABLE, made here from the transport error). Any other
/// failure fails the test; the number of such races is returned.
async fn calls_across_age_outs(client: &HealthClient<ServiceChannel>, total: usize) -> usize {
    let mut raced = 0;
    for _ in 0..total.div_ceil(2) {
        let results = futures::future::join_all((0..2).map(|_| check(client))).await;
        for result in results {
            match result {
                Ok(()) => {}
                Err(status)
                    if matches!(status.code(), Code::Cancelled | Code::Unavailable)
                        && std::error::Error::source(&status).is_some() =>
                {
                    raced += 1;
                }
                Err(status) => panic!("a call failed: {status:?}"),
            }
        }
    }
    raced
}

#[tokio::test]
async fn servers_close_old_connections_without_failing_calls() {
    // The process-wide setting: servers started from now on close connections after 1 s.
    server::set_max_connection_age(Duration::from_secs(1));
    let first = Replica::start().await;
    let second = Replica::start().await;
    let single = client(&first.url());
    let balanced = client(&format!("{},{}", first.url(), second.url()));
    let until = tokio::time::Instant::now() + Duration::from_millis(3_500);
    let (mut made, mut raced) = (0, 0);
    while tokio::time::Instant::now() < until {
        raced += calls_across_age_outs(&single, 4).await;
        raced += calls_across_age_outs(&balanced, 4).await;
        made += 8;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only a call sent in the instant its connection is told to go away is refused (at most
    // one per connection closed); all the others go through.
    let closed = first.connections() + second.connections();
    assert!(
        raced <= closed,
        "{raced} of {made} calls refused, {closed} connections"
    );
    assert!(raced * 10 <= made, "{raced} of {made} calls refused");
    // Each client connection lived about a second: several per client.
    assert!(first.connections() >= 4, "{}", first.connections());
    assert!(second.connections() >= 2, "{}", second.connections());
    server::set_max_connection_age(server::DEFAULT_MAX_CONNECTION_AGE);
}

#[tokio::test]
async fn bad_urls_are_refused_naming_them() {
    for url in [
        "http://a:50051,,http://b:50051",
        "http://a:50051,",
        "dns:///membership",
        "dns://8.8.8.8/membership:50051",
        "http://a:50051,https://b:50051",
        "not a url",
    ] {
        let error = clients::channel(url, minter()).expect_err(url);
        assert_eq!(error.url(), url);
        assert!(error.to_string().contains(&format!("{url:?}")), "{error}");
    }
    assert!(clients::channel("http://membership:50051", minter()).is_ok());
    assert!(clients::channel("dns:///membership-headless:50051", minter()).is_ok());
    assert!(clients::channel("http://a:50051, http://b:50051", minter()).is_ok());
}

/// A CA and a certificate it signed for the name `localhost` only (no IP address).
fn localhost_pki() -> (Certificate, Identity) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    (
        Certificate::from_pem(ca_cert.pem()),
        Identity::from_pem(server_cert.pem(), server_key.serialize_pem()),
    )
}

#[tokio::test]
async fn dns_over_tls_verifies_the_dns_name() {
    let (ca, identity) = localhost_pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let replica =
        Replica::serve_with_tls(listener, Some(ServerTlsConfig::new().identity(identity)));
    let tls = || Some(ClientTlsConfig::new().ca_certificate(ca.clone()));

    // Dialled by address, verified as `localhost`: the name in the URL.
    let url = format!("dns+https:///localhost:{port}");
    let channel = clients::channel_with_options(&url, minter(), tls(), &options()).expect("URL");
    calls(&HealthClient::new(channel), 20, 2).await;
    assert_eq!(replica.calls(), 20);

    // The certificate does not name 127.0.0.1: the same server by address is refused.
    let url = format!("dns+https:///127.0.0.1:{port}");
    let channel = clients::channel_with_options(&url, minter(), tls(), &options()).expect("URL");
    let status = check(&HealthClient::new(channel))
        .await
        .expect_err("wrong name");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(replica.calls(), 20);
}

/// Calls racing a server's graceful shutdown either complete or fail with UNAVAILABLE, the code
/// that tells a caller to retry: the ones that crossed the GOAWAY on the wire or still waited
/// in the client's queue were never taken (tonic alone would call them INTERNAL or CANCELLED),
/// and one being written when the server closed the socket met a broken pipe (tonic: UNKNOWN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_shutdown_fail_only_with_unavailable() {
    let replica = Replica::start().await;
    let client = client(&replica.url());
    calls(&client, 20, 4).await;

    let callers: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                // Until the server is gone: then every call fails, and the loop ends.
                for _ in 0..10_000 {
                    if let Err(status) = check(&client).await {
                        failures.push(status);
                        if failures.len() >= 5 {
                            break;
                        }
                    }
                }
                failures
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    replica.stop().await;

    let mut failures = 0;
    for caller in callers {
        for status in caller.await.expect("caller") {
            // The whole status, with its source chain, says which path a stray code took.
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "a call racing the shutdown: {status:?}, caused by {:?}",
                std::error::Error::source(&status)
            );
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "the callers went on until the server was gone"
    );
}
