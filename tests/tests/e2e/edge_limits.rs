//! Oversized metadata costs the caller its own call, never the connection: a 32 KiB, a 64 KiB
//! and a 1 MiB authorization header each get one RESOURCE_EXHAUSTED naming the limit, while a
//! `WatchInbox` stream of another user open on the same HTTP/2 connection goes on and still
//! receives the next message. (Before the limits were explicit, 32 KiB got UNKNOWN "431" and
//! 64 KiB or more made the server close the connection, ending every stream on it.)

use std::time::Duration;

use tenantry_e2e::{add_member, partner_admin_in_customer, send_message, watch_inbox};
use tenantry_proto::membership::v1::Role;
use tenantry_proto::notification::v1::{ReadPolicy, watch_inbox_response};
use tenantry_proto::registry::v1::ListAccountsRequest;
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn oversized_metadata_is_refused_on_its_own_stream_and_other_streams_survive() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let wanda = TestUser::new("wanda");
    add_member(&cluster, &operator, &customer.name, &wanda, Role::Employee)
        .await
        .expect("wanda joins");

    // Every client below shares the cluster's one channel: one HTTP/2 connection.
    let (mut watch, _snapshot) = watch_inbox(cluster.notification_as(&wanda)).await;

    for size in [32 * 1024, 64 * 1024, 1024 * 1024] {
        let huge_token = "a".repeat(size);
        let refused = cluster
            .registry(Some(&huge_token))
            .list_accounts(ListAccountsRequest::default())
            .await
            .expect_err("an oversized authorization header is refused");
        assert_eq!(
            refused.code(),
            Code::ResourceExhausted,
            "{size} bytes: {refused:?}"
        );
        assert!(
            refused.message().contains("TENANTRY_MAX_METADATA_BYTES")
                && refused.message().contains("is "),
            "{size} bytes: the refusal says what and which limit: {refused:?}"
        );
        // The connection is still there for ordinary calls.
        cluster
            .registry(Some(&operator.token()))
            .list_accounts(ListAccountsRequest::default())
            .await
            .unwrap_or_else(|status| panic!("a normal call after {size} bytes: {status:?}"));
    }

    // The stream opened before all three is still alive: the next message arrives on it.
    let message = send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &[customer.name.as_str()],
        "Still here",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send");
    let arrived = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("an arrival on the old stream")
        .expect("the stream is still open")
        .expect("not ended with an error");
    assert!(
        matches!(arrived.event, Some(watch_inbox_response::Event::Arrived(ref item)) if item.message == message.name),
        "{arrived:?}"
    );
    cluster.stop().await;
}
