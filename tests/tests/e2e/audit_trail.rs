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
use tenantry_proto::invitation::v1 as inv;
use tenantry_proto::membership::v1 as mem;
use tenantry_proto::notification::v1 as note;
use tenantry_proto::registry::v1 as reg;
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, on_both_backends, postgres_or_skip,
};
use tonic::Request;

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

/// One entry a call must produce.
#[derive(Clone, Debug)]
struct Expected {
    event_type: &'static str,
    account: String,
    actor: String,
    /// Exactly these changed fields before…
    before: Value,
    /// …and after; `None` in a value's place means "present, any value" (times).
    after: Value,
    actor_role: &'static str,
}

/// One scripted call: the RPC, its request id, and the entries it must produce.
struct Step {
    rpc: &'static str,
    request_id: String,
    expected: Vec<Expected>,
}

/// The trace every scripted call belongs to (the caller's `traceparent`).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn with_id<T>(message: T, request_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("ascii"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    request
}

fn expected(
    event_type: &'static str,
    account: &str,
    actor: &TestUser,
    actor_role: &'static str,
    before: Value,
    after: Value,
) -> Expected {
    Expected {
        event_type,
        account: format!("accounts/{account}"),
        actor: actor.resource_name(),
        before,
        after,
        actor_role,
    }
}

/// Runs every mutating RPC once (some twice), in an order where each has what it needs.
async fn scenario(cluster: &TestCluster) -> (Vec<Step>, String, String) {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let partner = format!("ap-{suffix}");
    let customer = format!("cu-{suffix}");
    let ops = TestUser::operator("ops");
    let alice = TestUser::new("alice");
    let bob = TestUser::new("bob");
    let dave = TestUser::new("dave");
    let erin = TestUser::new("erin");
    let mut steps = Vec::new();
    let mut n = 0;
    let mut rid = |rpc: &str| {
        n += 1;
        format!("audit-{suffix}-{n}-{rpc}")
    };
    let registry = |user: &TestUser| cluster.registry_as(user);

    let id = rid("CreateAccount");
    registry(&ops)
        .create_account(with_id(
            reg::CreateAccountRequest {
                account_id: partner.clone(),
                display_name: "Audit Partner".into(),
                request_id: String::new(),
            },
            &id,
        ))
        .await
        .expect("CreateAccount");
    steps.push(Step {
        rpc: "CreateAccount",
        request_id: id,
        expected: vec![expected(
            "account.created",
            &partner,
            &ops,
            "OPERATOR",
            json!({}),
            json!({"display_name": "Audit Partner", "managed_by": "", "partner": false, "state": "ACTIVE"}),
        )],
    });

    let id = rid("PromoteToPartner");
    registry(&ops)
        .promote_to_partner(with_id(
            reg::PromoteToPartnerRequest {
                name: format!("accounts/{partner}"),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("PromoteToPartner");
    steps.push(Step {
        rpc: "PromoteToPartner",
        request_id: id,
        expected: vec![expected(
            "account.promoted_to_partner",
            &partner,
            &ops,
            "OPERATOR",
            json!({"partner": false}),
            json!({"partner": true}),
        )],
    });

    let id = rid("AddMember");
    cluster
        .membership_as(&ops)
        .add_member(with_id(
            mem::AddMemberRequest {
                parent: format!("accounts/{partner}"),
                principal: Some(mem::add_member_request::Principal::User(
                    alice.resource_name(),
                )),
                role: mem::Role::Owner as i32,
                ..Default::default()
            },
            &id,
        ))
        .await
        .expect("AddMember");
    steps.push(Step {
        rpc: "AddMember",
        request_id: id,
        expected: vec![expected(
            "member.added",
            &partner,
            &ops,
            "OPERATOR",
            json!({}),
            json!({"role": "OWNER", "source": "DIRECT", "user": alice.resource_name()}),
        )],
    });

    let id = rid("CreateManagedCustomer");
    registry(&alice)
        .create_managed_customer(with_id(
            reg::CreateManagedCustomerRequest {
                parent: format!("accounts/{partner}"),
                customer_id: customer.clone(),
                display_name: "Audit Customer".into(),
                request_id: String::new(),
            },
            &id,
        ))
        .await
        .expect("CreateManagedCustomer");
    steps.push(Step {
        rpc: "CreateManagedCustomer",
        request_id: id,
        expected: vec![expected(
            "account.created",
            &customer,
            &alice,
            "PARTNER_OWNER",
            json!({}),
            json!({"display_name": "Audit Customer", "managed_by": format!("accounts/{partner}"), "partner": false, "state": "ACTIVE"}),
        )],
    });

    let id = rid("UpdateAccount");
    registry(&alice)
        .update_account(with_id(
            reg::UpdateAccountRequest {
                account: Some(reg::Account {
                    name: format!("accounts/{customer}"),
                    display_name: "Audit Customer Ltd".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
            &id,
        ))
        .await
        .expect("UpdateAccount");
    steps.push(Step {
        rpc: "UpdateAccount",
        request_id: id,
        expected: vec![expected(
            "account.updated",
            &customer,
            &alice,
            "PARTNER_OWNER",
            json!({"display_name": "Audit Customer"}),
            json!({"display_name": "Audit Customer Ltd"}),
        )],
    });

    for (rpc, event_type, from, to) in [
        ("DisableAccount", "account.disabled", "ACTIVE", "DISABLED"),
        ("EnableAccount", "account.enabled", "DISABLED", "ACTIVE"),
    ] {
        let id = rid(rpc);
        let name = format!("accounts/{customer}");
        let result = if rpc == "DisableAccount" {
            registry(&alice)
                .disable_account(with_id(
                    reg::DisableAccountRequest {
                        name,
                        etag: String::new(),
                    },
                    &id,
                ))
                .await
                .map(drop)
        } else {
            registry(&alice)
                .enable_account(with_id(
                    reg::EnableAccountRequest {
                        name,
                        etag: String::new(),
                    },
                    &id,
                ))
                .await
                .map(drop)
        };
        result.unwrap_or_else(|status| panic!("{rpc}: {status:?}"));
        steps.push(Step {
            rpc,
            request_id: id,
            expected: vec![expected(
                event_type,
                &customer,
                &alice,
                "PARTNER_OWNER",
                json!({ "state": from }),
                json!({ "state": to }),
            )],
        });
    }

    let id = rid("AddMyself");
    cluster
        .membership_as(&alice)
        .add_myself(with_id(
            mem::AddMyselfRequest {
                account: format!("accounts/{customer}"),
            },
            &id,
        ))
        .await
        .expect("AddMyself");
    steps.push(Step {
        rpc: "AddMyself",
        request_id: id,
        expected: vec![expected(
            "member.added",
            &customer,
            &alice,
            "PARTNER_OWNER",
            json!({}),
            json!({"role": "ADMIN", "source": "SELF_ASSIGNED", "user": alice.resource_name()}),
        )],
    });

    let id = rid("AddMember");
    cluster
        .membership_as(&alice)
        .add_member(with_id(
            mem::AddMemberRequest {
                parent: format!("accounts/{customer}"),
                principal: Some(mem::add_member_request::Principal::User(
                    bob.resource_name(),
                )),
                role: mem::Role::Employee as i32,
                ..Default::default()
            },
            &id,
        ))
        .await
        .expect("AddMember bob");
    steps.push(Step {
        rpc: "AddMember",
        request_id: id,
        expected: vec![expected(
            "member.added",
            &customer,
            &alice,
            "ADMIN",
            json!({}),
            json!({"role": "EMPLOYEE", "source": "DIRECT", "user": bob.resource_name()}),
        )],
    });

    let bob_member = format!("accounts/{customer}/members/{}", bob.sub);
    let id = rid("UpdateMember");
    cluster
        .membership_as(&alice)
        .update_member(with_id(
            mem::UpdateMemberRequest {
                member: Some(mem::Member {
                    name: bob_member.clone(),
                    role: mem::Role::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
            },
            &id,
        ))
        .await
        .expect("UpdateMember");
    steps.push(Step {
        rpc: "UpdateMember",
        request_id: id,
        expected: vec![expected(
            "member.updated",
            &customer,
            &alice,
            "ADMIN",
            json!({"role": "EMPLOYEE"}),
            json!({"role": "ADMIN"}),
        )],
    });

    let id = rid("RemoveMember");
    cluster
        .membership_as(&alice)
        .remove_member(with_id(
            mem::RemoveMemberRequest {
                name: bob_member,
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("RemoveMember");
    steps.push(Step {
        rpc: "RemoveMember",
        request_id: id,
        expected: vec![expected(
            "member.removed",
            &customer,
            &alice,
            "ADMIN",
            json!({"role": "ADMIN", "source": "DIRECT", "user": bob.resource_name()}),
            json!({}),
        )],
    });

    // Invitations: one revoked after a resend, one declined, one accepted.
    let invite = |email: String, id: String| {
        let mut client = cluster.invitation_as(&alice);
        let parent = format!("accounts/{customer}");
        async move {
            client
                .create_invitation(with_id(
                    inv::CreateInvitationRequest {
                        parent,
                        email,
                        role: mem::Role::Employee as i32,
                        ..Default::default()
                    },
                    &id,
                ))
                .await
                .expect("CreateInvitation")
                .into_inner()
                .invitation
                .expect("invitation")
        }
    };
    let created = |email: &str, id: String| Step {
        rpc: "CreateInvitation",
        request_id: id,
        expected: vec![expected(
            "invitation.created",
            &customer,
            &alice,
            "ADMIN",
            json!({}),
            json!({"email": email, "role": "EMPLOYEE", "state": "PENDING", "resend_count": 0,
                   "expire_time": null, "accepted_by": "", "revoked_by": "", "declined_by": ""}),
        )],
    };
    let carol_email = format!("carol-{suffix}@example.com");
    let id = rid("CreateInvitation");
    let carol = invite(carol_email.clone(), id.clone()).await;
    steps.push(created(&carol_email, id));

    let id = rid("ResendInvitation");
    cluster
        .invitation_as(&alice)
        .resend_invitation(with_id(
            inv::ResendInvitationRequest {
                name: carol.name.clone(),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("ResendInvitation");
    steps.push(Step {
        rpc: "ResendInvitation",
        request_id: id,
        expected: vec![expected(
            "invitation.resent",
            &customer,
            &alice,
            "ADMIN",
            json!({"resend_count": 0, "expire_time": null}),
            json!({"resend_count": 1, "expire_time": null}),
        )],
    });

    let id = rid("RevokeInvitation");
    cluster
        .invitation_as(&alice)
        .revoke_invitation(with_id(
            inv::RevokeInvitationRequest {
                name: carol.name.clone(),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("RevokeInvitation");
    steps.push(Step {
        rpc: "RevokeInvitation",
        request_id: id,
        expected: vec![expected(
            "invitation.revoked",
            &customer,
            &alice,
            "ADMIN",
            json!({"state": "PENDING", "revoked_by": ""}),
            json!({"state": "REVOKED", "revoked_by": alice.resource_name()}),
        )],
    });

    let id = rid("CreateInvitation");
    invite(dave.email.clone(), id.clone()).await;
    steps.push(created(&dave.email, id));
    let token = cluster.wait_for_mail_files(&dave.email, 1).await[0]
        .accept_token()
        .expect("dave's link");
    let id = rid("DeclineInvitation");
    cluster
        .invitation_as(&dave)
        .decline_invitation(with_id(inv::DeclineInvitationRequest { token }, &id))
        .await
        .expect("DeclineInvitation");
    steps.push(Step {
        rpc: "DeclineInvitation",
        request_id: id,
        expected: vec![expected(
            "invitation.declined",
            &customer,
            &dave,
            "INVITEE",
            json!({"state": "PENDING", "declined_by": ""}),
            json!({"state": "DECLINED", "declined_by": dave.resource_name()}),
        )],
    });

    let id = rid("CreateInvitation");
    invite(erin.email.clone(), id.clone()).await;
    steps.push(created(&erin.email, id));
    let token = cluster.wait_for_mail_files(&erin.email, 1).await[0]
        .accept_token()
        .expect("erin's link");
    let id = rid("AcceptInvitation");
    cluster
        .invitation_as(&erin)
        .accept_invitation(with_id(inv::AcceptInvitationRequest { token }, &id))
        .await
        .expect("AcceptInvitation");
    steps.push(Step {
        rpc: "AcceptInvitation",
        request_id: id,
        expected: vec![
            expected(
                "invitation.accepted",
                &customer,
                &erin,
                "INVITEE",
                json!({"state": "PENDING", "accepted_by": ""}),
                json!({"state": "ACCEPTED", "accepted_by": erin.resource_name()}),
            ),
            // Membership adds her for the invitation service, which acts for her.
            expected(
                "member.added",
                &customer,
                &erin,
                "INVITEE",
                json!({}),
                json!({"role": "EMPLOYEE", "source": "INVITATION", "user": erin.resource_name()}),
            ),
        ],
    });

    let id = rid("BatchCreateInvitations");
    let (first, second) = (
        format!("fay-{suffix}@example.com"),
        format!("gus-{suffix}@example.com"),
    );
    cluster
        .invitation_as(&alice)
        .batch_create_invitations(with_id(
            inv::BatchCreateInvitationsRequest {
                parent: format!("accounts/{customer}"),
                requests: [&first, &second]
                    .into_iter()
                    .map(|email| inv::CreateInvitationRequest {
                        parent: format!("accounts/{customer}"),
                        email: email.clone(),
                        role: mem::Role::Employee as i32,
                        ..Default::default()
                    })
                    .collect(),
            },
            &id,
        ))
        .await
        .expect("BatchCreateInvitations");
    let mut batch = created(&first, id.clone());
    batch.rpc = "BatchCreateInvitations";
    batch.expected.extend(created(&second, id.clone()).expected);
    steps.push(batch);

    // A message to the customer; erin acknowledges (alice has not: it stays unresolved).
    let id = rid("SendMessage");
    let message = cluster
        .notification_as(&alice)
        .send_message(with_id(
            note::SendMessageRequest {
                parent: format!("accounts/{partner}"),
                title: "Maintenance".into(),
                body: "Sunday 02:00".into(),
                read_policy: note::ReadPolicy::AllMustRead as i32,
                recipients: vec![format!("accounts/{customer}")],
                ..Default::default()
            },
            &id,
        ))
        .await
        .expect("SendMessage")
        .into_inner()
        .message
        .expect("message");
    steps.push(Step {
        rpc: "SendMessage",
        request_id: id,
        expected: vec![expected(
            "message.sent",
            &partner,
            &alice,
            "OWNER",
            json!({}),
            json!({"title": "Maintenance", "body": "Sunday 02:00", "read_policy": "ALL_MUST_READ",
                   "recipients": [format!("accounts/{customer}")], "all_customers": false,
                   "roles": [], "expire_time": ""}),
        )],
    });
    tenantry_e2e::inbox_until(cluster, &erin, "the message", |inbox| {
        inbox.iter().any(|item| item.message == message.name)
    })
    .await;
    let id = rid("AcknowledgeMessage");
    cluster
        .notification_as(&erin)
        .acknowledge_message(with_id(
            note::AcknowledgeMessageRequest {
                name: message.name.clone(),
            },
            &id,
        ))
        .await
        .expect("AcknowledgeMessage");
    steps.push(Step {
        rpc: "AcknowledgeMessage",
        request_id: id,
        expected: vec![expected(
            "message.acknowledged",
            &partner,
            &erin,
            "RECIPIENT",
            json!({}),
            json!({"acknowledged_by": erin.resource_name(), "accounts": [format!("accounts/{customer}")],
                   "acknowledge_time": null}),
        )],
    });

    let id = rid("DeleteAccount");
    registry(&alice)
        .delete_account(with_id(
            reg::DeleteAccountRequest {
                name: format!("accounts/{customer}"),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("DeleteAccount");
    steps.push(Step {
        rpc: "DeleteAccount",
        request_id: id,
        expected: vec![expected(
            "account.deleted",
            &customer,
            &alice,
            "PARTNER_OWNER",
            json!({"state": "ACTIVE"}),
            json!({"state": "DELETED"}),
        )],
    });
    (steps, partner, customer)
}

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
                    && matches(&to_json(entry.before.as_ref()), &want.before)
                    && matches(&to_json(entry.after.as_ref()), &want.after)
            });
            assert!(
                found.is_some(),
                "{}: no entry {} on {} by {} ({}) with before {} after {}; recorded: {:#?}",
                step.rpc,
                want.event_type,
                want.account,
                want.actor,
                want.actor_role,
                want.before,
                want.after,
                got.iter()
                    .map(|e| (
                        &e.event_type,
                        &e.account,
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
