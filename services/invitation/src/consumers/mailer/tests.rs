//! The mailer against a real SQLite file and the `.eml` file transport.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sea_orm::TransactionTrait;
use tenantry_platform::{AccountId, ApiError};

use super::*;
use crate::domain::DeliveryState;
use crate::domain::secret::hash_token;
use crate::peers::AccountFacts;
use crate::store::tests::{TempStore, new_invitation, outbox_rows, temp_store};
use tenantry_mail::FileTransport;

#[derive(Debug)]
struct FakeAccounts(Option<AccountFacts>);

#[async_trait::async_trait]
impl AccountDirectory for FakeAccounts {
    async fn account(&self, _account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        Ok(self.0.clone())
    }
}

fn globex() -> Arc<dyn AccountDirectory> {
    Arc::new(FakeAccounts(Some(AccountFacts {
        display_name: "Globex Corporation".into(),
        state: AccountState::Active,
    })))
}

/// A transport that refuses every message, as an unreachable server would.
#[derive(Debug, Default)]
struct Unreachable {
    tried: Mutex<usize>,
}

#[async_trait::async_trait]
impl MailTransport for Unreachable {
    async fn send(&self, _message: lettre::Message) -> Result<(), MailError> {
        *self.tried.lock().unwrap() += 1;
        Err(MailError::transient("connection refused (os error 111)"))
    }
}

struct MailDir(PathBuf);

impl MailDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("invitation-mail-{}", uuid::Uuid::new_v4())))
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default();
        files.retain(|path| path.extension().is_some_and(|ext| ext == "eml"));
        files.sort();
        files
    }
}

impl Drop for MailDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mailer(accounts: Arc<dyn AccountDirectory>, mail: Arc<dyn MailTransport>) -> Mailer {
    Mailer::new(
        accounts,
        mail,
        "https://tenantry.example.com/",
        "Tenantry <no-reply@tenantry.invalid>".parse().unwrap(),
    )
}

/// Quoted-printable decoding of a whole file (enough to read the link back).
fn unquote(raw: &str) -> String {
    let unfolded = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = unfolded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&unfolded[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every token of an accept link in the e-mail.
fn tokens_in(eml: &Path) -> Vec<String> {
    let text = unquote(&std::fs::read_to_string(eml).unwrap());
    text.match_indices("/invitations/accept?token=")
        .map(|(at, marker)| text[at + marker.len()..].chars().take(43).collect())
        .collect()
}

/// What the consumer runtime does with one delivery: prepare (claim and send, no transaction
/// open), then the transaction recording SENT.
async fn handle(temp: &TempStore, mailer: &Mailer, event: &Event) -> Result<(), HandlerError> {
    let connection = temp.database.connection().unwrap();
    let prepared = mailer.prepare(connection, event).await?;
    let txn = connection.begin().await.unwrap();
    let result = mailer.handle_prepared(&txn, event, &prepared).await;
    if result.is_ok() {
        txn.commit().await.unwrap();
    }
    result
}

/// Every byte the database keeps (main file and write-ahead log).
fn database_bytes(temp: &TempStore) -> Vec<u8> {
    let mut bytes = std::fs::read(temp.path()).unwrap();
    bytes.extend(std::fs::read(format!("{}-wal", temp.path().display())).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn sends_a_real_eml_and_stores_only_the_hash() {
    let temp = temp_store().await;
    let dir = MailDir::new();
    let mailer = mailer(globex(), Arc::new(FileTransport::new(&dir.0).unwrap()));
    let now = tenantry_platform::time::now();
    let invitation = temp
        .store
        .create(&new_invitation("globex", "Bob@Example.com", now), None, now)
        .await
        .unwrap();
    let event = crate::events::created(&invitation, "users/alice", now);

    handle(&temp, &mailer, &event).await.unwrap();

    let files = dir.files();
    assert_eq!(files.len(), 1, "one .eml written");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        raw.contains("Subject: Alice Admin invited you to Globex Corporation on Tenantry"),
        "{raw}"
    );
    assert!(raw.contains(&format!(
        "Message-ID: <invitation-{}@tenantry.invalid>",
        event.id
    )));
    assert!(raw.contains("Bob@Example.com"));
    let text = unquote(&raw);
    assert!(text.contains("as Admin"));
    assert!(
        text.contains(
            &invitation
                .expire_time
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        )
    );
    let tokens = tokens_in(&files[0]);
    assert_eq!(tokens.len(), 3, "text link, HTML href and HTML text");
    assert!(tokens.iter().all(|token| token == &tokens[0]));
    let token = &tokens[0];
    assert_eq!(token.len(), 43);
    assert!(text.contains(&format!(
        "https://tenantry.example.com/invitations/accept?token={token}"
    )));

    // Only the hash is stored; the link finds the invitation through it.
    let stored = crate::store::mailer::secret_hash(
        temp.database.connection().unwrap(),
        &invitation.invitation_id,
    )
    .await
    .unwrap();
    assert_eq!(stored, Some(hash_token(token)));
    let found = temp
        .store
        .find_by_secret_hash(&hash_token(token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.invitation_id, invitation.invitation_id);
    assert_eq!(found.delivery.state, DeliveryState::Sent);
    assert_eq!(found.delivery.attempts, 1);
    assert!(found.delivery.sent_time.is_some());
    // The secret itself is nowhere in the database: not in a table, not in the outbox.
    assert!(!contains(&database_bytes(&temp), token));
    for (_, payload) in outbox_rows(&temp.database).await {
        assert!(!contains(&payload, token));
        assert!(!contains(&payload, &hash_token(token)));
    }
}

#[tokio::test]
async fn a_resend_supersedes_the_earlier_email() {
    let temp = temp_store().await;
    let dir = MailDir::new();
    let mailer = mailer(globex(), Arc::new(FileTransport::new(&dir.0).unwrap()));
    let now = tenantry_platform::time::now();
    let invitation = temp
        .store
        .create(&new_invitation("globex", "bob@example.com", now), None, now)
        .await
        .unwrap();
    let created = crate::events::created(&invitation, "users/alice", now);
    handle(&temp, &mailer, &created).await.unwrap();
    let first_token = tokens_in(&dir.files()[0])[0].clone();

    let sent = temp
        .store
        .get(&invitation.invitation_id)
        .await
        .unwrap()
        .unwrap();
    let resent = temp
        .store
        .resend(
            &sent,
            "users/alice",
            chrono::Duration::days(7),
            chrono::Duration::zero(),
            now,
        )
        .await
        .unwrap()
        .unwrap();
    // A late redelivery of the first event sends nothing.
    handle(&temp, &mailer, &created).await.unwrap();
    assert_eq!(dir.files().len(), 1);

    handle(
        &temp,
        &mailer,
        &crate::events::resent(&resent, &sent, "users/alice", now),
    )
    .await
    .unwrap();
    let files = dir.files();
    assert_eq!(files.len(), 2);
    let second_token = files
        .iter()
        .flat_map(|file| tokens_in(file))
        .find(|token| token != &first_token)
        .expect("a new secret");
    assert!(
        temp.store
            .find_by_secret_hash(&hash_token(&first_token))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        temp.store
            .find_by_secret_hash(&hash_token(&second_token))
            .await
            .unwrap()
            .is_some()
    );

    // A revoked invitation gets no e-mail.
    let current = temp
        .store
        .get(&invitation.invitation_id)
        .await
        .unwrap()
        .unwrap();
    let revoked = temp
        .store
        .revoke(&current, "users/alice", now)
        .await
        .unwrap()
        .unwrap();
    handle(
        &temp,
        &mailer,
        &crate::events::resent(&revoked, &current, "users/alice", now),
    )
    .await
    .unwrap();
    assert_eq!(dir.files().len(), 2);
}

#[tokio::test]
async fn failures_are_retried_and_recorded_outside_the_transaction() {
    let temp = temp_store().await;
    let transport = Arc::new(Unreachable::default());
    let mailer = mailer(globex(), transport.clone());
    let now = tenantry_platform::time::now();
    let invitation = temp
        .store
        .create(&new_invitation("globex", "bob@example.com", now), None, now)
        .await
        .unwrap();
    let event = crate::events::created(&invitation, "users/alice", now);
    let connection = temp.database.connection().unwrap();

    let error = handle(&temp, &mailer, &event).await.unwrap_err();
    assert!(matches!(error, HandlerError::Transient(_)), "{error:?}");
    assert_eq!(*transport.tried.lock().unwrap(), 1);
    mailer.failed(connection, &event, 1, &error, false).await;
    let seen = temp
        .store
        .get(&invitation.invitation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.delivery.state, DeliveryState::Queued);
    assert_eq!(seen.delivery.attempts, 1);
    assert!(seen.delivery.failure_reason.contains("connection refused"));
    // The failed attempt's hash stays (a failure after the data was handed over may still be
    // delivered), and its lease is released: the retry need not wait for it.
    let first_hash = crate::store::mailer::secret_hash(connection, &invitation.invitation_id)
        .await
        .unwrap();
    assert!(first_hash.is_some());

    let error = handle(&temp, &mailer, &event).await.unwrap_err();
    mailer.failed(connection, &event, 2, &error, true).await;
    let seen = temp
        .store
        .get(&invitation.invitation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.delivery.state, DeliveryState::Failed);
    assert_eq!(seen.delivery.attempts, 2);
    assert!(seen.delivery.last_attempt_time.is_some());
}

#[tokio::test]
async fn an_unavailable_registry_is_transient_and_a_deleted_account_gets_no_email() {
    #[derive(Debug)]
    struct Down;
    #[async_trait::async_trait]
    impl AccountDirectory for Down {
        async fn account(&self, _: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
            Err(ApiError::unavailable(
                "customer registry is unavailable; retry later",
            ))
        }
    }
    let temp = temp_store().await;
    let dir = MailDir::new();
    let transport = Arc::new(FileTransport::new(&dir.0).unwrap());
    let now = tenantry_platform::time::now();
    let invitation = temp
        .store
        .create(&new_invitation("globex", "bob@example.com", now), None, now)
        .await
        .unwrap();
    let event = crate::events::created(&invitation, "users/alice", now);
    let error = handle(&temp, &mailer(Arc::new(Down), transport.clone()), &event)
        .await
        .unwrap_err();
    assert!(matches!(error, HandlerError::Transient(_)));
    let deleted = Arc::new(FakeAccounts(Some(AccountFacts {
        display_name: "Globex".into(),
        state: AccountState::Deleted,
    })));
    handle(&temp, &mailer(deleted, transport), &event)
        .await
        .unwrap();
    assert!(dir.files().is_empty());
    // Events of other types are refused as unknown (and send nothing); a garbled payload is
    // permanent.
    let mut other = event.clone();
    other.event_type = "member.added".into();
    let transport = Arc::new(Unreachable::default());
    assert!(matches!(
        handle(&temp, &mailer(globex(), transport.clone()), &other).await,
        Err(HandlerError::UnknownType(_))
    ));
    assert_eq!(*transport.tried.lock().unwrap(), 0);
    let mut garbled = event.clone();
    garbled.payload = vec![0xff, 0xff, 0xff];
    assert!(matches!(
        handle(
            &temp,
            &mailer(globex(), Arc::new(Unreachable::default())),
            &garbled
        )
        .await,
        Err(HandlerError::Permanent(_))
    ));
}

#[tokio::test]
async fn a_copy_of_the_event_waits_for_the_lease_and_a_lapsed_lease_is_claimed_again() {
    let temp = temp_store().await;
    let dir = MailDir::new();
    let mailer = mailer(globex(), Arc::new(FileTransport::new(&dir.0).unwrap()))
        .with_lease(std::time::Duration::from_secs(30));
    let connection = temp.database.connection().unwrap();
    let now = tenantry_platform::time::now();
    let held = temp
        .store
        .create(
            &new_invitation("globex", "held@example.com", now),
            None,
            now,
        )
        .await
        .unwrap();
    let lapsed = temp
        .store
        .create(
            &new_invitation("globex", "lapsed@example.com", now),
            None,
            now,
        )
        .await
        .unwrap();

    // Another attempt is sending `held` for the next 30 s: a copy of the event waits it out,
    // without an attempt used and without an e-mail.
    let other = crate::store::mailer::claim(
        connection,
        &held.invitation_id,
        0,
        "another-attempt",
        &hash_token("the other attempt's secret"),
        now + chrono::Duration::seconds(30),
        now,
    )
    .await
    .unwrap();
    assert!(matches!(other, Claim::Claimed(_)), "{other:?}");
    let event = crate::events::created(&held, "users/alice", now);
    let error = handle(&temp, &mailer, &event).await.unwrap_err();
    let HandlerError::Busy { retry_after, .. } = &error else {
        panic!("expected Busy, got {error:?}");
    };
    assert!(
        *retry_after > std::time::Duration::from_secs(25),
        "{retry_after:?}"
    );
    assert!(dir.files().is_empty());
    // Its failure is not recorded as the e-mail's.
    mailer.failed(connection, &event, 1, &error, false).await;
    let seen = temp.store.get(&held.invitation_id).await.unwrap().unwrap();
    assert_eq!(seen.delivery.attempts, 0);

    // An attempt that claimed `lapsed` died after its SMTP server may have taken the e-mail:
    // once its lease has lapsed, a redelivery sends again, and both links work.
    let died = chrono::Duration::seconds(60);
    crate::store::mailer::claim(
        connection,
        &lapsed.invitation_id,
        0,
        "dead-attempt",
        &hash_token("the dead attempt's secret"),
        now - died + chrono::Duration::seconds(30),
        now - died,
    )
    .await
    .unwrap();
    let event = crate::events::created(&lapsed, "users/alice", now);
    handle(&temp, &mailer, &event).await.unwrap();
    let files = dir.files();
    assert_eq!(files.len(), 1);
    let token = tokens_in(&files[0])[0].clone();
    for secret in [token.as_str(), "the dead attempt's secret"] {
        let found = temp
            .store
            .find_by_secret_hash(&hash_token(secret))
            .await
            .unwrap()
            .expect("either link finds the invitation");
        assert_eq!(found.invitation_id, lapsed.invitation_id);
        assert_eq!(found.delivery.state, DeliveryState::Sent);
    }
    // A late copy of the same event now finds it SENT and sends nothing.
    handle(&temp, &mailer, &event).await.unwrap();
    assert_eq!(dir.files().len(), 1);
}

/// An invitation still PENDING in its row but past its expiry (nothing has marked it EXPIRED
/// yet) gets no e-mail, and the claim leaves it as it was: no lease, no secret.
#[tokio::test]
async fn an_invitation_past_its_expiry_gets_no_email() {
    let temp = temp_store().await;
    let dir = MailDir::new();
    let transport = Arc::new(FileTransport::new(&dir.0).unwrap());
    let now = tenantry_platform::time::now();
    let created = now - chrono::Duration::days(8);
    let invitation = temp
        .store
        .create(
            &new_invitation("globex", "bob@example.com", created),
            None,
            created,
        )
        .await
        .unwrap();
    assert!(invitation.expire_time < now);
    let event = crate::events::created(&invitation, "users/alice", created);
    handle(&temp, &mailer(globex(), transport), &event)
        .await
        .unwrap();
    assert!(dir.files().is_empty());
    let stored = crate::store::load(
        temp.database.connection().unwrap(),
        &invitation.invitation_id,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stored, invitation, "untouched");
}
