//! Membership's access-governance tables: access policies and access requests, against a
//! customer of their own.

use tenantry_proto::membership::v1 as pb;
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Code;

use super::values::{
    BAD_DURATIONS, DAY, UNKNOWN_ENUMS, bad_account_names, bad_child_names, bad_emails,
    bad_user_names, oversized, unknown_child,
};
use super::{Case, M, Tally, World, accepted, code, invalid, named, page_entries};

/// The access policies and access requests.
pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
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
