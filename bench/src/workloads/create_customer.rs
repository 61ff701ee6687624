//! `CreateManagedCustomer` by the partner's OWNER: authentication, `Authorize`, the parent
//! check and one transaction with the account row and its `account.created` outbox row (the
//! relay then publishes it, and membership's replica consumes it, in the same process).
//! Ceiling: a raw sqlx transaction doing the same two inserts (same columns, an event payload
//! of the same size) through a pool as large as the service's, into a scratch database with the
//! registry's schema (in the registry's own database the relay would publish the ceiling's
//! rows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use prost::Message;
use sea_orm::sqlx::PgPool;
use tenantry_proto::registry::v1::CreateManagedCustomerRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;

use crate::cluster::{Bench, SERVICE_POOL_SIZE, bearer, pool, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};

/// Measures CreateManagedCustomer against the raw-transaction ceiling.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let token = bearer(&bench.owner)?;
    let parent = bench.partner_name();
    let client = CustomerRegistryServiceClient::new(bench.channel().await?);
    // One real create gives the event payload the ceiling writes (same size).
    let sample = client
        .clone()
        .create_managed_customer(with_token(
            CreateManagedCustomerRequest {
                parent: parent.clone(),
                customer_id: format!("cc-{}-sample", bench.tag),
                display_name: "Customer sample".into(),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .context("CreateManagedCustomer before measuring")?
        .into_inner()
        .account
        .context("no account")?;
    // The provenance the service fills from the call (a person acting as the partner's OWNER,
    // the call's request id and trace id), so the payload has the size of a real one.
    let provenance = tenantry_proto::events::v1::Provenance {
        actor_kind: tenantry_proto::events::v1::ActorKind::Person as i32,
        actor_role: "OWNER".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        ..Default::default()
    };
    let payload = tenantry_proto::events::v1::AccountCreated {
        account: Some(sample),
        actor: bench.owner.resource_name(),
        provenance: Some(provenance),
    }
    .encode_to_vec();
    let scratch = bench
        .scratch_database::<tenantry_registry::Migrator>("registry")
        .await?;
    let ceiling_pool = pool(&scratch, SERVICE_POOL_SIZE).await?;

    let tag = bench.tag.clone();
    let next_id = Arc::new(AtomicU64::new(0));
    let workload = {
        let (next_id, tag) = (next_id.clone(), tag.clone());
        move |_n: u64| {
            let mut client = client.clone();
            let id = format!("cc-{tag}-{}", next_id.fetch_add(1, Ordering::Relaxed));
            let request = with_token(
                CreateManagedCustomerRequest {
                    parent: parent.clone(),
                    display_name: format!("Customer {id}"),
                    customer_id: id,
                    request_id: String::new(),
                },
                &token,
            );
            async move {
                client.create_managed_customer(request).await?;
                Ok(())
            }
        }
    };
    let ceiling = {
        let (partner, creator) = (bench.partner.clone(), bench.owner.resource_name());
        let payload = Arc::new(payload);
        move |_n: u64| {
            let id = format!("cc-{tag}-{}", next_id.fetch_add(1, Ordering::Relaxed));
            insert_like_the_registry(
                ceiling_pool.clone(),
                id,
                partner.clone(),
                creator.clone(),
                payload.clone(),
            )
        }
    };
    let phase = Phase::timed(settings.in_flight, settings.warmup, settings.window);
    let (ceiling, measured) = load::alternate(
        "CreateManagedCustomer",
        settings.rounds,
        phase,
        ceiling,
        workload,
    )
    .await?;
    Ok(Row::rated(
        "CreateManagedCustomer",
        &measured,
        &ceiling,
        // Issue 14's goal.
        Goal {
            ratio: 0.5,
            p50: None,
            p99: None,
        },
        format!(
            "ceiling p50 {:.2} ms, p99 {:.2} ms",
            super::get_account::ms(ceiling.quantile(0.5)),
            super::get_account::ms(ceiling.quantile(0.99))
        ),
    ))
}

/// The account row and its outbox row in one transaction, as the registry writes them.
async fn insert_like_the_registry(
    pool: PgPool,
    account_id: String,
    partner: String,
    creator: String,
    payload: Arc<Vec<u8>>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let mut txn = pool.begin().await?;
    sea_orm::sqlx::query(
        "INSERT INTO accounts (account_id, display_name, partner, managed_by, state, creator, \
         version, create_time, update_time, delete_time) \
         VALUES ($1, $2, false, $3, 'ACTIVE', $4, 1, $5, $5, NULL)",
    )
    .bind(&account_id)
    .bind(format!("Customer {account_id}"))
    .bind(&partner)
    .bind(&creator)
    .bind(now)
    .execute(&mut *txn)
    .await?;
    sea_orm::sqlx::query(
        "INSERT INTO outbox (event_id, event_type, source, time, payload, traceparent, \
         tracestate, create_time) VALUES ($1, 'account.created', '/tenantry/customer-registry', \
         $2, $3, NULL, NULL, $2)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now)
    .bind(payload.as_slice())
    .execute(&mut *txn)
    .await?;
    txn.commit().await?;
    Ok(())
}
