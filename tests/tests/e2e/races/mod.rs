//! Races: many callers, each on its own connection, released at once against one resource —
//! creates of one identifier, acceptances of one invitation, single-read acknowledgements of
//! one message, AddMyself of one user, grants of a contested second OWNER seat. Each race runs
//! several rounds and must end with exactly one winner, the documented answer for every loser,
//! and no partial state: the rows in the service's own database and the events it published
//! (watched on the cluster's bus) say the same as the winner's answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tenantry_e2e::{add_member, create_customer, fresh_id, invite, partner_with_owner};
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::invitation::v1::{AcceptInvitationRequest, GetInvitationRequest};
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{
    AddMemberRequest, AddMyselfRequest, ListMembersRequest, Member, MemberSource, Role,
    UpdateMemberRequest, add_member_request,
};
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{
    AcknowledgeMessageRequest, AcknowledgeMessageResponse, GetMessageRequest,
    ListMessageReceiptsRequest, MessageState, ReadPolicy,
};
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, GetAccountRequest,
};
use tenantry_testkit::{Event, ServiceKind, Subscription, TestCluster, TestUser};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Callers released at once in every round.
const RACERS: usize = 16;
/// Rounds of every race.
const ROUNDS: usize = 4;

/// A bearer token on every call.
#[derive(Clone)]
struct Token(MetadataValue<Ascii>);

impl Token {
    fn of(user: &TestUser) -> Self {
        Self(
            format!("Bearer {}", user.token())
                .parse()
                .expect("a token is a valid header"),
        )
    }
}

impl Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Token>;

/// One HTTP/2 connection per racer, so the calls really run side by side on the server.
struct Racers {
    channels: Vec<Channel>,
}

impl Racers {
    async fn connect(cluster: &TestCluster) -> Self {
        let mut channels = Vec::with_capacity(RACERS);
        for _ in 0..RACERS {
            channels.push(
                Channel::from_shared(format!("http://{}", cluster.addr()))
                    .expect("url")
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        Self { channels }
    }

    fn registry(&self, racer: usize, user: &TestUser) -> CustomerRegistryServiceClient<Authed> {
        CustomerRegistryServiceClient::with_interceptor(
            self.channels[racer].clone(),
            Token::of(user),
        )
    }

    fn membership(&self, racer: usize, user: &TestUser) -> MembershipServiceClient<Authed> {
        MembershipServiceClient::with_interceptor(self.channels[racer].clone(), Token::of(user))
    }

    fn invitation(&self, racer: usize, user: &TestUser) -> InvitationServiceClient<Authed> {
        InvitationServiceClient::with_interceptor(self.channels[racer].clone(), Token::of(user))
    }

    fn notification(&self, racer: usize, user: &TestUser) -> NotificationServiceClient<Authed> {
        NotificationServiceClient::with_interceptor(self.channels[racer].clone(), Token::of(user))
    }

    /// Starts one call per racer (`call(racer)`), holds them all at a barrier, releases them
    /// together and returns every answer in racer order.
    async fn race<T, F, Fut>(&self, call: F) -> Vec<Result<T, Status>>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|racer| {
                let call = call(racer);
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    call.await
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(RACERS);
        for task in tasks {
            answers.push(task.await.expect("racer task"));
        }
        answers
    }
}

/// The one success among `answers` (its racer index and value); every other answer must be
/// `loser_code` with the ErrorInfo `loser_reason`.
#[track_caller]
fn single_winner<T: std::fmt::Debug>(
    what: &str,
    answers: Vec<Result<T, Status>>,
    loser_code: Code,
    loser_reason: &str,
) -> (usize, T) {
    let mut winner = None;
    for (racer, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(value) => {
                assert!(
                    winner.is_none(),
                    "{what}: a second winner (racer {racer}: {value:?})"
                );
                winner = Some((racer, value));
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    loser_code,
                    "{what}: racer {racer} lost with the wrong code: {status:?}"
                );
                let details = status.get_error_details();
                let reason = details.error_info().map(|info| info.reason.as_str());
                assert_eq!(
                    reason,
                    Some(loser_reason),
                    "{what}: racer {racer}: {status:?}"
                );
            }
        }
    }
    winner.unwrap_or_else(|| panic!("{what}: nobody won"))
}

/// A service's own database, read straight (what a partial write would leave behind).
struct Tables {
    database: DatabaseConnection,
}

impl Tables {
    async fn of(cluster: &TestCluster, kind: ServiceKind) -> Self {
        Self {
            database: sea_orm::Database::connect(cluster.database_url(kind))
                .await
                .expect("connect to the service's database"),
        }
    }

    /// The single integer `sql` selects (test-made identifiers only are spliced in).
    async fn count(&self, sql: &str) -> i64 {
        let backend = self.database.get_database_backend();
        self.database
            .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_string()))
            .await
            .expect("query")
            .expect("one row")
            .try_get_by_index::<i64>(0)
            .expect("an integer")
    }

    async fn outbox_is_empty(&self) -> bool {
        self.count("SELECT COUNT(*) FROM outbox").await == 0
    }

    async fn close(self) {
        let _ = self.database.close().await;
    }
}

/// What the cluster published since the last call: waits until `outboxes` are empty (every
/// committed event was handed to the bus), then drains the subscription.
async fn published(subscription: &mut Subscription, outboxes: &[&Tables]) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for tables in outboxes {
        while !tables.outbox_is_empty().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox never drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut events = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), subscription.recv()).await
    {
        events.push(event);
    }
    events
}

/// How many of `events` have type `event_type` and mention `needle` in their payload.
fn count_events(events: &[Event], event_type: &str, needle: &str) -> usize {
    events
        .iter()
        .filter(|event| event.event_type == event_type)
        .filter(|event| {
            event
                .payload
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
        .count()
}

/// Creates of one identifier: CreateAccount by an operator and CreateManagedCustomer by a
/// partner admin in turns; one ALREADY_EXISTS per loser, one row, one `account.created`.
async fn creates_of_one_identifier(cluster: &TestCluster) {
    let racers = Racers::connect(cluster).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, &fresh_id("partner"), "alice").await;
    let registry_tables = Tables::of(cluster, ServiceKind::CustomerRegistry).await;
    let mut events = cluster.subscribe_events(&["account.*"]).await;
    for round in 0..ROUNDS {
        let id = fresh_id("race");
        let answers = if round % 2 == 0 {
            racers
                .race(|racer| {
                    let mut client = racers.registry(racer, &operator);
                    let request = CreateAccountRequest {
                        account_id: id.clone(),
                        display_name: format!("Racer {racer}"),
                        request_id: String::new(),
                    };
                    async move {
                        client
                            .create_account(request)
                            .await
                            .map(|response| response.into_inner().account.expect("account"))
                    }
                })
                .await
        } else {
            racers
                .race(|racer| {
                    let mut client = racers.registry(racer, &partner.owner);
                    let request = CreateManagedCustomerRequest {
                        parent: partner.account.name.clone(),
                        customer_id: id.clone(),
                        display_name: format!("Racer {racer}"),
                        request_id: String::new(),
                    };
                    async move {
                        client
                            .create_managed_customer(request)
                            .await
                            .map(|response| response.into_inner().account.expect("account"))
                    }
                })
                .await
        };
        let what = format!("round {round}: create {id}");
        let (winner, account) =
            single_winner(&what, answers, Code::AlreadyExists, "ACCOUNT_ID_TAKEN");
        assert_eq!(account.display_name, format!("Racer {winner}"));
        let stored = cluster
            .registry_as(&operator)
            .get_account(GetAccountRequest {
                name: account.name.clone(),
            })
            .await
            .expect("get the account")
            .into_inner()
            .account
            .expect("account");
        assert_eq!(stored.display_name, account.display_name, "{what}");
        assert_eq!(stored.etag, account.etag, "{what}: written once");
        assert_eq!(
            registry_tables
                .count(&format!(
                    "SELECT COUNT(*) FROM accounts WHERE account_id = '{id}'"
                ))
                .await,
            1,
            "{what}"
        );
        let seen = published(&mut events, &[&registry_tables]).await;
        assert_eq!(
            count_events(&seen, "account.created", &account.name),
            1,
            "{what}: one account.created"
        );
    }
    registry_tables.close().await;
}

/// Everyone holding the link accepts one invitation at once (distinct logins with the invited
/// e-mail): one membership, ACCEPTED once by the winner, one `member.added`, and every loser
/// FAILED_PRECONDITION (accepted by someone else).
async fn acceptances_of_one_invitation(cluster: &TestCluster) {
    let racers = Racers::connect(cluster).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, &fresh_id("partner"), "alice").await;
    let customer = create_customer(cluster, &operator, &partner.account.name, &fresh_id("cust"))
        .await
        .expect("customer");
    let membership_tables = Tables::of(cluster, ServiceKind::Membership).await;
    let invitation_tables = Tables::of(cluster, ServiceKind::Invitation).await;
    let mut events = cluster
        .subscribe_events(&["member.added", "invitation.accepted"])
        .await;
    for round in 0..ROUNDS {
        let email = format!("{}@example.com", fresh_id("invitee"));
        let invitation = invite(cluster, &operator, &customer.name, &email, Role::Employee)
            .await
            .expect("invite");
        let token = link_token(cluster, &email).await;
        // The mailer records the secret's hash when it commits, just after the send: race
        // only once the link works (the invitation says SENT).
        wait_sent(cluster, &operator, &invitation.name).await;
        let logins: Vec<TestUser> = (0..RACERS)
            .map(|n| TestUser {
                email: email.clone(),
                ..TestUser::new(&format!("login{n}"))
            })
            .collect();
        let answers = racers
            .race(|racer| {
                let mut client = racers.invitation(racer, &logins[racer]);
                let request = AcceptInvitationRequest {
                    token: token.clone(),
                };
                async move {
                    client
                        .accept_invitation(request)
                        .await
                        .map(|response| response.into_inner().member.expect("member"))
                }
            })
            .await;
        let what = format!("round {round}: accept {}", invitation.name);
        let (winner, member) = single_winner(
            &what,
            answers,
            Code::FailedPrecondition,
            "INVITATION_ACCEPTED",
        );
        let winner = &logins[winner];
        assert_eq!(member.user, winner.resource_name(), "{what}");
        assert_eq!(member.source, MemberSource::Invitation as i32);
        let stored = cluster
            .invitation_as(&operator)
            .get_invitation(GetInvitationRequest {
                name: invitation.name.clone(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .expect("invitation");
        assert_eq!(stored.accepted_by, winner.resource_name(), "{what}");
        let racing_members: Vec<String> = all_members(cluster, &operator, &customer.name, &[])
            .await
            .into_iter()
            .filter(|member| logins.iter().any(|l| l.resource_name() == member.user))
            .map(|member| member.name)
            .collect();
        assert_eq!(racing_members, vec![member.name.clone()], "{what}");
        let account_id = customer.account_id.as_str();
        let login_ids: Vec<String> = logins.iter().map(|l| format!("'{}'", l.sub)).collect();
        assert_eq!(
            membership_tables
                .count(&format!(
                    "SELECT COUNT(*) FROM members WHERE account_id = '{account_id}' \
                     AND user_id IN ({})",
                    login_ids.join(", ")
                ))
                .await,
            1,
            "{what}: one member row among the racers"
        );
        let invitation_id = invitation.name.rsplit('/').next().expect("id");
        assert_eq!(
            invitation_tables
                .count(&format!(
                    "SELECT COUNT(*) FROM invitations WHERE invitation_id = '{invitation_id}' \
                     AND state = 'ACCEPTED' AND accepted_by = '{}'",
                    winner.resource_name()
                ))
                .await,
            1,
            "{what}"
        );
        let seen = published(&mut events, &[&membership_tables, &invitation_tables]).await;
        assert_eq!(
            count_events(&seen, "member.added", &member.name),
            1,
            "{what}"
        );
        for login in &logins {
            assert_eq!(
                count_events(&seen, "member.added", &login.resource_name()),
                usize::from(login.sub == winner.sub),
                "{what}: member.added for {}",
                login.sub
            );
        }
        assert_eq!(
            count_events(&seen, "invitation.accepted", &invitation.name),
            1,
            "{what}"
        );
    }
    membership_tables.close().await;
    invitation_tables.close().await;
}

async fn wait_sent(cluster: &TestCluster, actor: &TestUser, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let invitation = cluster
            .invitation_as(actor)
            .get_invitation(GetInvitationRequest {
                name: name.to_string(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .expect("invitation");
        let sent = tenantry_proto::invitation::v1::EmailDeliveryState::Sent as i32;
        if invitation
            .delivery
            .is_some_and(|delivery| delivery.state == sent)
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never SENT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The accept token of the newest invitation e-mail to `email` (the cluster writes `.eml`).
async fn link_token(cluster: &TestCluster, email: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mail) = cluster
            .mail_files()
            .into_iter()
            .rev()
            .find(|mail| mail.to.contains(email))
        {
            return mail.accept_token().expect("an accept link");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invitation e-mail to {email}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_members(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    roles: &[Role],
) -> Vec<Member> {
    cluster
        .membership_as(actor)
        .list_members(ListMembersRequest {
            parent: account.to_string(),
            page_size: 1000,
            page_token: String::new(),
            roles: roles.iter().map(|role| *role as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("list members")
        .into_inner()
        .members
}

mod more;

tenantry_testkit::on_both_backends!(create_race, super::creates_of_one_identifier);
tenantry_testkit::on_both_backends!(accept_race, super::acceptances_of_one_invitation);
tenantry_testkit::on_both_backends!(acknowledge_race, super::more::single_read_acknowledgements);
tenantry_testkit::on_both_backends!(add_myself_race, super::more::add_myself);
tenantry_testkit::on_both_backends!(owner_race, super::more::contested_owner_seat);
