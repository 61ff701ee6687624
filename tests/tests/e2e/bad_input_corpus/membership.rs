//! Membership's tables (the access-governance ones are in `access.rs`).

use prost_types::{FieldMask, Timestamp};
use tenantry_proto::membership::v1 as pb;
use tenantry_proto::membership::v1::add_member_request::Principal;
use tenantry_testkit::TestCluster;
use tonic::Code;

use super::values::{
    BAD_DURATIONS, BAD_TIMESTAMPS, DAY, LAST_TIMESTAMP, UNKNOWN_ENUMS, bad_emails,
    bad_member_names, bad_request_ids, bad_user_names, from_now, oversized,
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
