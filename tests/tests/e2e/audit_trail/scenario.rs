//! The scripted calls of the audit trail test: every mutating RPC of the four services, in an
//! order where each has what it needs, with the entries each must produce.

use serde_json::{Value, json};
use tenantry_proto::invitation::v1 as inv;
use tenantry_proto::membership::v1 as mem;
use tenantry_proto::notification::v1 as note;
use tenantry_proto::registry::v1 as reg;
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Request;

/// One entry a call must produce.
#[derive(Clone, Debug)]
pub(super) struct Expected {
    pub(super) event_type: &'static str,
    pub(super) account: String,
    pub(super) actor: String,
    /// Exactly these changed fields before…
    pub(super) before: Value,
    /// …and after; `None` in a value's place means "present, any value" (times).
    pub(super) after: Value,
    pub(super) actor_role: &'static str,
    /// The resource changed, when the entry must name it (`None`: not checked).
    pub(super) resource: Option<String>,
}

impl Expected {
    /// The same entry, which must name `resource` as the resource changed.
    fn on(self, resource: &str) -> Self {
        Self {
            resource: Some(resource.to_string()),
            ..self
        }
    }
}

/// One scripted call: the RPC, its request id, and the entries it must produce.
pub(super) struct Step {
    pub(super) rpc: &'static str,
    pub(super) request_id: String,
    pub(super) expected: Vec<Expected>,
}

/// The trace every scripted call belongs to (the caller's `traceparent`).
pub(super) const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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

/// A day, in seconds.
const DAY: i64 = 86_400;

/// A timestamp as the audit log records it: RFC 3339 in UTC with microseconds.
fn rfc3339(time: &prost_types::Timestamp) -> String {
    let whole = prost_types::Timestamp {
        seconds: time.seconds,
        nanos: 0,
    }
    .to_string();
    format!(
        "{}.{:06}Z",
        whole.trim_end_matches('Z'),
        time.nanos.clamp(0, 999_999_999) / 1_000
    )
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
        resource: None,
    }
}

/// Runs every mutating RPC once (some twice), in an order where each has what it needs.
pub(super) async fn scenario(cluster: &TestCluster) -> (Vec<Step>, String, String) {
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

    // For a day: the membership is time-bound, so its entry records when it ends.
    let id = rid("AddMyself");
    let alice_member = cluster
        .membership_as(&alice)
        .add_myself(with_id(
            mem::AddMyselfRequest {
                account: format!("accounts/{customer}"),
                access_duration: Some(prost_types::Duration {
                    seconds: DAY,
                    nanos: 0,
                }),
            },
            &id,
        ))
        .await
        .expect("AddMyself")
        .into_inner()
        .member
        .expect("member");
    let alice_ends = alice_member.expire_time.expect("a time-bound membership");
    steps.push(Step {
        rpc: "AddMyself",
        request_id: id,
        expected: vec![expected(
            "member.added",
            &customer,
            &alice,
            "PARTNER_OWNER",
            json!({}),
            json!({"role": "ADMIN", "source": "SELF_ASSIGNED", "user": alice.resource_name(),
                   "expire_time": rfc3339(&alice_ends)}),
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

    // Bob, an ADMIN of the customer now, gives alice a day more (she may not herself).
    let later = prost_types::Timestamp {
        seconds: alice_ends.seconds + DAY,
        nanos: alice_ends.nanos,
    };
    let id = rid("ExtendMemberAccess");
    cluster
        .membership_as(&bob)
        .extend_member_access(with_id(
            mem::ExtendMemberAccessRequest {
                name: alice_member.name.clone(),
                expire_time: Some(later),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("ExtendMemberAccess");
    steps.push(Step {
        rpc: "ExtendMemberAccess",
        request_id: id,
        expected: vec![expected(
            "member.updated",
            &customer,
            &bob,
            "ADMIN",
            json!({"expire_time": rfc3339(&alice_ends)}),
            json!({"expire_time": rfc3339(&later)}),
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

    // Access governance. Two more ADMINs of the customer to approve (set up by the operator,
    // not scripted: AddMember is above).
    let hank = TestUser::new("hank");
    let ivan = TestUser::new("ivan");
    for admin in [&hank, &ivan] {
        tenantry_e2e::add_member(
            cluster,
            &ops,
            &format!("accounts/{customer}"),
            admin,
            mem::Role::Admin,
        )
        .await
        .expect("the operator adds an ADMIN");
    }
    let policy_name = format!("accounts/{customer}/accessPolicy");
    let set_policy = |required_approvals: i32, request_lifetime: Option<i64>, id: String| {
        let mut client = cluster.membership_as(&ops);
        let name = policy_name.clone();
        async move {
            client
                .update_access_policy(with_id(
                    mem::UpdateAccessPolicyRequest {
                        policy: Some(mem::AccessPolicy {
                            name,
                            gated_grants: vec![mem::GatedGrant::OwnerRole as i32],
                            required_approvals,
                            request_lifetime: request_lifetime
                                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
                            ..Default::default()
                        }),
                    },
                    &id,
                ))
                .await
                .expect("UpdateAccessPolicy")
        }
    };
    // The first policy: what changed from the policy of an account that never set one (no
    // gated grants, every field unset); then a stricter one.
    let id = rid("UpdateAccessPolicy");
    set_policy(2, None, id.clone()).await;
    steps.push(Step {
        rpc: "UpdateAccessPolicy",
        request_id: id,
        expected: vec![
            expected(
                "access_policy.updated",
                &customer,
                &ops,
                "OPERATOR",
                json!({"gated_grants": [], "required_approvals": 0}),
                json!({"gated_grants": ["OWNER_ROLE"], "required_approvals": 2}),
            )
            .on(&policy_name),
        ],
    });
    let id = rid("UpdateAccessPolicy");
    set_policy(3, Some(2 * DAY), id.clone()).await;
    steps.push(Step {
        rpc: "UpdateAccessPolicy",
        request_id: id,
        expected: vec![
            expected(
                "access_policy.updated",
                &customer,
                &ops,
                "OPERATOR",
                json!({"required_approvals": 2, "request_lifetime": ""}),
                json!({"required_approvals": 3, "request_lifetime": format!("{}s", 2 * DAY)}),
            )
            .on(&policy_name),
        ],
    });

    // Alice (ADMIN) asks ADMIN for erin, for jill and for kim: three approvals each.
    let ask = |subject: &TestUser, reason: &'static str, id: String| {
        let mut client = cluster.membership_as(&alice);
        let parent = format!("accounts/{customer}");
        let subject = subject.resource_name();
        async move {
            client
                .create_access_request(with_id(
                    mem::CreateAccessRequestRequest {
                        parent,
                        access_request: Some(mem::AccessRequest {
                            subject,
                            role: mem::Role::Admin as i32,
                            reason: reason.into(),
                            ..Default::default()
                        }),
                    },
                    &id,
                ))
                .await
                .expect("CreateAccessRequest")
                .into_inner()
                .access_request
                .expect("access request")
        }
    };
    let created = |subject: &TestUser, reason: &str, name: &str, id: String| Step {
        rpc: "CreateAccessRequest",
        request_id: id,
        expected: vec![
            expected(
                "access_request.created",
                &customer,
                &alice,
                "ADMIN",
                json!({}),
                json!({"subject": subject.resource_name(), "role": "ADMIN", "reason": reason,
                       "access_duration": "", "state": "PENDING",
                       "requester": alice.resource_name(), "approvals": [alice.resource_name()],
                       "required_approvals": 3, "escalated": false, "decided_by": "",
                       "decline_reason": ""}),
            )
            .on(name),
        ],
    };
    let mut requests = Vec::new();
    for (subject, reason) in [
        (&erin, "Erin runs the on-call rota."),
        (&TestUser::new("jill"), "Jill covers for Erin."),
        (&TestUser::new("kim"), "Kim audits the quarter."),
    ] {
        let id = rid("CreateAccessRequest");
        let request = ask(subject, reason, id.clone()).await;
        steps.push(created(subject, reason, &request.name, id));
        requests.push(request.name);
    }
    let [for_erin, for_jill, for_kim] = <[String; 3]>::try_from(requests).expect("three");

    let approve = |approver: &TestUser, name: String, id: String| {
        let mut client = cluster.membership_as(approver);
        async move {
            client
                .approve_access_request(with_id(
                    mem::ApproveAccessRequestRequest {
                        name,
                        etag: String::new(),
                    },
                    &id,
                ))
                .await
                .expect("ApproveAccessRequest")
        }
    };
    // Hank's approval is the second of three: it records itself, nothing is granted.
    let id = rid("ApproveAccessRequest");
    approve(&hank, for_erin.clone(), id.clone()).await;
    steps.push(Step {
        rpc: "ApproveAccessRequest",
        request_id: id,
        expected: vec![
            expected(
                "access_request.approved",
                &customer,
                &hank,
                "ADMIN",
                json!({"approvals": [alice.resource_name()]}),
                json!({"approvals": [alice.resource_name(), hank.resource_name()]}),
            )
            .on(&for_erin),
        ],
    });
    // Ivan's is the last: the request is APPROVED and erin made ADMIN by the same call — two
    // entries, the approval and the grant.
    let id = rid("ApproveAccessRequest");
    approve(&ivan, for_erin.clone(), id.clone()).await;
    steps.push(Step {
        rpc: "ApproveAccessRequest",
        request_id: id,
        expected: vec![
            expected(
                "access_request.approved",
                &customer,
                &ivan,
                "ADMIN",
                json!({"approvals": [alice.resource_name(), hank.resource_name()],
                       "state": "PENDING", "decided_by": ""}),
                json!({"approvals": [alice.resource_name(), hank.resource_name(),
                                     ivan.resource_name()],
                       "state": "APPROVED", "decided_by": ivan.resource_name()}),
            )
            .on(&for_erin),
            expected(
                "member.updated",
                &customer,
                &ivan,
                "ADMIN",
                json!({"role": "EMPLOYEE"}),
                json!({"role": "ADMIN"}),
            )
            .on(&format!("accounts/{customer}/members/{}", erin.sub)),
        ],
    });

    let id = rid("DeclineAccessRequest");
    cluster
        .membership_as(&hank)
        .decline_access_request(with_id(
            mem::DeclineAccessRequestRequest {
                name: for_jill.clone(),
                reason: "Jill starts next month.".into(),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("DeclineAccessRequest");
    steps.push(Step {
        rpc: "DeclineAccessRequest",
        request_id: id,
        expected: vec![
            expected(
                "access_request.declined",
                &customer,
                &hank,
                "ADMIN",
                json!({"state": "PENDING", "decided_by": "", "decline_reason": ""}),
                json!({"state": "DECLINED", "decided_by": hank.resource_name(),
                       "decline_reason": "Jill starts next month."}),
            )
            .on(&for_jill),
        ],
    });

    let id = rid("CancelAccessRequest");
    cluster
        .membership_as(&alice)
        .cancel_access_request(with_id(
            mem::CancelAccessRequestRequest {
                name: for_kim.clone(),
                etag: String::new(),
            },
            &id,
        ))
        .await
        .expect("CancelAccessRequest");
    steps.push(Step {
        rpc: "CancelAccessRequest",
        request_id: id,
        expected: vec![
            expected(
                "access_request.cancelled",
                &customer,
                &alice,
                "ADMIN",
                json!({"state": "PENDING", "decided_by": ""}),
                json!({"state": "CANCELLED", "decided_by": alice.resource_name()}),
            )
            .on(&for_kim),
        ],
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
