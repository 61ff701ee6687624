//! Membership's tables.

use prost_types::{FieldMask, Timestamp};
use tenantry_proto::membership::v1 as pb;
use tenantry_proto::membership::v1::add_member_request::Principal;
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Code;

use super::values::{
    BAD_DURATIONS, BAD_TIMESTAMPS, DAY, LAST_TIMESTAMP, UNKNOWN_ENUMS, bad_account_names,
    bad_child_names, bad_emails, bad_member_names, bad_request_ids, bad_user_names, from_now,
    oversized, unknown_child,
};
use super::{Case, M, Tally, World, accepted, code, invalid, named, page_entries};

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.membership(Some(&world.caller_of(&format!("{M}/{rpc}"))));

    let membership = client("AddMember");
    tally
        .run(&format!("{M}/AddMember"), add_member(world), |request| {
            let mut membership = membership.clone();
            async move { membership.add_member(request).await.map(drop) }
        })
        .await;

    let membership = client("AddMyself");
    let mut cases = named("account", |account| pb::AddMyselfRequest {
        account,
        ..Default::default()
    });
    // AddMyself answers PERMISSION_DENIED for unknown accounts (no existence leaks to partner
    // people), so the last entry of `named` is that.
    if let Some(unknown) = cases.last_mut() {
        unknown.expect = super::Expect::Code(Code::PermissionDenied);
    }
    cases.extend(access_durations(world));
    tally
        .run(&format!("{M}/AddMyself"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.add_myself(request).await.map(drop) }
        })
        .await;

    let membership = client("GetMember");
    let cases = member_named(world, "name", |name| pb::GetMemberRequest { name });
    tally
        .run(&format!("{M}/GetMember"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.get_member(request).await.map(drop) }
        })
        .await;

    let membership = client("UpdateMember");
    tally
        .run(
            &format!("{M}/UpdateMember"),
            update_member(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.update_member(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("RemoveMember");
    let mut cases = member_named(world, "name", |name| pb::RemoveMemberRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::RemoveMemberRequest {
            name: world.member.clone(),
            etag: "0".into(),
        },
    ));
    tally
        .run(&format!("{M}/RemoveMember"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.remove_member(request).await.map(drop) }
        })
        .await;

    let membership = client("ExtendMemberAccess");
    tally
        .run(
            &format!("{M}/ExtendMemberAccess"),
            extend_member_access(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.extend_member_access(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("ListExpiringMembers");
    tally
        .run(
            &format!("{M}/ListExpiringMembers"),
            list_expiring_members(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.list_expiring_members(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("ListMembers");
    tally
        .run(
            &format!("{M}/ListMembers"),
            list_members(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.list_members(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("ListMyAccounts");
    let mut cases = page_entries(
        |page_size, page_token| pb::ListMyAccountsRequest {
            page_size,
            page_token,
        },
        &world.foreign_token,
    );
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListMyAccountsRequest {
            page_size: 0,
            page_token: oversized(),
        },
    ));
    tally
        .run(&format!("{M}/ListMyAccounts"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.list_my_accounts(request).await.map(drop) }
        })
        .await;

    let membership = client("Authorize");
    tally
        .run(&format!("{M}/Authorize"), authorize(world), |request| {
            let mut membership = membership.clone();
            async move { membership.authorize(request).await.map(drop) }
        })
        .await;

    let membership = client("GetOwnerCapacity");
    let mut capacity = named("account", |account| pb::GetOwnerCapacityRequest { account });
    // An unknown account is an answer (no OWNERs), not an error.
    if let Some(unknown) = capacity.last_mut() {
        unknown.expect = super::Expect::Accepted;
    }
    tally
        .run(&format!("{M}/GetOwnerCapacity"), capacity, |request| {
            let mut membership = membership.clone();
            async move { membership.get_owner_capacity(request).await.map(drop) }
        })
        .await;

    let membership = client("CheckInvitee");
    tally
        .run(
            &format!("{M}/CheckInvitee"),
            check_invitee(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.check_invitee(request).await.map(drop) }
            },
        )
        .await;

    access_governance(cluster, world, tally).await;
}

/// A customer of the world's partner, of its own so that nothing done here reaches the other
/// tables: gus is its ADMIN, and the partner's OWNER asked for ADMIN there for themself
/// (AddMyself's role), so a PENDING access request waits for gus.
struct Governed {
    /// `accounts/{id}`.
    customer: String,
    /// The PENDING request.
    request: String,
}

async fn governed(cluster: &TestCluster, world: &World) -> Governed {
    let customer = tenantry_e2e::create_customer(
        cluster,
        &world.owner,
        &world.partner,
        &tenantry_e2e::fresh_id("governed"),
    )
    .await
    .expect("the partner creates a second customer");
    tenantry_e2e::add_member(
        cluster,
        &world.operator,
        &customer.name,
        &TestUser::new("gus"),
        pb::Role::Admin,
    )
    .await
    .expect("the operator adds gus as ADMIN");
    let request = cluster
        .membership_as(&world.owner)
        .create_access_request(pb::CreateAccessRequestRequest {
            parent: customer.name.clone(),
            access_request: Some(pb::AccessRequest {
                subject: world.owner.resource_name(),
                role: pb::Role::Admin as i32,
                reason: "Quarter-end close.".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("the partner's OWNER asks for access")
        .into_inner()
        .access_request
        .expect("access request");
    Governed {
        customer: customer.name,
        request: request.name,
    }
}

/// The access policies and access requests.
async fn access_governance(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.membership(Some(&world.caller_of(&format!("{M}/{rpc}"))));
    let governed = governed(cluster, world).await;

    let membership = client("GetAccessPolicy");
    let cases = policy_named(world, "name", |name| pb::GetAccessPolicyRequest { name });
    tally
        .run(&format!("{M}/GetAccessPolicy"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.get_access_policy(request).await.map(drop) }
        })
        .await;

    let membership = client("UpdateAccessPolicy");
    tally
        .run(
            &format!("{M}/UpdateAccessPolicy"),
            update_access_policy(world, &governed),
            |request| {
                let mut membership = membership.clone();
                async move { membership.update_access_policy(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("CreateAccessRequest");
    tally
        .run(
            &format!("{M}/CreateAccessRequest"),
            create_access_request(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.create_access_request(request).await.map(drop) }
            },
        )
        .await;

    // The policy in force bounds the duration asked for: the second customer's allows at most
    // a day (the last policy of UpdateAccessPolicy's table), then requires a duration without
    // giving one. Both are checked before the partner OWNER's pending request there matters.
    let governed_asked = |access_duration| pb::CreateAccessRequestRequest {
        parent: governed.customer.clone(),
        access_request: Some(pb::AccessRequest {
            subject: world.owner.resource_name(),
            role: pb::Role::Admin as i32,
            reason: "Quarter-end close.".into(),
            access_duration,
            ..Default::default()
        }),
    };
    let creating = client("CreateAccessRequest");
    let create = |request| {
        let mut membership = creating.clone();
        async move { membership.create_access_request(request).await.map(drop) }
    };
    let updating = client("UpdateAccessPolicy");
    let update = |request| {
        let mut membership = updating.clone();
        async move { membership.update_access_policy(request).await.map(drop) }
    };
    tally
        .run(
            &format!("{M}/CreateAccessRequest"),
            vec![invalid(
                "access_request.access_duration: two days, above the policy's maximum of a day",
                "access_request.access_duration",
                governed_asked(seconds(2 * DAY)),
            )],
            create,
        )
        .await;
    tally
        .run(
            &format!("{M}/UpdateAccessPolicy"),
            vec![accepted(
                "policy: a duration required, with neither a default nor a maximum",
                pb::UpdateAccessPolicyRequest {
                    policy: Some(pb::AccessPolicy {
                        name: format!("{}/accessPolicy", governed.customer),
                        access_duration_required: true,
                        ..Default::default()
                    }),
                },
            )],
            update,
        )
        .await;
    tally
        .run(
            &format!("{M}/CreateAccessRequest"),
            vec![invalid(
                "access_request.access_duration: none, while the policy requires one",
                "access_request.access_duration",
                governed_asked(None),
            )],
            create,
        )
        .await;

    let membership = client("GetAccessRequest");
    let cases = request_named(world, |name| pb::GetAccessRequestRequest { name });
    tally
        .run(&format!("{M}/GetAccessRequest"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.get_access_request(request).await.map(drop) }
        })
        .await;

    let membership = client("ListAccessRequests");
    tally
        .run(
            &format!("{M}/ListAccessRequests"),
            list_access_requests(world),
            |request| {
                let mut membership = membership.clone();
                async move { membership.list_access_requests(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("ListAccessRequestsWaitingForMe");
    let mut cases = page_entries(
        |page_size, page_token| pb::ListAccessRequestsWaitingForMeRequest {
            page_size,
            page_token,
        },
        &world.foreign_token,
    );
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListAccessRequestsWaitingForMeRequest {
            page_size: 0,
            page_token: oversized(),
        },
    ));
    tally
        .run(
            &format!("{M}/ListAccessRequestsWaitingForMe"),
            cases,
            |request| {
                let mut membership = membership.clone();
                async move {
                    membership
                        .list_access_requests_waiting_for_me(request)
                        .await
                        .map(drop)
                }
            },
        )
        .await;

    // Approve, decline and cancel are refused here, never made: the request stays PENDING.
    let membership = client("ApproveAccessRequest");
    let mut cases = request_named(world, |name| pb::ApproveAccessRequestRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::ApproveAccessRequestRequest {
            name: governed.request.clone(),
            etag: "0".into(),
        },
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ApproveAccessRequestRequest {
            name: governed.request.clone(),
            etag: oversized(),
        },
    ));
    tally
        .run(&format!("{M}/ApproveAccessRequest"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.approve_access_request(request).await.map(drop) }
        })
        .await;

    let membership = client("DeclineAccessRequest");
    tally
        .run(
            &format!("{M}/DeclineAccessRequest"),
            decline_access_request(world, &governed),
            |request| {
                let mut membership = membership.clone();
                async move { membership.decline_access_request(request).await.map(drop) }
            },
        )
        .await;

    let membership = client("CancelAccessRequest");
    let mut cases = request_named(world, |name| pb::CancelAccessRequestRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::CancelAccessRequestRequest {
            name: governed.request.clone(),
            etag: "0".into(),
        },
    ));
    tally
        .run(&format!("{M}/CancelAccessRequest"), cases, |request| {
            let mut membership = membership.clone();
            async move { membership.cancel_access_request(request).await.map(drop) }
        })
        .await;
}

/// The entries of a call about an access policy named in `field`
/// (`accounts/{account_id}/accessPolicy`): every malformed account name before the suffix,
/// wrong suffixes, an oversized name, and the policy of an account that does not exist
/// (NOT_FOUND for the operator).
fn policy_named<Req>(world: &World, field: &str, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_account_names()
        .into_iter()
        .map(|(what, name)| {
            invalid(
                format!("{field}: account {what}"),
                field,
                make(format!("{name}/accessPolicy")),
            )
        })
        .collect();
    for (what, name) in [
        ("the account's name", world.customer.clone()),
        (
            "trailing slash",
            format!("{}/accessPolicy/", world.customer),
        ),
        (
            "lower-case collection",
            format!("{}/accesspolicy", world.customer),
        ),
        (
            "plural collection",
            format!("{}/accessPolicies", world.customer),
        ),
        (
            "twice",
            format!("{}/accessPolicy/accessPolicy", world.customer),
        ),
        ("a member's", format!("{}/accessPolicy", world.member)),
    ] {
        cases.push(invalid(format!("{field}: {what}"), field, make(name)));
    }
    cases.push(code(
        format!("{field}: oversized request"),
        Code::ResourceExhausted,
        make(format!("accounts/{}/accessPolicy", oversized())),
    ));
    cases.push(code(
        format!("{field}: the policy of an account that does not exist"),
        Code::NotFound,
        make("accounts/no-such-account/accessPolicy".into()),
    ));
    cases
}

/// A duration of `seconds`.
fn seconds(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// Durations out of the access range (1 minute to 730 days) or no valid Duration at all.
fn bad_access_durations() -> Vec<(&'static str, i64, i32)> {
    [
        ("minus an hour", -3_600, 0),
        ("zero", 0, 0),
        ("59 seconds", 59, 0),
        ("a nanosecond short of a minute", 59, 999_999_999),
        ("731 days", 731 * DAY, 0),
        ("730 days and a second", 730 * DAY + 1, 0),
    ]
    .into_iter()
    .chain(BAD_DURATIONS)
    .collect()
}

fn update_access_policy(
    world: &World,
    governed: &Governed,
) -> Vec<Case<pb::UpdateAccessPolicyRequest>> {
    let policy = |name: &str| pb::AccessPolicy {
        name: format!("{name}/accessPolicy"),
        gated_grants: vec![pb::GatedGrant::OwnerRole as i32],
        required_approvals: 3,
        ..Default::default()
    };
    let base = || policy(&world.customer);
    let update = |policy: pb::AccessPolicy| pb::UpdateAccessPolicyRequest {
        policy: Some(policy),
    };
    let mut cases = vec![invalid(
        "no policy",
        "policy",
        pb::UpdateAccessPolicyRequest { policy: None },
    )];
    cases.extend(policy_named(world, "policy.name", |name| {
        update(pb::AccessPolicy { name, ..base() })
    }));
    for (what, gated_grants) in [
        ("UNSPECIFIED", vec![0]),
        ("UNSPECIFIED after a valid one", vec![1, 0]),
        ("a duplicate", vec![2, 1, 2]),
        ("99", vec![99]),
        ("-1", vec![-1]),
        ("i32::MAX", vec![i32::MAX]),
    ] {
        cases.push(invalid(
            format!("policy.gated_grants: {what}"),
            "policy.gated_grants",
            update(pb::AccessPolicy {
                gated_grants,
                ..base()
            }),
        ));
    }
    for required_approvals in [1, 6, -1, i32::MAX, i32::MIN] {
        cases.push(invalid(
            format!("policy.required_approvals {required_approvals} (2 to 5)"),
            "policy.required_approvals",
            update(pb::AccessPolicy {
                required_approvals,
                ..base()
            }),
        ));
    }
    for (what, secs, nanos) in [
        ("30 minutes", 1_800, 0),
        ("a second short of an hour", 3_599, 0),
        ("91 days", 91 * DAY, 0),
        ("90 days and a second", 90 * DAY + 1, 0),
        ("zero", 0, 0),
        ("minus a day", -DAY, 0),
    ]
    .into_iter()
    .chain(BAD_DURATIONS)
    {
        cases.push(invalid(
            format!("policy.request_lifetime: {what}"),
            "policy.request_lifetime",
            update(pb::AccessPolicy {
                request_lifetime: Some(prost_types::Duration {
                    seconds: secs,
                    nanos,
                }),
                ..base()
            }),
        ));
    }
    for (what, secs, nanos) in bad_access_durations() {
        let duration = Some(prost_types::Duration {
            seconds: secs,
            nanos,
        });
        cases.push(invalid(
            format!("policy.default_access_duration: {what}"),
            "policy.default_access_duration",
            update(pb::AccessPolicy {
                default_access_duration: duration,
                ..base()
            }),
        ));
        cases.push(invalid(
            format!("policy.max_access_duration: {what}"),
            "policy.max_access_duration",
            update(pb::AccessPolicy {
                max_access_duration: duration,
                ..base()
            }),
        ));
    }
    cases.push(invalid(
        "policy.default_access_duration longer than the maximum",
        "policy.default_access_duration",
        update(pb::AccessPolicy {
            default_access_duration: seconds(2 * DAY),
            max_access_duration: seconds(DAY),
            ..base()
        }),
    ));
    for (what, value) in UNKNOWN_ENUMS {
        cases.push(invalid(
            format!("policy.short_of_approvers {what}"),
            "policy.short_of_approvers",
            update(pb::AccessPolicy {
                short_of_approvers: value,
                ..base()
            }),
        ));
    }
    // The world's customer has no policy yet: any etag but the empty one is stale.
    cases.push(code(
        "policy.etag: not the current one",
        Code::Aborted,
        update(pb::AccessPolicy {
            etag: "7".into(),
            ..base()
        }),
    ));
    // The limits themselves are valid: set on the second customer (only its request, made
    // before, is there; a request keeps the approvals of the policy it was made under).
    let governed_policy = || policy(&governed.customer);
    for (what, policy) in [
        (
            "the limits: 5 approvals, a lifetime of 1 hour, durations of 1 minute",
            pb::AccessPolicy {
                required_approvals: 5,
                request_lifetime: seconds(3_600),
                default_access_duration: seconds(60),
                max_access_duration: seconds(60),
                ..governed_policy()
            },
        ),
        (
            "the other limits: 2 approvals, a lifetime of 90 days, durations of 730 days,              every grant gated, escalating",
            pb::AccessPolicy {
                gated_grants: (1..=5).collect(),
                required_approvals: 2,
                request_lifetime: seconds(90 * DAY),
                short_of_approvers: pb::ShortOfApprovers::EscalateToPartnerOwners as i32,
                default_access_duration: seconds(730 * DAY),
                max_access_duration: seconds(730 * DAY),
                access_duration_required: true,
                ..governed_policy()
            },
        ),
        (
            "every field unset (the policy of an account that never set one)",
            pb::AccessPolicy {
                name: format!("{}/accessPolicy", governed.customer),
                ..Default::default()
            },
        ),
        // Last: CreateAccessRequest's table asks for longer there.
        (
            "nothing gated, access for at most a day",
            pb::AccessPolicy {
                name: format!("{}/accessPolicy", governed.customer),
                max_access_duration: seconds(DAY),
                ..Default::default()
            },
        ),
    ] {
        cases.push(accepted(format!("policy: {what}"), update(policy)));
    }
    cases
}

fn create_access_request(world: &World) -> Vec<Case<pb::CreateAccessRequestRequest>> {
    // The partner's OWNER, ADMIN of the customer, asks ADMIN for erin, its EMPLOYEE.
    let asked = || pb::AccessRequest {
        subject: world.employee.resource_name(),
        role: pb::Role::Admin as i32,
        reason: "On call this week.".into(),
        ..Default::default()
    };
    let base = || pb::CreateAccessRequestRequest {
        parent: world.customer.clone(),
        access_request: Some(asked()),
    };
    let with = |access_request: pb::AccessRequest| pb::CreateAccessRequestRequest {
        access_request: Some(access_request),
        ..base()
    };
    let mut cases = named("parent", |parent| pb::CreateAccessRequestRequest {
        parent,
        ..base()
    });
    // Only operators learn that an account does not exist; they never ask for access, and to
    // anyone else an unknown account is PERMISSION_DENIED.
    if let Some(unknown) = cases.last_mut() {
        unknown.expect = super::Expect::Code(Code::PermissionDenied);
    }
    cases.push(invalid(
        "no access_request",
        "access_request",
        pb::CreateAccessRequestRequest {
            access_request: None,
            ..base()
        },
    ));
    cases.push(invalid(
        "access_request: neither subject nor subject_email",
        "access_request.subject",
        with(pb::AccessRequest {
            subject: String::new(),
            ..asked()
        }),
    ));
    cases.push(invalid(
        "access_request: both subject and subject_email",
        "access_request.subject",
        with(pb::AccessRequest {
            subject_email: world.employee.email.clone(),
            ..asked()
        }),
    ));
    for (what, subject) in bad_user_names() {
        cases.push(invalid(
            format!("access_request.subject: {what}"),
            "access_request.subject",
            with(pb::AccessRequest { subject, ..asked() }),
        ));
    }
    // An empty address with no subject is "neither" (above).
    for (what, subject_email) in bad_emails()
        .into_iter()
        .filter(|(what, _)| *what != "empty")
    {
        cases.push(invalid(
            format!("access_request.subject_email: {what}"),
            "access_request.subject_email",
            with(pb::AccessRequest {
                subject: String::new(),
                subject_email,
                ..asked()
            }),
        ));
    }
    cases.push(code(
        "access_request.subject_email: an address no known user has",
        Code::NotFound,
        with(pb::AccessRequest {
            subject: String::new(),
            subject_email: "nobody@example.com".into(),
            ..asked()
        }),
    ));
    for (what, role) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("access_request.role {what}"),
            "access_request.role",
            with(pb::AccessRequest { role, ..asked() }),
        ));
    }
    for (what, reason) in [
        ("empty", String::new()),
        ("blank", " \n\t ".to_string()),
        ("501 characters", "x".repeat(501)),
        ("501 two-byte characters", "ü".repeat(501)),
        ("10,000 characters", "x".repeat(10_000)),
        ("NUL", "On\u{0} call".to_string()),
        ("escape sequence", "\u{1b}[31mOn call".to_string()),
        ("zero-width space", "On\u{200b}call".to_string()),
        ("byte-order mark", "\u{feff}On call".to_string()),
        (
            "right-to-left override",
            "On call \u{202e}kew siht".to_string(),
        ),
    ] {
        cases.push(invalid(
            format!("access_request.reason: {what}"),
            "access_request.reason",
            with(pb::AccessRequest { reason, ..asked() }),
        ));
    }
    for (what, secs, nanos) in bad_access_durations() {
        cases.push(invalid(
            format!("access_request.access_duration: {what}"),
            "access_request.access_duration",
            with(pb::AccessRequest {
                access_duration: Some(prost_types::Duration {
                    seconds: secs,
                    nanos,
                }),
                ..asked()
            }),
        ));
    }
    // Valid input, refused for what the account lacks: in the world's customer nobody but
    // the requester may approve a grant of ADMIN.
    cases.push(code(
        "access_request.reason: 500 characters, the longest, over lines (no one else may \
         approve: NOT_ENOUGH_APPROVERS)",
        Code::FailedPrecondition,
        with(pb::AccessRequest {
            reason: format!("{}\n{}", "x".repeat(250), "y".repeat(249)),
            ..asked()
        }),
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        with(pb::AccessRequest {
            reason: oversized(),
            ..asked()
        }),
    ));
    cases
}

/// The entries of a call about one access request: every malformed name, an oversized one, and
/// well-formed names of requests that do not exist (NOT_FOUND for the operator).
fn request_named<Req>(world: &World, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_child_names(&world.customer, "accessRequests")
        .into_iter()
        .map(|(what, name)| invalid(format!("name: {what}"), "name", make(name)))
        .collect();
    cases.push(code(
        "name: oversized request",
        Code::ResourceExhausted,
        make(format!("{}/accessRequests/{}", world.customer, oversized())),
    ));
    cases.push(code(
        "name: a request that does not exist",
        Code::NotFound,
        make(unknown_child(&world.customer, "accessRequests")),
    ));
    cases.push(code(
        "name: a request of an account that does not exist",
        Code::NotFound,
        make(unknown_child("accounts/no-such-account", "accessRequests")),
    ));
    cases
}

fn list_access_requests(world: &World) -> Vec<Case<pb::ListAccessRequestsRequest>> {
    let mut cases = named("parent", |parent| pb::ListAccessRequestsRequest {
        parent,
        ..Default::default()
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListAccessRequestsRequest {
            parent: world.customer.clone(),
            page_size,
            page_token,
            ..Default::default()
        },
        &world.foreign_token,
    ));
    for (what, states) in [
        ("UNSPECIFIED", vec![0]),
        ("99 after a valid one", vec![1, 99]),
        ("-1", vec![-1]),
        ("i32::MAX", vec![i32::MAX]),
    ] {
        cases.push(invalid(
            format!("states {what}"),
            "states",
            pb::ListAccessRequestsRequest {
                parent: world.customer.clone(),
                states,
                ..Default::default()
            },
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListAccessRequestsRequest {
            parent: world.customer.clone(),
            page_token: oversized(),
            ..Default::default()
        },
    ));
    cases
}

fn decline_access_request(
    world: &World,
    governed: &Governed,
) -> Vec<Case<pb::DeclineAccessRequestRequest>> {
    let base = || pb::DeclineAccessRequestRequest {
        name: governed.request.clone(),
        reason: "Not this quarter.".into(),
        etag: String::new(),
    };
    let mut cases = request_named(world, |name| pb::DeclineAccessRequestRequest {
        name,
        ..base()
    });
    for (what, reason) in [
        ("501 characters", "x".repeat(501)),
        ("501 two-byte characters", "ü".repeat(501)),
        ("10,000 characters", "x".repeat(10_000)),
        ("NUL", "Not\u{0} now".to_string()),
        ("escape sequence", "\u{1b}[31mNot now".to_string()),
        ("zero-width space", "Not\u{200b}now".to_string()),
        ("right-to-left override", "Not \u{202e}won".to_string()),
    ] {
        cases.push(invalid(
            format!("reason: {what}"),
            "reason",
            pb::DeclineAccessRequestRequest { reason, ..base() },
        ));
    }
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::DeclineAccessRequestRequest {
            etag: "0".into(),
            ..base()
        },
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::DeclineAccessRequestRequest {
            reason: oversized(),
            ..base()
        },
    ));
    cases
}

fn check_invitee(world: &World) -> Vec<Case<pb::CheckInviteeRequest>> {
    let base = || pb::CheckInviteeRequest {
        account: world.customer.clone(),
        email: "newcomer@example.com".into(),
        role: pb::Role::Admin as i32,
    };
    let mut cases = named("account", |account| pb::CheckInviteeRequest {
        account,
        ..base()
    });
    // An unknown account is an answer (no members, no OWNERs), not an error, as for
    // GetOwnerCapacity.
    if let Some(unknown) = cases.last_mut() {
        unknown.expect = super::Expect::Accepted;
    }
    for (what, email) in bad_emails() {
        cases.push(invalid(
            format!("email: {what}"),
            "email",
            pb::CheckInviteeRequest { email, ..base() },
        ));
    }
    cases.push(invalid(
        "role: unknown value",
        "role",
        pb::CheckInviteeRequest { role: 99, ..base() },
    ));
    cases.push(code(
        "email: oversized request",
        Code::ResourceExhausted,
        pb::CheckInviteeRequest {
            email: format!("{}@example.com", oversized()),
            ..base()
        },
    ));
    // The address is compared trimmed and case-insensitively: spaces around it and upper case
    // are accepted.
    cases.push(accepted(
        "email: upper case and surrounding spaces",
        pb::CheckInviteeRequest {
            email: "  NewComer@Example.COM ".into(),
            ..base()
        },
    ));
    cases
}

/// The entries of a call about one member named in `field`: every malformed name, an oversized
/// one, and a well-formed name of a user who is not a member (NOT_FOUND for the operator).
fn member_named<Req>(world: &World, field: &str, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_member_names(&world.customer)
        .into_iter()
        .map(|(what, name)| invalid(format!("{field}: {what}"), field, make(name)))
        .collect();
    cases.push(code(
        format!("{field}: oversized request"),
        Code::ResourceExhausted,
        make(format!("{}/members/{}", world.customer, oversized())),
    ));
    cases.push(code(
        format!("{field}: a user who is not a member"),
        Code::NotFound,
        make(format!("{}/members/nobody-here", world.customer)),
    ));
    cases
}

fn add_member(world: &World) -> Vec<Case<pb::AddMemberRequest>> {
    let base = || pb::AddMemberRequest {
        parent: world.customer.clone(),
        principal: Some(Principal::User("users/newcomer".into())),
        role: pb::Role::Employee as i32,
        source: 0,
        request_id: String::new(),
        invitee_profile: None,
    };
    let mut cases = named("parent", |parent| pb::AddMemberRequest { parent, ..base() });
    cases.push(invalid(
        "neither user nor email",
        "user",
        pb::AddMemberRequest {
            principal: None,
            ..base()
        },
    ));
    for (what, user) in bad_user_names() {
        cases.push(invalid(
            format!("user: {what}"),
            "user",
            pb::AddMemberRequest {
                principal: Some(Principal::User(user)),
                ..base()
            },
        ));
    }
    for (what, email) in bad_emails() {
        cases.push(invalid(
            format!("email: {what}"),
            "email",
            pb::AddMemberRequest {
                principal: Some(Principal::Email(email)),
                ..base()
            },
        ));
    }
    cases.push(code(
        "email: an address no known user has",
        Code::NotFound,
        pb::AddMemberRequest {
            principal: Some(Principal::Email("nobody@example.com".into())),
            ..base()
        },
    ));
    for (what, role) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("role {what}"),
            "role",
            pb::AddMemberRequest { role, ..base() },
        ));
    }
    for (what, source) in [
        (
            "SELF_ASSIGNED (AddMyself only)",
            pb::MemberSource::SelfAssigned as i32,
        ),
        (
            "INVITATION from a person",
            pb::MemberSource::Invitation as i32,
        ),
    ]
    .into_iter()
    .chain(UNKNOWN_ENUMS)
    {
        cases.push(invalid(
            format!("source {what}"),
            "source",
            pb::AddMemberRequest { source, ..base() },
        ));
    }
    cases.push(invalid(
        "invitee_profile from a person (the invitation service's only)",
        "invitee_profile",
        pb::AddMemberRequest {
            invitee_profile: Some(pb::InviteeProfile {
                email: "newcomer@example.com".into(),
                given_name: "New".into(),
                family_name: "Comer".into(),
            }),
            ..base()
        },
    ));
    for (what, request_id) in bad_request_ids() {
        cases.push(invalid(
            format!("request_id: {what}"),
            "request_id",
            pb::AddMemberRequest {
                request_id,
                ..base()
            },
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::AddMemberRequest {
            principal: Some(Principal::User(format!("users/{}", oversized()))),
            ..base()
        },
    ));
    cases
}

fn update_member(world: &World) -> Vec<Case<pb::UpdateMemberRequest>> {
    let make = |name: &str, role: i32, etag: &str, paths: &[&str]| pb::UpdateMemberRequest {
        member: Some(pb::Member {
            name: name.into(),
            role,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: (!paths.is_empty()).then(|| FieldMask {
            paths: paths.iter().map(|path| path.to_string()).collect(),
        }),
    };
    let admin = pb::Role::Admin as i32;
    let mut cases = vec![invalid(
        "no member",
        "member",
        pb::UpdateMemberRequest {
            member: None,
            update_mask: None,
        },
    )];
    cases.extend(member_named(world, "member.name", |name| {
        make(&name, admin, "", &[])
    }));
    for (what, paths) in [
        ("user", vec!["user"]),
        ("source", vec!["source"]),
        ("role and email", vec!["role", "email"]),
        ("an empty path", vec![""]),
    ] {
        cases.push(invalid(
            format!("update_mask: {what}"),
            "update_mask",
            make(&world.member, admin, "", &paths),
        ));
    }
    for (what, role) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("member.role {what}"),
            "member.role",
            make(&world.member, role, "", &["role"]),
        ));
    }
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        make(&world.member, admin, "abc", &["role"]),
    ));
    cases
}

fn list_members(world: &World) -> Vec<Case<pb::ListMembersRequest>> {
    let mut cases = named("parent", |parent| pb::ListMembersRequest {
        parent,
        ..Default::default()
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListMembersRequest {
            parent: world.customer.clone(),
            page_size,
            page_token,
            ..Default::default()
        },
        &world.foreign_token,
    ));
    for (what, roles) in [
        ("UNSPECIFIED", vec![0]),
        ("99", vec![1, 99]),
        ("-1", vec![-1]),
    ] {
        cases.push(invalid(
            format!("roles {what}"),
            "roles",
            pb::ListMembersRequest {
                parent: world.customer.clone(),
                roles,
                ..Default::default()
            },
        ));
    }
    for (what, email) in [
        ("255 characters", format!("i@{}.com", "e".repeat(249))),
        ("a newline", "erin@example.com\n x".to_string()),
        ("NUL", "erin@exa\u{0}mple.com".to_string()),
    ] {
        cases.push(invalid(
            format!("email: {what}"),
            "email",
            pb::ListMembersRequest {
                parent: world.customer.clone(),
                email,
                ..Default::default()
            },
        ));
    }
    // The e-mail is an equality filter, not an address to send to: any text matches nobody.
    cases.push(accepted(
        "email: not an address (matches nobody)",
        pb::ListMembersRequest {
            parent: world.customer.clone(),
            email: "not an address".into(),
            ..Default::default()
        },
    ));
    cases
}

fn authorize(world: &World) -> Vec<Case<pb::AuthorizeRequest>> {
    let subject = |user: &str| {
        Some(pb::Subject {
            user: user.into(),
            ..Default::default()
        })
    };
    let base = || pb::AuthorizeRequest {
        subject: subject("users/erin"),
        account: world.customer.clone(),
        permission: pb::Permission::AccountRead as i32,
        bypass_view: false,
    };
    let mut cases = vec![invalid(
        "no subject",
        "subject",
        pb::AuthorizeRequest {
            subject: None,
            ..base()
        },
    )];
    for (what, user) in bad_user_names() {
        cases.push(invalid(
            format!("subject.user: {what}"),
            "subject.user",
            pb::AuthorizeRequest {
                subject: subject(&user),
                ..base()
            },
        ));
    }
    let mut accounts = named("account", |account| pb::AuthorizeRequest {
        account,
        ..base()
    });
    // An unknown account is an answer, not an error: `account_exists` false.
    if let Some(unknown) = accounts.last_mut() {
        unknown.expect = super::Expect::Accepted;
    }
    cases.extend(accounts);
    for (what, permission) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("permission {what}"),
            "permission",
            pb::AuthorizeRequest {
                permission,
                ..base()
            },
        ));
    }
    cases
}

/// AddMyself's `access_duration` (1 minute to 730 days), asked by the partner's OWNER, who is
/// a member of the customer already: the valid ones return that membership unchanged.
fn access_durations(world: &World) -> Vec<Case<pb::AddMyselfRequest>> {
    let make = |seconds: i64, nanos: i32| pb::AddMyselfRequest {
        account: world.customer.clone(),
        access_duration: Some(prost_types::Duration { seconds, nanos }),
    };
    let mut cases = Vec::new();
    for (what, seconds, nanos) in [
        ("minus an hour", -3_600, 0),
        ("minus a nanosecond", 0, -1),
        ("zero", 0, 0),
        ("59 seconds", 59, 0),
        ("a nanosecond short of a minute", 59, 999_999_999),
        ("731 days", 731 * DAY, 0),
        ("730 days and a second", 730 * DAY + 1, 0),
        ("730 days and a nanosecond", 730 * DAY, 1),
    ]
    .into_iter()
    .chain(BAD_DURATIONS)
    {
        cases.push(invalid(
            format!("access_duration: {what}"),
            "access_duration",
            make(seconds, nanos),
        ));
    }
    for (what, seconds) in [
        ("a minute, the shortest", 60),
        ("730 days, the longest", 730 * DAY),
    ] {
        cases.push(accepted(
            format!("access_duration {what} (the existing membership, unchanged)"),
            make(seconds, 0),
        ));
    }
    cases
}

fn extend_member_access(world: &World) -> Vec<Case<pb::ExtendMemberAccessRequest>> {
    // Later than the OWNER's 30 days, within 730 days.
    let later = || Some(from_now(60 * DAY));
    let base = || pb::ExtendMemberAccessRequest {
        name: world.timed_member.clone(),
        expire_time: later(),
        etag: String::new(),
    };
    let mut cases = member_named(world, "name", |name| pb::ExtendMemberAccessRequest {
        name,
        ..base()
    });
    cases.push(code(
        "name: a member of an account that does not exist",
        Code::NotFound,
        pb::ExtendMemberAccessRequest {
            name: "accounts/no-such-account/members/erin".into(),
            ..base()
        },
    ));
    cases.push(invalid(
        "expire_time missing",
        "expire_time",
        pb::ExtendMemberAccessRequest {
            expire_time: None,
            ..base()
        },
    ));
    for (what, time) in [
        ("an hour ago", from_now(-3_600)),
        (
            "the Unix epoch",
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
        ),
        ("731 days from now", from_now(731 * DAY)),
        ("730 days and a minute from now", from_now(730 * DAY + 60)),
        (
            "the last google.protobuf.Timestamp",
            Timestamp {
                seconds: LAST_TIMESTAMP.0,
                nanos: LAST_TIMESTAMP.1,
            },
        ),
    ] {
        cases.push(invalid(
            format!("expire_time {what}"),
            "expire_time",
            pb::ExtendMemberAccessRequest {
                expire_time: Some(time),
                ..base()
            },
        ));
    }
    for (what, seconds, nanos) in BAD_TIMESTAMPS {
        cases.push(invalid(
            format!("expire_time: {what}"),
            "expire_time",
            pb::ExtendMemberAccessRequest {
                expire_time: Some(Timestamp { seconds, nanos }),
                ..base()
            },
        ));
    }
    cases.push(code(
        "a member without an expiry (nothing to extend)",
        Code::FailedPrecondition,
        pb::ExtendMemberAccessRequest {
            name: world.member.clone(),
            ..base()
        },
    ));
    for (what, time) in [
        ("the current one", world.timed_member_expiry),
        ("before the current one (a day from now)", from_now(DAY)),
    ] {
        cases.push(code(
            format!("expire_time {what}: not later"),
            Code::FailedPrecondition,
            pb::ExtendMemberAccessRequest {
                expire_time: Some(time),
                ..base()
            },
        ));
    }
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::ExtendMemberAccessRequest {
            etag: "0".into(),
            ..base()
        },
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ExtendMemberAccessRequest {
            etag: oversized(),
            ..base()
        },
    ));
    // Last: it moves the OWNER's expiry to the limit.
    cases.push(accepted(
        "expire_time 730 days from now, the latest",
        pb::ExtendMemberAccessRequest {
            expire_time: Some(from_now(730 * DAY)),
            ..base()
        },
    ));
    cases
}

fn list_expiring_members(world: &World) -> Vec<Case<pb::ListExpiringMembersRequest>> {
    let before = || Some(from_now(7 * DAY));
    let base = || pb::ListExpiringMembersRequest {
        parent: world.partner.clone(),
        expire_before: before(),
        page_size: 0,
        page_token: String::new(),
    };
    let mut cases = named("parent", |parent| pb::ListExpiringMembersRequest {
        parent,
        ..base()
    });
    // An unknown account is answered like a foreign one, to operators too (membership.proto).
    if let Some(unknown) = cases.last_mut() {
        unknown.expect = super::Expect::Code(Code::PermissionDenied);
    }
    cases.push(code(
        "parent: an account that is not a partner",
        Code::PermissionDenied,
        pb::ListExpiringMembersRequest {
            parent: world.customer.clone(),
            ..base()
        },
    ));
    cases.push(invalid(
        "expire_before missing",
        "expire_before",
        pb::ListExpiringMembersRequest {
            expire_before: None,
            ..base()
        },
    ));
    for (what, seconds, nanos) in BAD_TIMESTAMPS {
        cases.push(invalid(
            format!("expire_before: {what}"),
            "expire_before",
            pb::ListExpiringMembersRequest {
                expire_before: Some(Timestamp { seconds, nanos }),
                ..base()
            },
        ));
    }
    // Any valid instant is a question: the past lists what is overdue, the far future all.
    for (what, time) in [
        (
            "the Unix epoch (lists nothing)",
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
        ),
        (
            "the last google.protobuf.Timestamp (lists every time-bound membership)",
            Timestamp {
                seconds: LAST_TIMESTAMP.0,
                nanos: LAST_TIMESTAMP.1,
            },
        ),
    ] {
        cases.push(accepted(
            format!("expire_before {what}"),
            pb::ListExpiringMembersRequest {
                expire_before: Some(time),
                ..base()
            },
        ));
    }
    cases.extend(page_entries(
        |page_size, page_token| pb::ListExpiringMembersRequest {
            page_size,
            page_token,
            ..base()
        },
        &world.foreign_token,
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListExpiringMembersRequest {
            page_token: oversized(),
            ..base()
        },
    ));
    cases
}
