//! What operators and Kubernetes see without a token: health per service and reflection.

use tenantry_proto::registry::v1::ListAccountsRequest;
use tenantry_testkit::{Backend, ServiceKind, TestCluster, TestUser};
use tokio_stream::StreamExt;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_need_no_token() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let mut health = HealthClient::new(cluster.channel());
    for service in [
        "",
        "tenantry.registry.v1.CustomerRegistryService",
        "tenantry.membership.v1.MembershipService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(cluster.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tenantry.registry.v1.CustomerRegistryService",
        "tenantry.membership.v1.MembershipService",
        "tenantry.invitation.v1.InvitationService",
        "tenantry.notification.v1.NotificationService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    cluster.stop().await;
}

/// A service whose database cannot be reached reports NOT_SERVING and answers UNAVAILABLE
/// (never INTERNAL), while the other services of the node keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_means_not_serving_and_unavailable() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let dir = std::env::temp_dir().join(format!("tenantry-test-{}", uuid::Uuid::new_v4().simple()));
    let cluster = TestCluster::start_with_databases(vec![
        (
            ServiceKind::CustomerRegistry,
            format!("postgres://postgres@127.0.0.1:{closed_port}/registry"),
        ),
        (
            ServiceKind::Membership,
            format!("sqlite://{}?mode=rwc", dir.join("membership.db").display()),
        ),
    ])
    .await;
    let mut health = HealthClient::new(cluster.channel());
    let status_of = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    // Membership's SQLite file becomes ready; the registry's PostgreSQL never does.
    let mut membership_serving = false;
    for _ in 0..100 {
        let status = health
            .check(status_of("tenantry.membership.v1.MembershipService"))
            .await
            .expect("health")
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            membership_serving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(membership_serving);
    for service in ["", "tenantry.registry.v1.CustomerRegistryService"] {
        let status = health
            .check(status_of(service))
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::NotServing as i32, "{service:?}");
    }
    let operator = TestUser::operator("ops");
    let status = cluster
        .registry_as(&operator)
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect_err("no database");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
