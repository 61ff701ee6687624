//! The audit trail over the whole cluster (issue 17).
//!
//! Table-driven over the API's descriptor set: every RPC of the four services is either
//! read-only (listed in [`READ_ONLY`]) or mutating with a scripted call in [`scenario`] that
//! names the entries it must produce — type, account, actor, and the fields before and after. A
//! new RPC in neither place fails the test. Each call carries its own `x-request-id`, so "exactly
//! these entries" is checked by request id once the log has settled: a change recorded twice,
//! or not at all, or under another account or actor, fails.
//!
//! Also here: WatchAuditEntries resumed from the middle of the log misses and repeats nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use serde_json::{Value, json};
use tenantry_proto::audit::v1::{
    AuditEntry, ListAuditEntriesRequest, Order, VerifyAuditChainRequest, WatchAuditEntriesRequest,
};
use tenantry_proto::registry::v1 as reg;
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, on_both_backends, postgres_or_skip,
};

/// The services whose mutating RPCs the trail must record.
const SERVICES: [&str; 4] = [
    "tenantry.registry.v1.CustomerRegistryService",
    "tenantry.membership.v1.MembershipService",
    "tenantry.invitation.v1.InvitationService",
    "tenantry.notification.v1.NotificationService",
];

/// RPCs that change nothing, so record nothing.
const READ_ONLY: &[&str] = &[
    "ListManagedCustomers",
    "GetAccount",
    "BatchGetAccounts",
    "ListAccounts",
    "GetMember",
    "ListMembers",
    "ListExpiringMembers",
    "GetAccessPolicy",
    "GetAccessRequest",
    "ListAccessRequests",
    "ListAccessRequestsWaitingForMe",
    "ListMyAccounts",
    "Authorize",
    "GetOwnerCapacity",
    "CheckInvitee",
    "ListInvitations",
    "GetInvitation",
    "LookupInvitation",
    "ListMyInvitations",
    "ListMessages",
    "GetMessage",
    "ListMessageReceipts",
    "ListPendingMessages",
    "WatchInbox",
];

mod scenario;

use scenario::{TRACE_ID, scenario};

/// The RPC names of the four services in the API's descriptor set.
fn descriptor_rpcs() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(tenantry_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut rpcs = BTreeSet::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if SERVICES.contains(&full.as_str()) {
                rpcs.extend(service.method.iter().map(|m| m.name().to_string()));
            }
        }
    }
    rpcs
}

/// Every entry of `account`'s log, oldest first (all pages), as the operator reads it.
async fn all_entries(cluster: &TestCluster, account: &str) -> Vec<AuditEntry> {
    let mut client = cluster.audit_as(&TestUser::operator("auditor"));
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_entries(ListAuditEntriesRequest {
                parent: account.to_string(),
                order: Order::OldestFirst as i32,
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListAuditEntries")
            .into_inner();
        entries.extend(page.audit_entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

/// A `google.protobuf.Struct` as JSON.
fn to_json(value: Option<&prost_types::Struct>) -> Value {
    fn one(value: &prost_types::Value) -> Value {
        use prost_types::value::Kind;
        match &value.kind {
            Some(Kind::BoolValue(flag)) => json!(flag),
            Some(Kind::NumberValue(number)) => json!(*number as i64),
            Some(Kind::StringValue(text)) => json!(text),
            Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(one).collect()),
            Some(Kind::StructValue(object)) => to_json(Some(object)),
            Some(Kind::NullValue(_)) | None => Value::Null,
        }
    }
    Value::Object(
        value
            .map(|object| {
                object
                    .fields
                    .iter()
                    .map(|(key, value)| (key.clone(), one(value)))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Whether `actual` has exactly the keys of `expected`, with equal values where `expected`
/// is not null.
fn matches(actual: &Value, expected: &Value) -> bool {
    let (Some(actual), Some(expected)) = (actual.as_object(), expected.as_object()) else {
        return false;
    };
    actual.keys().collect::<BTreeSet<_>>() == expected.keys().collect::<BTreeSet<_>>()
        && expected
            .iter()
            .all(|(key, value)| value.is_null() || actual.get(key) == Some(value))
}

async fn every_mutating_rpc_is_recorded_once_with_its_actor_and_values(cluster: &TestCluster) {
    // The table covers the API exactly: a new RPC must be classified here.
    let rpcs = descriptor_rpcs();
    let (steps, partner, customer) = scenario(cluster).await;
    let scripted: BTreeSet<String> = steps.iter().map(|step| step.rpc.to_string()).collect();
    let read_only: BTreeSet<String> = READ_ONLY.iter().map(|rpc| rpc.to_string()).collect();
    assert!(scripted.is_disjoint(&read_only));
    let classified: BTreeSet<String> = scripted.union(&read_only).cloned().collect();
    assert_eq!(
        classified, rpcs,
        "every RPC of the four services is either scripted here with its expected entries or \
         listed as read-only"
    );

    // The log settles: every expected entry is in (then a moment for any extra to show).
    let wanted: usize = steps.iter().map(|step| step.expected.len()).sum();
    let accounts = [
        format!("accounts/{partner}"),
        format!("accounts/{customer}"),
    ];
    let mut entries = Vec::new();
    for _ in 0..200 {
        entries.clear();
        for account in &accounts {
            entries.extend(all_entries(cluster, account).await);
        }
        let recorded = entries
            .iter()
            .filter(|entry| steps.iter().any(|step| step.request_id == entry.request_id))
            .count();
        if recorded >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    entries.clear();
    for account in &accounts {
        entries.extend(all_entries(cluster, account).await);
    }
    let mut by_request: BTreeMap<&str, Vec<&AuditEntry>> = BTreeMap::new();
    for entry in &entries {
        by_request.entry(&entry.request_id).or_default().push(entry);
    }
    for step in &steps {
        let got = by_request
            .remove(step.request_id.as_str())
            .unwrap_or_default();
        let describe = |entries: &[&AuditEntry]| {
            entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {} by {} ({})",
                        e.event_type, e.account, e.actor, e.actor_role
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got.len(),
            step.expected.len(),
            "{}: expected {:?}, recorded {:?}",
            step.rpc,
            step.expected
                .iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>(),
            describe(&got)
        );
        for want in &step.expected {
            let found = got.iter().find(|entry| {
                entry.event_type == want.event_type
                    && entry.account == want.account
                    && entry.actor == want.actor
                    && entry.actor_role == want.actor_role
                    && want
                        .resource
                        .as_ref()
                        .is_none_or(|resource| &entry.resource == resource)
                    && matches(&to_json(entry.before.as_ref()), &want.before)
                    && matches(&to_json(entry.after.as_ref()), &want.after)
            });
            assert!(
                found.is_some(),
                "{}: no entry {} on {} ({}) by {} ({}) with before {} after {}; recorded: {:#?}",
                step.rpc,
                want.event_type,
                want.account,
                want.resource.as_deref().unwrap_or("any resource"),
                want.actor,
                want.actor_role,
                want.before,
                want.after,
                got.iter()
                    .map(|e| (
                        &e.event_type,
                        &e.account,
                        &e.resource,
                        &e.actor,
                        &e.actor_role,
                        to_json(e.before.as_ref()).to_string(),
                        to_json(e.after.as_ref()).to_string()
                    ))
                    .collect::<Vec<_>>()
            );
        }
        // Each entry names the call's trace, and how the actor acted.
        for entry in &got {
            assert_eq!(entry.trace_id, TRACE_ID, "{}: trace id", step.rpc);
            assert_ne!(entry.actor_kind, 0, "{}: actor kind", step.rpc);
        }
    }
    // What the member added for an accepted invitation was added by the invitation service
    // for the invitee.
    let accepted = entries
        .iter()
        .find(|e| e.event_type == "member.added" && e.via == "services/invitation");
    assert!(accepted.is_some(), "member.added via services/invitation");
    // Both chains verify.
    let mut client = cluster.audit_as(&TestUser::operator("auditor"));
    for account in &accounts {
        let verified = client
            .verify_audit_chain(VerifyAuditChainRequest {
                parent: account.clone(),
            })
            .await
            .expect("verify")
            .into_inner();
        assert!(verified.intact, "{account}: {verified:?}");
    }
}

/// A cluster that lets an invitation be resent at once (the scenario resends right away).
async fn resending_cluster(backend: Backend) -> TestCluster {
    let mut options = ClusterOptions::new(backend);
    options.invitation.resend_interval_seconds = 0;
    TestCluster::start_with(options).await
}

mod every_mutating_rpc_is_recorded_once {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let cluster = resending_cluster(Backend::Sqlite).await;
        every_mutating_rpc_is_recorded_once_with_its_actor_and_values(&cluster).await;
        cluster.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if postgres_or_skip().is_none() {
            return;
        }
        let cluster = resending_cluster(Backend::Postgres).await;
        every_mutating_rpc_is_recorded_once_with_its_actor_and_values(&cluster).await;
        cluster.stop().await;
    }
}

async fn a_watch_resumed_from_the_middle_misses_and_repeats_nothing(cluster: &TestCluster) {
    let ops = TestUser::operator("ops");
    let account = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let name = format!("accounts/{account}");
    cluster
        .registry_as(&ops)
        .create_account(reg::CreateAccountRequest {
            account_id: account.clone(),
            display_name: "Watched 0".into(),
            request_id: String::new(),
        })
        .await
        .expect("create");
    let rename = |n: usize| {
        let mut client = cluster.registry_as(&ops);
        let name = name.clone();
        async move {
            client
                .update_account(reg::UpdateAccountRequest {
                    account: Some(reg::Account {
                        name,
                        display_name: format!("Watched {n}"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                })
                .await
                .expect("rename");
        }
    };
    for n in 1..10 {
        rename(n).await;
    }
    let mut client = cluster.audit_as(&ops);
    let mut first = client
        .watch_audit_entries(WatchAuditEntriesRequest {
            parent: name.clone(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    // Read 4 entries, drop the stream (a partner's integration going away)…
    let mut seen = Vec::new();
    for _ in 0..4 {
        let entry = first
            .next()
            .await
            .expect("entry")
            .expect("ok")
            .audit_entry
            .expect("entry");
        seen.push(entry.sequence);
    }
    drop(first);
    // …while more changes happen, then resume after the last sequence number received.
    for n in 10..15 {
        rename(n).await;
    }
    let mut resumed = client
        .watch_audit_entries(WatchAuditEntriesRequest {
            parent: name.clone(),
            after_sequence: *seen.last().expect("seen"),
        })
        .await
        .expect("resume")
        .into_inner();
    // Changes made while the resumed stream is open arrive too.
    let late = tokio::spawn({
        let rename = rename(15);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            rename.await;
        }
    });
    while seen.len() < 16 {
        let entry = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("the next entry within 10 s")
            .expect("entry")
            .expect("ok")
            .audit_entry
            .expect("entry");
        seen.push(entry.sequence);
    }
    late.await.expect("late rename");
    assert_eq!(seen, (1..=16).collect::<Vec<i64>>(), "no gap, no repeat");
    // Nothing more is sent.
    let extra = tokio::time::timeout(Duration::from_millis(1500), resumed.next()).await;
    assert!(extra.is_err(), "no entry beyond the log: {extra:?}");
}

on_both_backends!(
    a_watch_resumed_from_the_middle,
    super::a_watch_resumed_from_the_middle_misses_and_repeats_nothing
);

/// An entry altered in the audit database behind the service's back (by someone holding the
/// database's superuser, past the append-only trigger) is named by VerifyAuditChain.
async fn a_row_altered_in_the_database_is_named_by_verify(cluster: &TestCluster) {
    use sea_orm::ConnectionTrait;
    let ops = TestUser::operator("ops");
    let account = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let name = format!("accounts/{account}");
    cluster
        .registry_as(&ops)
        .create_account(reg::CreateAccountRequest {
            account_id: account.clone(),
            display_name: "Tampered".into(),
            request_id: String::new(),
        })
        .await
        .expect("create");
    cluster
        .registry_as(&ops)
        .promote_to_partner(reg::PromoteToPartnerRequest {
            name: name.clone(),
            etag: String::new(),
        })
        .await
        .expect("promote");
    let mut client = cluster.audit_as(&ops);
    for _ in 0..200 {
        if all_entries(cluster, &name).await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let verify = |mut client: tenantry_testkit::AuditClient| {
        let name = name.clone();
        async move {
            client
                .verify_audit_chain(VerifyAuditChainRequest { parent: name })
                .await
                .expect("verify")
                .into_inner()
        }
    };
    let intact = verify(client.clone()).await;
    assert!(intact.intact && intact.checked_entries == 2, "{intact:?}");
    // Someone "un-promotes" the account in the log.
    let database =
        sea_orm::Database::connect(cluster.database_url(tenantry_testkit::ServiceKind::Audit))
            .await
            .expect("connect to the audit database");
    let forge = format!(
        r#"UPDATE audit_entries SET after_json = '{{"partner":false}}' WHERE account_id = '{account}' AND sequence = 2"#
    );
    // The trigger refuses it as it stands…
    assert!(database.execute_unprepared(&forge).await.is_err());
    // …so the forger goes around it.
    match database.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            database
                .execute_unprepared(&format!(
                    "BEGIN; SET LOCAL session_replication_role = replica; {forge}; COMMIT"
                ))
                .await
                .expect("forge past the trigger");
        }
        _ => {
            database
                .execute_unprepared(&format!("DROP TRIGGER audit_entries_no_update; {forge}"))
                .await
                .expect("forge past the trigger");
        }
    }
    let _ = database.close().await;
    let broken = verify(client.clone()).await;
    assert!(!broken.intact);
    assert_eq!(broken.first_mismatch, format!("{name}/auditEntries/2"));
    assert!(broken.reason.contains("altered"), "{}", broken.reason);
    // The entry itself shows the forged value; its stored hash no longer matches it.
    let entry = client
        .get_audit_entry(tenantry_proto::audit::v1::GetAuditEntryRequest {
            name: format!("{name}/auditEntries/2"),
        })
        .await
        .expect("get")
        .into_inner()
        .audit_entry
        .expect("entry");
    assert_eq!(to_json(entry.after.as_ref()), json!({"partner": false}));
}

on_both_backends!(
    a_row_altered_in_the_database,
    super::a_row_altered_in_the_database_is_named_by_verify
);
