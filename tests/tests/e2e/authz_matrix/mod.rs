//! The authorization matrix: every RPC of the five services, called as every kind of caller,
//! checked against DESIGN.md §5 and the callers each RPC's proto comment names.
//!
//! One table below holds the whole contract. A refusal must reveal nothing: the same RPC about
//! a resource that does not exist gets the very same answer (code, message and details), and
//! no refusal carries a display name, an e-mail address or a message text. A new RPC without a
//! row fails the test (the rows are compared with the API's descriptors). An RPC whose callers
//! depend on what the call asks has one row per variant, named `Method (variant)`.

mod calls;
mod world;

use std::collections::BTreeSet;

use prost::Message as _;
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, postgres_or_skip};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use world::{Setup, Target, World};

/// What one caller gets from one RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// Allowed: the call succeeds.
    A,
    /// PERMISSION_DENIED — and the very same answer about a resource that does not exist.
    D,
    /// PERMISSION_DENIED for a caller who may list the account's members: the same answer
    /// about a missing account, but NOT_FOUND about a missing member or access request
    /// (membership.proto: such a caller can see who is a member, and the account's requests,
    /// anyway, so that answer tells them nothing new).
    Dm,
    /// PERMISSION_DENIED for an invitation link sent to someone else's e-mail address; an
    /// unknown link is NOT_FOUND for every user (invitation.proto: holding the 256-bit secret
    /// is what grants the call, so its existence is no secret to whoever holds it).
    Ds,
    /// UNAUTHENTICATED, whatever the call is about.
    U,
    /// Allowed to ask, but the grant asked for is held already: FAILED_PRECONDITION with
    /// ErrorInfo reason ALREADY_GRANTED (CreateAccessRequest for themself by the customer's
    /// OWNER and ADMIN, who hold ADMIN or more without end).
    G,
}
use Cell::{A, D, Dm, Ds, G, U};

/// The variants of a refused call that must answer alike (see [`Target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twin {
    /// The accounts named do not exist (for invitation links: an unknown link; for
    /// CreateAccount: the identifier is taken).
    MissingAccount,
    /// The account exists; the member, invitation or message named does not.
    MissingChild,
}

/// Calls that name no resource: nothing to compare.
const NONE: &[Twin] = &[];
const ACCOUNT: &[Twin] = &[Twin::MissingAccount];
const CHILD: &[Twin] = &[Twin::MissingAccount, Twin::MissingChild];

const R: &str = "tenantry.registry.v1.CustomerRegistryService";
const M: &str = "tenantry.membership.v1.MembershipService";
const I: &str = "tenantry.invitation.v1.InvitationService";
const N: &str = "tenantry.notification.v1.NotificationService";
const AU: &str = "tenantry.audit.v1.AuditService";

/// The columns, in the order of [`World::identities`]: "partner" is alpha, which manages the
/// "customer" every account-scoped call is about; the "other partner" (bravo) manages the
/// "other customer". The four broken tokens are the customer OWNER's.
const COLUMNS: [&str; 17] = [
    "operator",
    "partner OWNER",
    "partner ADMIN",
    "partner EMPLOYEE",
    "other partner OWNER",
    "other partner ADMIN",
    "other partner EMPLOYEE",
    "customer OWNER",
    "customer ADMIN",
    "customer EMPLOYEE",
    "other customer OWNER",
    "no membership",
    "service identity",
    "no token",
    "expired token",
    "wrong signing key",
    "wrong audience",
];

type Row = (
    &'static str,
    &'static str,
    Setup,
    &'static [Twin],
    [Cell; 17],
);

/// Setups: `World` calls run against the shared world; the others build a fresh target per
/// cell (`Solo` a standalone account, `Cust` a customer of alpha peopled like the world's,
/// `Off` the same disabled, `Inv` with a pending invitation, `Link` with the outsider's
/// e-mailed invitation link, `Timed` which the partner EMPLOYEE joined for an hour, `Req` with
/// the partner EMPLOYEE's PENDING access request for themself), so nothing a cell changes
/// reaches another cell.
///
/// Choices where DESIGN.md §5 is silent, following the proto comments:
/// - Service identities may call only what a peer needs (GetAccount, BatchGetAccounts,
///   ListManagedCustomers, AddMember, GetMember, ListMembers, Authorize, GetOwnerCapacity,
///   CheckInvitee); everything else refuses them, as does every RPC that acts for a person (ListMyAccounts, the inbox, invitation
///   links).
/// - Managing a customer's members and invitations is for its own OWNER/ADMIN (and
///   operators): partner people join it first (AddMyself).
/// - ExtendMemberAccess is about the partner EMPLOYEE's time-bound membership (`Timed`): that
///   column is an ADMIN of the customer, refused only because time-bound access is never
///   extended by the member themself. Services may not call it nor ListExpiringMembers (both act
///   for people), and the warning list is for the partner's OWNER/ADMIN and operators.
/// - Operators cannot AddMyself (they use AddMember), cannot call Authorize,
///   GetOwnerCapacity, CheckInvitee or BatchGetAccounts, and cannot acknowledge someone else's inbox item.
/// - "Other customer OWNER" is the strongest role elsewhere; "no membership" is also the
///   invitee of the AcceptInvitation and DeclineInvitation targets, so only they accept or
///   decline.
/// - An account's audit trail is for OWNER and ADMIN of the account and of its managing
///   partner, and operators (audit.proto); services may not read it (the calls act for a
///   person), and only operators purge it.
/// - Access governance (membership.proto): the access policy is read by the account's members,
///   its partner's members and operators, and set by the account's OWNERs and operators (not
///   its ADMINs, not the partner's people); services neither read nor set it, nor list an
///   account's requests. CreateAccessRequest is for whoever could make the grant were it not
///   gated — the customer's OWNER and ADMIN asking ADMIN for dora — or, for themself with
///   AddMyself's role, a member of the managing partner (the `(for themself)` row; the
///   customer's OWNER and ADMIN may ask that too, but hold it already); operators grant
///   directly and never ask. The world's request is the customer OWNER's, for the outsider:
///   "no membership" is its subject and may read it, as may whoever may list the account's
///   members (not service identities: requests are people's business). Approve and Decline are for
///   whoever could make the grant (the customer's OWNER and ADMIN; never the subject: the
///   `Req` request's requester and subject is the partner EMPLOYEE) and operators; Cancel for
///   the requester and operators. ListAccessRequestsWaitingForMe is any person's.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                  op  | partner  | other p. | customer   | oc | no | svc| none exp key aud
    (R, "CreateAccount",         Setup::World, ACCOUNT, [A,  D, D, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (R, "PromoteToPartner",      Setup::Solo,  ACCOUNT, [A,  D, D, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (R, "CreateManagedCustomer", Setup::World, ACCOUNT, [A,  A, A, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (R, "ListManagedCustomers",  Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   D, D, D,     D,   D,   A,   U, U, U, U]),
    (R, "GetAccount",            Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   A, A, A,     D,   D,   A,   U, U, U, U]),
    (R, "BatchGetAccounts",      Setup::World, ACCOUNT, [D,  D, D, D,   D, D, D,   D, D, D,     D,   D,   A,   U, U, U, U]),
    (R, "ListAccounts",          Setup::World, NONE,    [A,  D, D, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (R, "UpdateAccount",         Setup::Cust,  ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (R, "DisableAccount",        Setup::Cust,  ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (R, "EnableAccount",         Setup::Off,   ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (R, "DeleteAccount",         Setup::Cust,  ACCOUNT, [A,  A, A, D,   D, D, D,   A, D, D,     D,   D,   D,   U, U, U, U]),
    (M, "AddMember",             Setup::World, ACCOUNT, [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   A,   U, U, U, U]),
    (M, "AddMyself",             Setup::Cust,  ACCOUNT, [D,  A, A, A,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (M, "GetMember",             Setup::World, CHILD,   [A,  A, A, A,   D, D, D,   A, A, A,     D,   D,   A,   U, U, U, U]),
    (M, "UpdateMember",          Setup::Cust,  CHILD,   [A,  Dm,Dm,Dm,  D, D, D,   A, A, Dm,    D,   D,   D,   U, U, U, U]),
    (M, "RemoveMember",          Setup::Cust,  CHILD,   [A,  Dm,Dm,Dm,  D, D, D,   A, A, Dm,    D,   D,   D,   U, U, U, U]),
    (M, "ExtendMemberAccess",    Setup::Timed, CHILD,   [A,  Dm,Dm,Dm,  D, D, D,   A, A, Dm,    D,   D,   D,   U, U, U, U]),
    (M, "ListExpiringMembers",   Setup::World, ACCOUNT, [A,  A, A, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (M, "ListMembers",           Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   A, A, A,     D,   D,   A,   U, U, U, U]),
    (M, "ListMyAccounts",        Setup::World, NONE,    [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (M, "Authorize",             Setup::World, ACCOUNT, [D,  D, D, D,   D, D, D,   D, D, D,     D,   D,   A,   U, U, U, U]),
    (M, "CheckInvitee",          Setup::World, ACCOUNT, [D,  D, D, D,   D, D, D,   D, D, D,     D,   D,   A,   U, U, U, U]),
    (M, "GetOwnerCapacity",      Setup::World, ACCOUNT, [D,  D, D, D,   D, D, D,   D, D, D,     D,   D,   A,   U, U, U, U]),
    (M, "GetAccessPolicy",       Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   A, A, A,     D,   D,   D,   U, U, U, U]),
    (M, "UpdateAccessPolicy",    Setup::Cust,  ACCOUNT, [A,  D, D, D,   D, D, D,   A, D, D,     D,   D,   D,   U, U, U, U]),
    (M, "CreateAccessRequest",   Setup::Cust,  ACCOUNT, [D,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (M, "CreateAccessRequest (for themself)",
                                 Setup::Cust,  ACCOUNT, [D,  A, A, A,   D, D, D,   G, G, D,     D,   D,   D,   U, U, U, U]),
    (M, "GetAccessRequest",      Setup::World, CHILD,   [A,  A, A, A,   D, D, D,   A, A, A,     D,   A,   D,   U, U, U, U]),
    (M, "ListAccessRequests",    Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   A, A, A,     D,   D,   D,   U, U, U, U]),
    (M, "ListAccessRequestsWaitingForMe",
                                 Setup::World, NONE,    [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (M, "ApproveAccessRequest",  Setup::Req,   CHILD,   [A,  Dm,Dm,Dm,  D, D, D,   A, A, Dm,    D,   D,   D,   U, U, U, U]),
    (M, "DeclineAccessRequest",  Setup::Req,   CHILD,   [A,  Dm,Dm,Dm,  D, D, D,   A, A, Dm,    D,   D,   D,   U, U, U, U]),
    (M, "CancelAccessRequest",   Setup::Req,   CHILD,   [A,  Dm,Dm,A,   D, D, D,   Dm,Dm,Dm,    D,   D,   D,   U, U, U, U]),
    (I, "CreateInvitation",      Setup::World, ACCOUNT, [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (I, "ListInvitations",       Setup::World, ACCOUNT, [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (I, "GetInvitation",         Setup::World, CHILD,   [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (I, "RevokeInvitation",      Setup::Inv,   CHILD,   [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (I, "ResendInvitation",      Setup::Inv,   CHILD,   [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (I, "LookupInvitation",      Setup::World, ACCOUNT, [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (I, "AcceptInvitation",      Setup::Link,  ACCOUNT, [Ds, Ds,Ds,Ds,  Ds,Ds,Ds,  Ds,Ds,Ds,    Ds,  A,   D,   U, U, U, U]),
    (I, "DeclineInvitation",     Setup::Link,  ACCOUNT, [Ds, Ds,Ds,Ds,  Ds,Ds,Ds,  Ds,Ds,Ds,    Ds,  A,   D,   U, U, U, U]),
    (I, "ListMyInvitations",     Setup::World, NONE,    [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (I, "BatchCreateInvitations",Setup::World, ACCOUNT, [A,  D, D, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (N, "SendMessage",           Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (N, "ListMessages",          Setup::World, ACCOUNT, [A,  A, A, A,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (N, "GetMessage",            Setup::World, CHILD,   [A,  A, A, A,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (N, "ListMessageReceipts",   Setup::World, CHILD,   [A,  A, A, A,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
    (N, "ListPendingMessages",   Setup::World, NONE,    [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (N, "AcknowledgeMessage",    Setup::World, CHILD,   [D,  D, D, D,   D, D, D,   A, A, A,     D,   D,   D,   U, U, U, U]),
    (N, "WatchInbox",            Setup::World, NONE,    [A,  A, A, A,   A, A, A,   A, A, A,     A,   A,   D,   U, U, U, U]),
    (AU,"ListAuditEntries",      Setup::World, ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (AU,"GetAuditEntry",         Setup::World, CHILD,   [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (AU,"WatchAuditEntries",     Setup::World, ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (AU,"VerifyAuditChain",      Setup::World, ACCOUNT, [A,  A, A, D,   D, D, D,   A, A, D,     D,   D,   D,   U, U, U, U]),
    (AU,"PurgeAuditEntries",     Setup::World, NONE,    [A,  D, D, D,   D, D, D,   D, D, D,     D,   D,   D,   U, U, U, U]),
];

/// The RPC a row is about: its method without the variant (`Method (variant)`).
fn rpc_of(method: &str) -> &str {
    method.split(" (").next().unwrap_or(method)
}

/// Every RPC of the five services, from the descriptors the servers are built from.
fn rpcs_of_the_api() -> BTreeSet<String> {
    let files = prost_types::FileDescriptorSet::decode(tenantry_proto::FILE_DESCRIPTOR_SET)
        .expect("the API's descriptor set");
    let mut rpcs = BTreeSet::new();
    for file in files.file {
        let package = file.package();
        if !package.starts_with("tenantry.") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                rpcs.insert(format!("{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    rpcs
}

/// Why a refusal says more than it may: missing ErrorInfo, or a secret of the world in its
/// message or details.
fn leaks(status: &Status, secrets: &[String]) -> Option<String> {
    let domain = status
        .get_error_details()
        .error_info()
        .map(|info| info.domain.clone());
    if domain.as_deref() != Some("tenantry") {
        return Some(format!("no ErrorInfo with domain tenantry ({domain:?})"));
    }
    let details = String::from_utf8_lossy(status.details());
    secrets
        .iter()
        .find(|secret| status.message().contains(*secret) || details.contains(*secret))
        .map(|secret| format!("the refusal carries {secret:?}"))
}

fn describe(result: &Result<(), Status>) -> String {
    match result {
        Ok(()) => "OK".to_string(),
        Err(status) => format!("{:?} {:?}", status.code(), status.message()),
    }
}

/// Whether two refusals are indistinguishable.
fn same_answer(one: &Status, other: &Status) -> bool {
    one.code() == other.code()
        && one.message() == other.message()
        && one.details() == other.details()
}

/// Checks one cell; returns what disagrees with the table.
async fn check_cell(
    cluster: &TestCluster,
    world: &World,
    (method, twins): (&str, &[Twin]),
    token: Option<&str>,
    expected: Cell,
    target: &Target,
) -> (Vec<String>, usize) {
    let secrets: Vec<String> = world
        .secrets
        .iter()
        .chain(&target.secrets)
        .cloned()
        .collect();
    let real = calls::call(cluster, method, token, target).await;
    let code = match expected {
        A => {
            return match real {
                Ok(()) => (Vec::new(), 0),
                Err(_) => (
                    vec![format!("expected allowed, got {}", describe(&real))],
                    0,
                ),
            };
        }
        G => {
            let reason = real.as_ref().err().and_then(|status| {
                (status.code() == Code::FailedPrecondition)
                    .then(|| {
                        status
                            .get_error_details()
                            .error_info()
                            .map(|info| info.reason.clone())
                    })
                    .flatten()
            });
            return if reason.as_deref() == Some("ALREADY_GRANTED") {
                (Vec::new(), 0)
            } else {
                (
                    vec![format!(
                        "expected FailedPrecondition ALREADY_GRANTED, got {}",
                        describe(&real)
                    )],
                    0,
                )
            };
        }
        D | Dm | Ds => Code::PermissionDenied,
        U => Code::Unauthenticated,
    };
    let status = match real {
        Err(status) if status.code() == code => status,
        other => {
            return (
                vec![format!("expected {code:?}, got {}", describe(&other))],
                0,
            );
        }
    };
    let mut problems: Vec<String> = leaks(&status, &secrets).into_iter().collect();
    for twin in twins {
        let variant = match twin {
            Twin::MissingAccount => target.missing_account(&world.taken_id),
            Twin::MissingChild => target.missing_child(),
        };
        let answer = calls::call(cluster, method, token, &variant).await;
        let not_found_expected = matches!(
            (expected, twin),
            (Dm, Twin::MissingChild) | (Ds, Twin::MissingAccount)
        );
        match &answer {
            Err(other) if not_found_expected && other.code() == Code::NotFound => {}
            Err(other) if !not_found_expected && same_answer(&status, other) => {}
            _ => problems.push(format!(
                "{twin:?}: expected {}, got {} (the real one: {})",
                if not_found_expected {
                    "NotFound"
                } else {
                    "the same answer"
                },
                describe(&answer),
                describe(&Err(status.clone())),
            )),
        }
        if let Err(other) = &answer {
            problems.extend(leaks(other, &secrets).map(|leak| format!("{twin:?}: {leak}")));
        }
    }
    (problems, twins.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_identity_as_the_design_says() {
    let rows: BTreeSet<String> = MATRIX
        .iter()
        .map(|(service, method, ..)| format!("{service}/{method}"))
        .collect();
    assert_eq!(rows.len(), MATRIX.len(), "one row per RPC and variant");
    let covered: BTreeSet<String> = MATRIX
        .iter()
        .map(|(service, method, ..)| format!("{service}/{}", rpc_of(method)))
        .collect();
    assert_eq!(
        covered,
        rpcs_of_the_api(),
        "the matrix has exactly one row per RPC of the API"
    );

    // PostgreSQL when configured (the production shape), else the embedded default.
    let backend = match postgres_or_skip() {
        Some(_) => Backend::Postgres,
        None => Backend::Sqlite,
    };
    let mut options = ClusterOptions::new(backend);
    // Resends are limited per invitation; the matrix resends fresh invitations at once.
    options.invitation.resend_interval_seconds = 0;
    let cluster = TestCluster::start_with(options).await;
    let world = World::build(&cluster).await;
    let identities = world.identities(&cluster);
    let labels: Vec<&str> = identities.iter().map(|identity| identity.label).collect();
    assert_eq!(labels, COLUMNS);

    let mut problems = Vec::new();
    let mut twin_calls = 0;
    for (service, method, setup, twins, cells) in MATRIX {
        for (identity, expected) in identities.iter().zip(cells) {
            let target = world.target(&cluster, *setup).await;
            let (found, twins_called) = check_cell(
                &cluster,
                &world,
                (method, twins),
                identity.token.as_deref(),
                *expected,
                &target,
            )
            .await;
            twin_calls += twins_called;
            problems.extend(
                found
                    .into_iter()
                    .map(|problem| format!("{service}/{method} as {}: {problem}", identity.label)),
            );
        }
    }
    cluster.stop().await;

    let count = |cell: Cell| {
        MATRIX
            .iter()
            .flat_map(|row| row.4)
            .filter(|c| *c == cell)
            .count()
    };
    println!(
        "authorization matrix: {} rows ({} RPCs) × {} identities = {} cells ({} allowed, {} \
         denied, {} unauthenticated; {twin_calls} calls about missing resources; {} on \
         {backend:?})",
        MATRIX.len(),
        covered.len(),
        COLUMNS.len(),
        MATRIX.len() * COLUMNS.len(),
        count(A) + count(G),
        count(D) + count(Dm) + count(Ds),
        count(U),
        if problems.is_empty() {
            "all agree"
        } else {
            "DISAGREEMENTS"
        },
    );
    assert!(
        problems.is_empty(),
        "{} disagreements with DESIGN.md §5:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The refusal checks themselves can fail: a secret in the message or in the details, or a
/// status without ErrorInfo, is caught, and different messages are different answers.
#[test]
fn the_refusal_checks_catch_what_they_look_for() {
    use std::collections::HashMap;
    use tonic_types::ErrorDetails;
    let secrets = vec!["Alpha Customer Display".to_string()];
    let refusal = |message: &str, metadata: HashMap<String, String>| {
        Status::with_error_details(
            Code::PermissionDenied,
            message,
            ErrorDetails::with_error_info("PERMISSION_DENIED", "tenantry", metadata),
        )
    };
    let clean = refusal("not allowed", HashMap::new());
    assert_eq!(leaks(&clean, &secrets), None);
    let named = refusal("Alpha Customer Display is not yours", HashMap::new());
    assert!(leaks(&named, &secrets).is_some());
    let detailed = refusal(
        "not allowed",
        HashMap::from([("account".to_string(), secrets[0].clone())]),
    );
    assert!(leaks(&detailed, &secrets).is_some());
    assert!(leaks(&Status::permission_denied("bare"), &secrets).is_some());
    assert!(same_answer(&clean, &refusal("not allowed", HashMap::new())));
    assert!(!same_answer(&clean, &named));
    assert!(!same_answer(&clean, &detailed));
}
