//! The invitation service's tables.

use tenantry_proto::invitation::v1 as pb;
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::{TestCluster, TestUser};
use tonic::Code;

use super::values::{
    BAD_TIMESTAMPS, UNKNOWN_ENUMS, bad_child_names, bad_emails, bad_line_text, bad_request_ids,
    good_line_text, oversized, unknown_child,
};
use super::{Case, I, Tally, World, accepted, code, invalid, named, page_entries};

/// The longest given or family name.
const MAX_NAME: usize = 120;

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let client = |rpc: &str| cluster.invitation(Some(&world.caller_of(&format!("{I}/{rpc}"))));

    let invitations = client("CreateInvitation");
    tally
        .run(
            &format!("{I}/CreateInvitation"),
            create_invitation(world),
            |request| {
                let mut invitations = invitations.clone();
                async move { invitations.create_invitation(request).await.map(drop) }
            },
        )
        .await;

    let invitations = client("BatchCreateInvitations");
    let one = || pb::CreateInvitationRequest {
        email: format!("batch-{}@example.com", uuid::Uuid::new_v4().simple()),
        role: Role::Employee as i32,
        ..Default::default()
    };
    let mut cases = named("parent", |parent| pb::BatchCreateInvitationsRequest {
        parent,
        requests: vec![one()],
    });
    cases.push(invalid(
        "requests: none",
        "requests",
        pb::BatchCreateInvitationsRequest {
            parent: world.customer.clone(),
            requests: Vec::new(),
        },
    ));
    cases.push(invalid(
        "requests: 101",
        "requests",
        pb::BatchCreateInvitationsRequest {
            parent: world.customer.clone(),
            requests: (0..101).map(|_| one()).collect(),
        },
    ));
    // Bad items do not fail the call: each is answered in its result (tests in
    // invitation_batch.rs).
    cases.push(accepted(
        "an item with a bad e-mail",
        pb::BatchCreateInvitationsRequest {
            parent: world.customer.clone(),
            requests: vec![pb::CreateInvitationRequest {
                email: "jane..doe@example.com".into(),
                ..one()
            }],
        },
    ));
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::BatchCreateInvitationsRequest {
            parent: world.customer.clone(),
            requests: vec![pb::CreateInvitationRequest {
                given_name: oversized(),
                ..one()
            }],
        },
    ));
    tally
        .run(&format!("{I}/BatchCreateInvitations"), cases, |request| {
            let mut invitations = invitations.clone();
            async move {
                invitations
                    .batch_create_invitations(request)
                    .await
                    .map(drop)
            }
        })
        .await;

    let invitations = client("ListMyInvitations");
    let mut cases = page_entries(
        |page_size, page_token| pb::ListMyInvitationsRequest {
            page_size,
            page_token,
        },
        &world.foreign_token,
    );
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::ListMyInvitationsRequest {
            page_size: 0,
            page_token: oversized(),
        },
    ));
    tally
        .run(&format!("{I}/ListMyInvitations"), cases, |request| {
            let mut invitations = invitations.clone();
            async move { invitations.list_my_invitations(request).await.map(drop) }
        })
        .await;

    let invitations = client("ListInvitations");
    let mut cases = named("parent", |parent| pb::ListInvitationsRequest {
        parent,
        ..Default::default()
    });
    cases.extend(page_entries(
        |page_size, page_token| pb::ListInvitationsRequest {
            parent: world.customer.clone(),
            page_size,
            page_token,
            states: Vec::new(),
        },
        &world.foreign_token,
    ));
    for (what, states) in [
        ("UNSPECIFIED", vec![0]),
        ("99", vec![1, 99]),
        ("-1", vec![-1]),
    ] {
        cases.push(invalid(
            format!("states {what}"),
            "states",
            pb::ListInvitationsRequest {
                parent: world.customer.clone(),
                states,
                ..Default::default()
            },
        ));
    }
    tally
        .run(&format!("{I}/ListInvitations"), cases, |request| {
            let mut invitations = invitations.clone();
            async move { invitations.list_invitations(request).await.map(drop) }
        })
        .await;

    let invitations = client("GetInvitation");
    let cases = invitation_named(world, |name| pb::GetInvitationRequest { name });
    tally
        .run(&format!("{I}/GetInvitation"), cases, |request| {
            let mut invitations = invitations.clone();
            async move { invitations.get_invitation(request).await.map(drop) }
        })
        .await;

    let invitations = client("RevokeInvitation");
    let mut cases = invitation_named(world, |name| pb::RevokeInvitationRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::RevokeInvitationRequest {
            name: world.invitation.clone(),
            etag: "1.0".into(),
        },
    ));
    tally
        .run(&format!("{I}/RevokeInvitation"), cases, |request| {
            let mut invitations = invitations.clone();
            async move { invitations.revoke_invitation(request).await.map(drop) }
        })
        .await;

    let invitations = client("ResendInvitation");
    let mut cases = invitation_named(world, |name| pb::ResendInvitationRequest {
        name,
        etag: String::new(),
    });
    cases.push(code(
        "an etag that is not the current one",
        Code::Aborted,
        pb::ResendInvitationRequest {
            name: world.invitation.clone(),
            etag: " 1".into(),
        },
    ));
    tally
        .run(&format!("{I}/ResendInvitation"), cases, |request| {
            let mut invitations = invitations.clone();
            async move { invitations.resend_invitation(request).await.map(drop) }
        })
        .await;

    // The link RPCs: each entry from a user of its own, so the per-user limit on unknown
    // secrets (RESOURCE_EXHAUSTED after 20) is never what answers.
    let lookup = |request: pb::LookupInvitationRequest| {
        let mut invitations = cluster.invitation_as(&TestUser::new("linker"));
        async move { invitations.lookup_invitation(request).await.map(drop) }
    };
    let cases = secrets(|token| pb::LookupInvitationRequest { token });
    tally
        .run(&format!("{I}/LookupInvitation"), cases, lookup)
        .await;
    let accept = |request: pb::AcceptInvitationRequest| {
        let mut invitations = cluster.invitation_as(&TestUser::new("linker"));
        async move { invitations.accept_invitation(request).await.map(drop) }
    };
    let cases = secrets(|token| pb::AcceptInvitationRequest { token });
    tally
        .run(&format!("{I}/AcceptInvitation"), cases, accept)
        .await;
    let decline = |request: pb::DeclineInvitationRequest| {
        let mut invitations = cluster.invitation_as(&TestUser::new("linker"));
        async move { invitations.decline_invitation(request).await.map(drop) }
    };
    let cases = secrets(|token| pb::DeclineInvitationRequest { token });
    tally
        .run(&format!("{I}/DeclineInvitation"), cases, decline)
        .await;
}

/// An invitation link's secret: empty is INVALID_ARGUMENT naming `token`; anything else that
/// is not a current secret is NOT_FOUND, however malformed (invitation.proto).
fn secrets<Req>(make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases = vec![invalid("token: empty", "token", make(String::new()))];
    for (what, token) in [
        ("garbage", "garbage".to_string()),
        ("a guessed 256-bit secret", "A".repeat(43)),
        ("control characters", "abc\u{0}\n".to_string()),
        ("non-ASCII", "gehëim".to_string()),
        ("10,000 characters", "t".repeat(10_000)),
    ] {
        cases.push(code(format!("token: {what}"), Code::NotFound, make(token)));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        make(oversized()),
    ));
    cases
}

/// The entries of a call about one invitation: every malformed name, an oversized one, and a
/// well-formed name of an invitation that does not exist (NOT_FOUND for the operator).
fn invitation_named<Req>(world: &World, make: impl Fn(String) -> Req) -> Vec<Case<Req>> {
    let mut cases: Vec<Case<Req>> = bad_child_names(&world.customer, "invitations")
        .into_iter()
        .map(|(what, name)| invalid(format!("name: {what}"), "name", make(name)))
        .collect();
    cases.push(code(
        "name: oversized request",
        Code::ResourceExhausted,
        make(format!("{}/invitations/{}", world.customer, oversized())),
    ));
    cases.push(code(
        "name: an invitation that does not exist",
        Code::NotFound,
        make(unknown_child(&world.customer, "invitations")),
    ));
    cases
}

fn create_invitation(world: &World) -> Vec<Case<pb::CreateInvitationRequest>> {
    let fresh = std::sync::atomic::AtomicUsize::new(0);
    let base = || pb::CreateInvitationRequest {
        parent: world.customer.clone(),
        email: format!(
            "guest-{}@example.com",
            fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        given_name: String::new(),
        family_name: String::new(),
        role: Role::Employee as i32,
        request_id: String::new(),
        expire_time: None,
    };
    let mut cases = named("parent", |parent| pb::CreateInvitationRequest {
        parent,
        ..base()
    });
    for (what, email) in bad_emails() {
        cases.push(invalid(
            format!("email: {what}"),
            "email",
            pb::CreateInvitationRequest { email, ..base() },
        ));
    }
    for field in ["given_name", "family_name"] {
        let with = |name: String| {
            let mut request = base();
            match field {
                "given_name" => request.given_name = name,
                _ => request.family_name = name,
            }
            request
        };
        for (what, name) in bad_line_text(MAX_NAME) {
            cases.push(invalid(format!("{field}: {what}"), field, with(name)));
        }
        for (what, name) in good_line_text(MAX_NAME) {
            cases.push(accepted(format!("{field}: {what}"), with(name)));
        }
    }
    for (what, role) in [("UNSPECIFIED", 0)].into_iter().chain(UNKNOWN_ENUMS) {
        cases.push(invalid(
            format!("role {what}"),
            "role",
            pb::CreateInvitationRequest { role, ..base() },
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default();
    let timestamps = BAD_TIMESTAMPS.into_iter().chain([
        ("in the past", now - 60, 0),
        ("31 days ahead", now + 31 * 86_400, 0),
    ]);
    for (what, seconds, nanos) in timestamps {
        cases.push(invalid(
            format!("expire_time: {what}"),
            "expire_time",
            pb::CreateInvitationRequest {
                expire_time: Some(prost_types::Timestamp { seconds, nanos }),
                ..base()
            },
        ));
    }
    for (what, request_id) in bad_request_ids() {
        cases.push(invalid(
            format!("request_id: {what}"),
            "request_id",
            pb::CreateInvitationRequest {
                request_id,
                ..base()
            },
        ));
    }
    cases.push(code(
        "oversized request",
        Code::ResourceExhausted,
        pb::CreateInvitationRequest {
            given_name: oversized(),
            ..base()
        },
    ));
    cases
}
