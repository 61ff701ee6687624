//! The audit service's tables.

use std::time::Duration;

use prost_types::Timestamp;
use tenantry_proto::EventType;
use tenantry_proto::audit::v1 as pb;
use tenantry_testkit::TestCluster;
use tonic::Code;

use super::values::{BAD_TIMESTAMPS, UNKNOWN_ENUMS, bad_user_names, from_now, oversized};
use super::{AU, Case, Tally, World, accepted, code, invalid, named, page_entries};

/// Most event types one listing may filter by.
const MAX_EVENT_TYPES: usize = 32;

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.audit(Some(&world.caller_of(&format!("{AU}/{rpc}"))));
    // The accepted entries read the customer's first entry, which the audit consumer appends
    // asynchronously.
    first_entry(cluster, world).await;

    let audit = client("ListAuditEntries");
    tally
        .run(
            &format!("{AU}/ListAuditEntries"),
            list_audit_entries(world),
            |request| {
                let mut audit = audit.clone();
                async move { audit.list_audit_entries(request).await.map(drop) }
            },
        )
        .await;

    let audit = client("GetAuditEntry");
    tally
        .run(
            &format!("{AU}/GetAuditEntry"),
            get_audit_entry(world),
            |request| {
                let mut audit = audit.clone();
                async move { audit.get_audit_entry(request).await.map(drop) }
            },
        )
        .await;

    // A refused watch fails on open; an accepted one gets its first entry.
    let audit = client("WatchAuditEntries");
    let mut cases = named("parent", |parent| pb::WatchAuditEntriesRequest {
        parent,
        after_sequence: 0,
    });
    for (what, after_sequence) in [("-1", -1), ("i64::MIN", i64::MIN)] {
        cases.push(invalid(
            format!("after_sequence {what}"),
            "after_sequence",
            pb::WatchAuditEntriesRequest {
                parent: world.customer.clone(),
                after_sequence,
            },
        ));
    }
    cases.push(accepted(
        "after_sequence 0 (from the first entry)",
        pb::WatchAuditEntriesRequest {
            parent: world.customer.clone(),
            after_sequence: 0,
        },
    ));
    tally
        .run(&format!("{AU}/WatchAuditEntries"), cases, |request| {
            let mut audit = audit.clone();
            async move {
                let mut stream = audit.watch_audit_entries(request).await?.into_inner();
                stream.message().await.map(drop)
            }
        })
        .await;

    let audit = client("VerifyAuditChain");
    let mut cases = named("parent", |parent| pb::VerifyAuditChainRequest { parent });
    cases.push(accepted(
        "the customer's log",
        pb::VerifyAuditChainRequest {
            parent: world.customer.clone(),
        },
    ));
    tally
        .run(&format!("{AU}/VerifyAuditChain"), cases, |request| {
            let mut audit = audit.clone();
            async move { audit.verify_audit_chain(request).await.map(drop) }
        })
        .await;

    let audit = client("PurgeAuditEntries");
    tally
        .run(
            &format!("{AU}/PurgeAuditEntries"),
            purge_audit_entries(),
            |request| {
                let mut audit = audit.clone();
                async move { audit.purge_audit_entries(request).await.map(drop) }
            },
        )
        .await;
}

/// Waits until the customer's log holds entry 1 (asked as the operator).
async fn first_entry(cluster: &TestCluster, world: &World) {
    let name = format!("{}/auditEntries/1", world.customer);
    let mut audit = cluster.audit_as(&world.operator);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match audit
            .get_audit_entry(pb::GetAuditEntryRequest { name: name.clone() })
            .await
        {
            Ok(_) => return,
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => panic!("GetAuditEntry {name} as the operator: {status:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the audit log never got {name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn list_audit_entries(world: &World) -> Vec<Case<pb::ListAuditEntriesRequest>> {
    let base = || pb::ListAuditEntriesRequest {
        parent: world.customer.clone(),
        ..Default::default()
    };
    let mut cases = named("parent", |parent| pb::ListAuditEntriesRequest {
        parent,
        ..base()
    });

    let known: Vec<String> = EventType::ALL
        .into_iter()
        .map(|event_type| event_type.as_str().to_string())
        .collect();
    let types =
        |count: usize| -> Vec<String> { known.iter().cycle().take(count).cloned().collect() };
    for (what, field, event_types) in [
        (
            "an unknown type",
            "event_types[0]",
            vec!["account.renamed".to_string()],
        ),
        ("empty", "event_types[0]", vec![String::new()]),
        (
            "upper case",
            "event_types[0]",
            vec!["Account.Updated".to_string()],
        ),
        (
            "a wildcard",
            "event_types[0]",
            vec!["account.*".to_string()],
        ),
        (
            "trailing newline",
            "event_types[0]",
            vec!["account.updated\n".to_string()],
        ),
        (
            "an unknown type after a known one",
            "event_types[1]",
            vec!["account.updated".to_string(), "member.renamed".to_string()],
        ),
        (
            "one type too many",
            "event_types",
            types(MAX_EVENT_TYPES + 1),
        ),
    ] {
        cases.push(invalid(
            format!("event_types: {what}"),
            field,
            pb::ListAuditEntriesRequest {
                event_types,
                ..base()
            },
        ));
    }
    cases.push(accepted(
        format!("event_types: {MAX_EVENT_TYPES} known types"),
        pb::ListAuditEntriesRequest {
            event_types: types(MAX_EVENT_TYPES),
            ..base()
        },
    ));

    // An empty actor is no filter: every other malformed user name is a bad actor.
    let bad_actors = bad_user_names()
        .into_iter()
        .filter(|(what, _)| *what != "empty")
        .chain([
            ("a people/ name", "people/x".to_string()),
            ("service collection only", "services/".to_string()),
            (
                "slash in the service name",
                "services/invitation/x".to_string(),
            ),
            (
                "a service name with a NUL",
                "services/invi\u{0}tation".to_string(),
            ),
        ]);
    for (what, actor) in bad_actors {
        cases.push(invalid(
            format!("actor: {what}"),
            "actor",
            pb::ListAuditEntriesRequest { actor, ..base() },
        ));
    }
    for (what, actor) in [
        ("a user", "users/erin".to_string()),
        ("a service", "services/invitation".to_string()),
    ] {
        cases.push(accepted(
            format!("actor: {what}"),
            pb::ListAuditEntriesRequest { actor, ..base() },
        ));
    }

    for (what, resource) in [
        ("a bare member name", "members/x"),
        ("collection only", "accounts/"),
        ("collection without slash", "accounts"),
        ("empty account", "accounts//members/x"),
        ("a user name", "users/erin"),
        ("a NUL byte", "accounts/acme/members/a\u{0}b"),
        ("a line break", "accounts/acme/members/a\nb"),
    ] {
        cases.push(invalid(
            format!("resource: {what}"),
            "resource",
            pb::ListAuditEntriesRequest {
                resource: resource.to_string(),
                ..base()
            },
        ));
    }
    cases.push(invalid(
        "resource: longer than 512 characters",
        "resource",
        pb::ListAuditEntriesRequest {
            resource: format!("accounts/acme/members/{}", "x".repeat(600)),
            ..base()
        },
    ));
    cases.push(accepted(
        "resource: a member of the customer",
        pb::ListAuditEntriesRequest {
            resource: world.member.clone(),
            ..base()
        },
    ));

    for (what, seconds, nanos) in BAD_TIMESTAMPS {
        let time = Some(Timestamp { seconds, nanos });
        cases.push(invalid(
            format!("start_time: {what}"),
            "start_time",
            pb::ListAuditEntriesRequest {
                start_time: time,
                ..base()
            },
        ));
        cases.push(invalid(
            format!("end_time: {what}"),
            "end_time",
            pb::ListAuditEntriesRequest {
                end_time: time,
                ..base()
            },
        ));
    }
    cases.push(invalid(
        "end_time a second before start_time",
        "end_time",
        pb::ListAuditEntriesRequest {
            start_time: Some(from_now(-3600)),
            end_time: Some(from_now(-3601)),
            ..base()
        },
    ));
    let instant = from_now(-3600);
    cases.push(accepted(
        "end_time equal to start_time (an empty range)",
        pb::ListAuditEntriesRequest {
            start_time: Some(instant),
            end_time: Some(instant),
            ..base()
        },
    ));

    cases.extend(page_entries(
        |page_size, page_token| pb::ListAuditEntriesRequest {
            page_size,
            page_token,
            ..base()
        },
        &world.foreign_token,
    ));

    for (what, order) in UNKNOWN_ENUMS {
        cases.push(invalid(
            format!("order {what}"),
            "order",
            pb::ListAuditEntriesRequest { order, ..base() },
        ));
    }
    cases.push(accepted(
        "order ORDER_OLDEST_FIRST",
        pb::ListAuditEntriesRequest {
            order: pb::Order::OldestFirst as i32,
            ..base()
        },
    ));

    // audit.proto: an account that manages no customer lists that account alone.
    cases.push(accepted(
        "include_customers for an account that is not a partner",
        pb::ListAuditEntriesRequest {
            include_customers: true,
            ..base()
        },
    ));
    cases.push(accepted(
        "include_customers for the partner",
        pb::ListAuditEntriesRequest {
            parent: world.partner.clone(),
            include_customers: true,
            ..base()
        },
    ));
    cases
}

fn get_audit_entry(world: &World) -> Vec<Case<pb::GetAuditEntryRequest>> {
    let entries = format!("{}/auditEntries", world.customer);
    let mut names: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("bare collection", "auditEntries/1".to_string()),
        ("account only", world.customer.clone()),
        (
            "upper-case account",
            "accounts/GLOBEX/auditEntries/1".to_string(),
        ),
        (
            "account breaking the identifier rules",
            "accounts/glo--bex/auditEntries/1".to_string(),
        ),
        ("wrong collection", format!("{}/members/1", world.customer)),
        (
            "singular collection",
            format!("{}/auditEntry/1", world.customer),
        ),
        (
            "upper-case collection",
            format!("{}/AuditEntries/1", world.customer),
        ),
        ("collection without slash", entries.clone()),
    ];
    for (what, sequence) in [
        ("collection only", String::new()),
        ("sequence 0", "0".to_string()),
        ("sequence -1", "-1".to_string()),
        ("sequence +1", "+1".to_string()),
        ("leading zero", "01".to_string()),
        ("not a number", "abc".to_string()),
        ("beyond i64", "99999999999999999999".to_string()),
        ("trailing segment", "1/x".to_string()),
        ("leading space", " 1".to_string()),
        ("trailing newline", "1\n".to_string()),
        ("fullwidth digit", "\u{ff11}".to_string()),
        ("Arabic-Indic digit", "\u{0661}".to_string()),
        ("10,000 digits", "9".repeat(10_000)),
    ] {
        names.push((what, format!("{entries}/{sequence}")));
    }
    let mut cases: Vec<Case<pb::GetAuditEntryRequest>> = names
        .into_iter()
        .map(|(what, name)| {
            invalid(
                format!("name: {what}"),
                "name",
                pb::GetAuditEntryRequest { name },
            )
        })
        .collect();
    cases.push(code(
        "name: oversized request",
        Code::ResourceExhausted,
        pb::GetAuditEntryRequest {
            name: format!("{entries}/{}", oversized()),
        },
    ));
    for (what, name) in [
        (
            "name: a sequence number the log does not reach",
            format!("{entries}/999999"),
        ),
        (
            "name: the largest sequence number",
            format!("{entries}/{}", i64::MAX),
        ),
        (
            "name: an entry of an account that does not exist",
            "accounts/no-such-account/auditEntries/1".to_string(),
        ),
    ] {
        cases.push(code(
            what,
            Code::NotFound,
            pb::GetAuditEntryRequest { name },
        ));
    }
    cases.push(accepted(
        "name: the customer's first entry",
        pb::GetAuditEntryRequest {
            name: format!("{entries}/1"),
        },
    ));
    cases
}

fn purge_audit_entries() -> Vec<Case<pb::PurgeAuditEntriesRequest>> {
    const HOUR: i64 = 3600;
    let mut cases = vec![invalid(
        "before_time missing",
        "before_time",
        pb::PurgeAuditEntriesRequest { before_time: None },
    )];
    for (what, seconds) in [
        ("an hour ago", -HOUR),
        ("a minute short of 24 hours ago", -24 * HOUR + 60),
        ("now", 0),
        ("tomorrow", 24 * HOUR),
    ] {
        cases.push(invalid(
            format!("before_time {what}"),
            "before_time",
            pb::PurgeAuditEntriesRequest {
                before_time: Some(from_now(seconds)),
            },
        ));
    }
    for (what, seconds, nanos) in BAD_TIMESTAMPS {
        cases.push(invalid(
            format!("before_time: {what}"),
            "before_time",
            pb::PurgeAuditEntriesRequest {
                before_time: Some(Timestamp { seconds, nanos }),
            },
        ));
    }
    // The corpus's cluster is minutes old: these purge nothing.
    for (what, seconds) in [
        ("25 hours ago", -25 * HOUR),
        ("30 days ago", -30 * 24 * HOUR),
    ] {
        cases.push(accepted(
            format!("before_time {what}"),
            pb::PurgeAuditEntriesRequest {
                before_time: Some(from_now(seconds)),
            },
        ));
    }
    cases
}
