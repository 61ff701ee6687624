//! The notification service's tables.

use tenantry_proto::membership::v1::Role;
use tenantry_proto::notification::v1 as pb;
use tenantry_testkit::TestCluster;
use tonic::Code;

use super::values::{
    BAD_TIMESTAMPS, LAST_TIMESTAMP, UNKNOWN_ENUMS, bad_account_names, bad_child_names,
    bad_line_text, bad_request_ids, good_line_text, oversized, unknown_child,
};
use super::{Case, N, Tally, World, accepted, code, invalid, named, page_entries};

const MAX_TITLE: usize = 120;
const MAX_BODY: usize = 2000;

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.notification(Some(&world.caller_of(&format!("{N}/{rpc}"))));

    let notification = client("SendMessage");
    tally
        .run(
            &format!("{N}/SendMessage"),
            send_message(world),
            |request| {
                let mut notification = notification.clone();
                async move { notification.send_message(request).await.map(drop) }
            },
        )
        .await;

    let notification = client("ListMessages");
    let mut cases = named("parent", |parent| pb::ListMessagesRequest {
        parent,
        ..Default::default()
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListMessagesRequest {
            parent: world.partner.clone(),
            page_size,
            page_token,
        },
        &world.foreign_token,
    ));
    tally
        .run(&format!("{N}/ListMessages"), cases, |request| {
            let mut notification = notification.clone();
            async move { notification.list_messages(request).await.map(drop) }
        })
        .await;

    let notification = client("GetMessage");
    let cases = message_named(world, Code::NotFound, |name| pb::GetMessageRequest { name });
    tally
        .run(&format!("{N}/GetMessage"), cases, |request| {
            let mut notification = notification.clone();
            async move { notification.get_message(request).await.map(drop) }
        })
        .await;

    let notification = client("ListMessageReceipts");
    let mut cases = message_named(world, Code::NotFound, |name| {
        pb::ListMessageReceiptsRequest {
            name,
            ..Default::default()
        }
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListMessageReceiptsRequest {
            name: world.message.clone(),
            page_size,
            page_token,
        },
        &world.foreign_token,
    ));
    tally
        .run(&format!("{N}/ListMessageReceipts"), cases, |request| {
            let mut notification = notification.clone();
            async move { notification.list_message_receipts(request).await.map(drop) }
        })
        .await;

    let notification = client("ListPendingMessages");
    let mut cases = page_entries(
        |page_size, page_token| pb::ListPendingMessagesRequest {
            page_size,
            page_token,
        },
        &world.foreign_token,
    );
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListPendingMessagesRequest {
            page_size: 0,
            page_token: oversized(),
        },
    ));
    tally
        .run(&format!("{N}/ListPendingMessages"), cases, |request| {
            let mut notification = notification.clone();
            async move { notification.list_pending_messages(request).await.map(drop) }
        })
        .await;

    // Only recipients may acknowledge: a message the caller never got is PERMISSION_DENIED.
    let notification = client("AcknowledgeMessage");
    let cases = message_named(world, Code::PermissionDenied, |name| {
        pb::AcknowledgeMessageRequest { name }
    });
    tally
        .run(&format!("{N}/AcknowledgeMessage"), cases, |request| {
            let mut notification = notification.clone();
            async move { notification.acknowledge_message(request).await.map(drop) }
        })
        .await;

    // WatchInbox takes no parameters: its bad input is all in the raw corpus (oversized,
    // undecodable); here, that unknown fields do not matter.
    let notification = client("WatchInbox");
    let cases = vec![accepted("an empty request", pb::WatchInboxRequest {})];
    tally
        .run(&format!("{N}/WatchInbox"), cases, |request| {
            let mut notification = notification.clone();
            async move {
                let mut stream = notification.watch_inbox(request).await?.into_inner();
                stream.message().await.map(drop)
            }
        })
        .await;
}

/// The entries of a call about one message: every malformed name, an oversized one, and a
/// well-formed name of a message that does not exist (`unknown`).
fn message_named<Req>(
    world: &World,
    unknown: Code,
    make: impl Fn(String) -> Req,
) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_child_names(&world.partner, "messages")
        .into_iter()
        .map(|(what, name)| invalid(format!("name: {what}"), "name", make(name)))
        .collect();
    cases.push(code(
        "name: oversized request",
        Code::ResourceExhausted,
        make(format!("{}/messages/{}", world.partner, oversized())),
    ));
    cases.push(code(
        "name: a message that does not exist",
        unknown,
        make(unknown_child(&world.partner, "messages")),
    ));
    cases
}

fn send_message(world: &World) -> Vec<Case<pb::SendMessageRequest>> {
    let base = || pb::SendMessageRequest {
        parent: world.partner.clone(),
        title: "Maintenance".into(),
        body: "Read-only from 02:00 to 04:00 UTC.".into(),
        read_policy: pb::ReadPolicy::AllMustRead as i32,
        recipients: vec![world.customer.clone()],
        ..Default::default()
    };
    let mut cases = named("parent", |parent| pb::SendMessageRequest {
        parent,
        ..base()
    });
    for (what, title) in [("empty", String::new()), ("blank", " \t ".to_string())]
        .into_iter()
        .chain(bad_line_text(MAX_TITLE))
    {
        cases.push(invalid(
            format!("title: {what}"),
            "title",
            pb::SendMessageRequest { title, ..base() },
        ));
    }
    for (what, title) in good_line_text(MAX_TITLE) {
        cases.push(accepted(
            format!("title: {what}"),
            pb::SendMessageRequest { title, ..base() },
        ));
    }
    for (what, body) in [
        ("empty", String::new()),
        ("blank", " \n\t ".to_string()),
        ("one character too long", "x".repeat(MAX_BODY + 1)),
        ("NUL", "Read\u{0}only".to_string()),
        ("escape sequence", "\u{1b}[2J Read-only".to_string()),
        ("right-to-left override", "Read \u{202e}ylno".to_string()),
    ] {
        cases.push(invalid(
            format!("body: {what}"),
            "body",
            pb::SendMessageRequest { body, ..base() },
        ));
    }
    for (what, body) in [
        (
            "line breaks and tabs",
            "Line one\r\nLine two\n\tindented".to_string(),
        ),
        ("the limit in two-byte characters", "ü".repeat(MAX_BODY)),
    ] {
        cases.push(accepted(
            format!("body: {what}"),
            pb::SendMessageRequest { body, ..base() },
        ));
    }
    for (what, read_policy) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("read_policy {what}"),
            "read_policy",
            pb::SendMessageRequest {
                read_policy,
                ..base()
            },
        ));
    }
    for (what, roles) in [
        ("UNSPECIFIED", vec![0]),
        ("99", vec![Role::Owner as i32, 99]),
        ("-1", vec![-1]),
    ] {
        cases.push(invalid(
            format!("roles {what}"),
            "roles",
            pb::SendMessageRequest { roles, ..base() },
        ));
    }
    cases.push(invalid(
        "recipients and all_customers",
        "recipients",
        pb::SendMessageRequest {
            all_customers: true,
            ..base()
        },
    ));
    cases.push(invalid(
        "neither recipients nor all_customers",
        "recipients",
        pb::SendMessageRequest {
            recipients: Vec::new(),
            ..base()
        },
    ));
    cases.push(invalid(
        "1001 recipients",
        "recipients",
        pb::SendMessageRequest {
            recipients: (0..1001)
                .map(|n| format!("accounts/customer-{n}"))
                .collect(),
            ..base()
        },
    ));
    for (what, name) in bad_account_names() {
        cases.push(invalid(
            format!("recipients[1]: {what}"),
            "recipients[1]",
            pb::SendMessageRequest {
                recipients: vec![world.customer.clone(), name],
                ..base()
            },
        ));
    }
    for (what, name) in [
        ("the partner itself", world.partner.clone()),
        (
            "an account that does not exist",
            "accounts/no-such-customer".to_string(),
        ),
    ] {
        cases.push(invalid(
            format!("recipients[0]: {what}"),
            "recipients[0]",
            pb::SendMessageRequest {
                recipients: vec![name],
                ..base()
            },
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default();
    for (what, seconds, nanos) in BAD_TIMESTAMPS.into_iter().chain([
        ("in the past", now - 60, 0),
        ("now minus a year", now - 31_536_000, 0),
    ]) {
        cases.push(invalid(
            format!("expire_time: {what}"),
            "expire_time",
            pb::SendMessageRequest {
                expire_time: Some(prost_types::Timestamp { seconds, nanos }),
                ..base()
            },
        ));
    }
    cases.push(accepted(
        "expire_time: 9999-12-31T23:59:59.999999999Z",
        pb::SendMessageRequest {
            expire_time: Some(prost_types::Timestamp {
                seconds: LAST_TIMESTAMP.0,
                nanos: LAST_TIMESTAMP.1,
            }),
            ..base()
        },
    ));
    for (what, request_id) in bad_request_ids() {
        cases.push(invalid(
            format!("request_id: {what}"),
            "request_id",
            pb::SendMessageRequest {
                request_id,
                ..base()
            },
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::SendMessageRequest {
            body: oversized(),
            ..base()
        },
    ));
    cases
}
