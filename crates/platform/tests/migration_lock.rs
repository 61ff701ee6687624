//! Replicas starting together and the `tenantry migrate` Job migrate one PostgreSQL database
//! at the same time: the migration lock lets one apply the migrations while the others wait
//! and then find nothing pending. Without it, concurrent runs fail with duplicate-table and
//! duplicate-key errors. Needs `TENANTRY_TEST_POSTGRES_URL` (skipped without it, fatal under
//! `CI=true`).

use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::prelude::*;
use tenantry_platform::db::{self, Database};
use tenantry_platform::testing::TempPostgres;

/// Three migrations as real services have them: tables, an index, seed rows under a unique
/// key, and one that takes a moment (so concurrent runs overlap).
struct TestMigrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateWidgets),
            Box::new(SeedWidgets),
            Box::new(CreateGadgets),
        ]
    }

    fn migration_table_name() -> DynIden {
        "lock_test_migrations".into_iden()
    }
}

struct CreateWidgets;

impl MigrationName for CreateWidgets {
    fn name(&self) -> &str {
        "m0001_create_widgets"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateWidgets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("widgets")
                    .col(ColumnDef::new("id").string().not_null().primary_key())
                    .col(ColumnDef::new("size").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("SELECT pg_sleep(0.2)")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("widgets_by_size")
                    .table("widgets")
                    .col("size")
                    .to_owned(),
            )
            .await
    }
}

struct SeedWidgets;

impl MigrationName for SeedWidgets {
    fn name(&self) -> &str {
        "m0002_seed_widgets"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for SeedWidgets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO widgets (id, size) VALUES ('small', 1), ('large', 9)")
            .await
            .map(|_| ())
    }
}

struct CreateGadgets;

impl MigrationName for CreateGadgets {
    fn name(&self) -> &str {
        "m0003_create_gadgets"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateGadgets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("gadgets")
                    .col(ColumnDef::new("id").string().not_null().primary_key())
                    .to_owned(),
            )
            .await
    }
}

async fn count(database: &Database, sql: &str) -> i64 {
    let connection = database.connection().expect("connected");
    let row = connection
        .query_one_raw(Statement::from_string(
            connection.get_database_backend(),
            sql,
        ))
        .await
        .expect(sql)
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

#[tokio::test]
async fn concurrent_migrations_of_one_database_all_succeed() {
    const RUNS: usize = 4;
    let Some(temp) = TempPostgres::create("migration_lock").await else {
        return;
    };
    // Half start like replicas (`serve`: Database::connect_and_migrate), half like the Job
    // (`tenantry migrate`: a pool, then the migrations under the lock), each process its own pool.
    let mut runs = tokio::task::JoinSet::new();
    for run in 0..RUNS {
        let database = temp.database();
        let url = temp.url().to_string();
        runs.spawn(async move {
            if run % 2 == 0 {
                database.connect_and_migrate::<TestMigrator>().await
            } else {
                let connection = db::connect(&url).await?;
                db::with_migration_lock(&url, TestMigrator::up(&connection, None)).await?;
                let _ = connection.close().await;
                Ok(())
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(result) = runs.join_next().await {
        if let Err(error) = result.expect("the run panicked") {
            failures.push(error.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "concurrent migrations failed: {failures:#?}"
    );

    let database = temp.database();
    database
        .connect_and_migrate::<TestMigrator>()
        .await
        .expect("nothing left to apply");
    assert_eq!(
        count(&database, "SELECT COUNT(*) FROM lock_test_migrations").await,
        3
    );
    assert_eq!(count(&database, "SELECT COUNT(*) FROM widgets").await, 2);
    assert_eq!(count(&database, "SELECT COUNT(*) FROM gadgets").await, 0);
    assert_eq!(
        count(
            &database,
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'widgets_by_size'"
        )
        .await,
        1
    );
    // Every lock on this database was released (pg_locks spans the server: other tests'
    // databases take the same key at the same time).
    assert_eq!(
        count(
            &database,
            &format!(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {} \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                db::MIGRATION_LOCK_KEY as u64 & 0xffff_ffff
            )
        )
        .await,
        0
    );
    if let Ok(connection) = database.connection() {
        let _ = connection.clone().close().await;
    }
}

#[tokio::test]
async fn the_lock_works_with_a_pool_of_one() {
    let Some(temp) = TempPostgres::create("migration_lock_one").await else {
        return;
    };
    let connection = db::connect_with_pool_size(temp.url(), 1)
        .await
        .expect("connect");
    assert_eq!(
        connection
            .get_postgres_connection_pool()
            .options()
            .get_max_connections(),
        1
    );
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        db::with_migration_lock(temp.url(), TestMigrator::up(&connection, None)),
    )
    .await
    .expect("no deadlock between the lock and a one-connection pool")
    .expect("migrated");
    let _ = connection.close().await;
}
