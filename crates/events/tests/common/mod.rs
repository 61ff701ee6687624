//! Test support over real parts: RabbitMQ, PostgreSQL (a fresh database per test), SQLite temp
//! files, a TCP proxy that plays a broker going away, and a scriptable handler.
//!
//! Outside CI a missing RabbitMQ or PostgreSQL skips the test (prints "skipped", and the first
//! skip of each test binary says on the terminal which suite did not run); with `CI=true` it
//! fails it.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use sea_orm_migration::prelude::*;
use tenantry_events::{Event, Handler, HandlerError, outbox_migration, processed_events_migration};
use tenantry_platform::db::Database;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const BROKER_ADDR: &str = "127.0.0.1:5672";
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

fn unavailable(what: &str, error: &dyn std::fmt::Display) {
    if ci() {
        panic!("{what} is required when CI=true: {error}");
    }
    println!("skipped: {what} is not reachable ({error})");
    note_not_run(what, error);
}

/// Says once per test binary, on the terminal, that the tests needing `what` (RabbitMQ or
/// PostgreSQL) did not run: a skipped test still passes, so without this a run on a machine
/// without the servers could pass for the full one. Written straight to stderr, which
/// libtest does not capture (it captures only the `print!`/`eprint!` macros).
fn note_not_run(what: &str, error: &dyn std::fmt::Display) {
    use std::io::Write;
    use std::sync::Once;
    static RABBITMQ: Once = Once::new();
    static POSTGRES: Once = Once::new();
    let (once, url) = if what == "RabbitMQ" {
        (&RABBITMQ, AMQP_URL)
    } else {
        (&POSTGRES, POSTGRES_URL)
    };
    once.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: the {what} suite did not run in this test binary: {url} is not reachable \
             ({error}); these tests use that fixed address, not TENANTRY_TEST_*_URL: start \
             {what} there to run it"
        );
    });
}

/// A unique prefix for this test's exchange and queues.
pub fn prefix(test: &str) -> String {
    format!("test.{test}.{}.", &Uuid::new_v4().simple().to_string()[..8])
}

/// A connection to the real broker, or None (skip) when it is not running outside CI.
pub async fn broker() -> Option<Connection> {
    let connect = Connection::connect(AMQP_URL, ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(error)) => {
            unavailable("RabbitMQ", &error);
            None
        }
        Err(error) => {
            unavailable("RabbitMQ", &error);
            None
        }
    }
}

/// A queue of the test's own, bound to `exchange` (declared here) with `routing_key`.
pub async fn tap(channel: &Channel, exchange: &str, queue: &str, routing_key: &str) {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare tap queue");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind tap queue");
}

/// Takes up to `count` messages from `queue`, waiting at most `within` in total.
pub async fn drain(
    channel: &Channel,
    queue: &str,
    count: usize,
    within: Duration,
) -> Vec<lapin::message::BasicGetMessage> {
    let deadline = tokio::time::Instant::now() + within;
    let mut messages = Vec::new();
    while messages.len() < count && tokio::time::Instant::now() < deadline {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            Some(message) => {
                message.ack(BasicAckOptions::default()).await.expect("ack");
                messages.push(message);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    messages
}

/// Deletes the test's queues (the ones given, plus each group's .retry and .dead) and exchange.
pub async fn cleanup(channel: &Channel, exchange: &str, queues: &[&str]) {
    // The delay levels of the policies these tests use.
    let policies = [
        tenantry_events::RetryPolicy::default(),
        tenantry_events::RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        tenantry_events::RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(20),
        },
        tenantry_events::RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        },
    ];
    for queue in queues {
        let names = policies
            .iter()
            .flat_map(|policy| tenantry_events::group_queues("", queue, policy));
        for name in names {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    // The events' exchange and the control messages' (heartbeats) beside it.
    for exchange in [exchange.to_string(), format!("{exchange}.control")] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// A fresh PostgreSQL database, dropped by [`PgDatabase::drop_database`].
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin: sea_orm::DatabaseConnection,
}

impl PgDatabase {
    /// Creates one, or None (skip) when PostgreSQL is not running outside CI.
    pub async fn create() -> Option<Self> {
        let admin = match sea_orm::Database::connect(POSTGRES_URL).await {
            Ok(admin) => admin,
            Err(error) => {
                unavailable("PostgreSQL", &error);
                return None;
            }
        };
        let name = format!("events_test_{}", Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        Some(Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
            admin,
        })
    }

    pub async fn drop_database(self, databases: &[&Database]) {
        for database in databases {
            if let Ok(connection) = database.connection() {
                let _ = connection.clone().close().await;
            }
        }
        let _ = self
            .admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// A SQLite file in the temp directory, removed by [`SqliteFile::remove`].
pub struct SqliteFile {
    pub url: String,
    path: std::path::PathBuf,
}

impl SqliteFile {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("tenantry-events-{}.db", Uuid::new_v4()));
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            path,
        }
    }

    pub fn remove(self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The tables of a service that both publishes and consumes, plus `handled` for the handler.
pub struct TestMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateHandled),
            outbox_migration(),
            processed_events_migration(),
        ]
    }
}

#[derive(DeriveMigrationName)]
struct CreateHandled;

#[async_trait::async_trait]
impl MigrationTrait for CreateHandled {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("handled"))
                    .col(
                        ColumnDef::new(Alias::new("event_id"))
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// A migrated database at `url`.
pub async fn database(url: &str) -> Database {
    let database = Database::new(url);
    database
        .connect_and_migrate::<TestMigrator>()
        .await
        .expect("migrate");
    database
}

/// How many rows `table` has.
pub async fn count(database: &Database, table: &str) -> i64 {
    let connection = database.connection().expect("connected");
    let query = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from(Alias::new(table))
        .to_owned();
    let row = connection
        .query_one(&query)
        .await
        .expect("count")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

/// A handler scripted by the payload (a protobuf string): "ok" succeeds, "fail-N" fails
/// transiently N times then succeeds, "busy-MS" is busy (retry after MS milliseconds) the first
/// time then succeeds, "always" always fails transiently, "permanent" fails permanently. Success inserts the event id into `handled` inside the runtime's transaction.
#[derive(Default)]
pub struct Scripted {
    calls: Mutex<HashMap<Uuid, u32>>,
}

impl Scripted {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn calls(&self, id: Uuid) -> u32 {
        self.calls
            .lock()
            .expect("lock")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Handler for Scripted {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        let script: String = event.decode()?;
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            let call = calls.entry(event.id).or_default();
            *call += 1;
            *call
        };
        let fail = match script.as_str() {
            "always" => Some(HandlerError::Transient("scripted: always".into())),
            "permanent" => Some(HandlerError::Permanent("scripted: permanent".into())),
            other if other.starts_with("busy-") && call == 1 => {
                let millis = other["busy-".len()..].parse().unwrap_or(1_000);
                Some(HandlerError::Busy {
                    reason: "scripted: busy".into(),
                    retry_after: Duration::from_millis(millis),
                })
            }
            other => match other
                .strip_prefix("fail-")
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) if call <= n => Some(HandlerError::Transient(format!("scripted: {call}"))),
                _ => None,
            },
        };
        if let Some(error) = fail {
            return Err(error);
        }
        let insert = Query::insert()
            .into_table(Alias::new("handled"))
            .columns([Alias::new("event_id")])
            .values_panic([event.id.to_string().into()])
            .to_owned();
        txn.execute(&insert)
            .await
            .map_err(|error| HandlerError::Transient(error.to_string()))?;
        Ok(())
    }
}

/// An event whose payload is `script` (see [`Scripted`]).
pub fn event(event_type: &str, script: &str) -> Event {
    Event::new(event_type, "/tenantry/test", &script.to_string())
}

/// Waits until `condition` holds, polling; false after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port nothing listens on (bound, then closed).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

/// A TCP proxy in front of the broker: `cut` drops every proxied connection, as a broker
/// restart does from the client's side.
pub struct Proxy {
    listener: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(port: u16, target: &'static str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let listener = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(task);
            }
        });
        Self {
            listener,
            connections,
        }
    }

    /// Drops every connection going through the proxy (new ones are still accepted).
    pub fn cut(&self) {
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    pub fn stop(self) {
        self.listener.abort();
        self.cut();
    }
}
