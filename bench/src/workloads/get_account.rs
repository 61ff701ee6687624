//! `GetAccount` of a managed customer by the partner's OWNER: authentication, membership's
//! `Authorize` (a call between services) and the registry's read. Ceiling: the same generated
//! service answering from memory (see [`super::echo`]), called by the same client settings
//! with the same request and token. The decision and the account are normally served from the
//! registry's local view (the notes give its hits and misses over the run).

use std::time::Duration;

use anyhow::Context;
use tenantry_proto::registry::v1::GetAccountRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;

use crate::cluster::{Bench, bearer, connect, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};

/// Measures GetAccount against the echo ceiling.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let customer = bench.create_customer(&format!("ga-{}", bench.tag)).await?;
    let token = bearer(&bench.owner)?;
    let request = GetAccountRequest {
        name: customer.clone(),
    };
    let service = CustomerRegistryServiceClient::new(bench.channel().await?);
    let answer = service
        .clone()
        .get_account(with_token(request.clone(), &token))
        .await
        .context("GetAccount before measuring")?
        .into_inner();
    let echo = super::echo::start(answer).await?;
    let ceiling = CustomerRegistryServiceClient::new(connect(echo.addr).await?);

    let call = |client: CustomerRegistryServiceClient<tonic::transport::Channel>| {
        let token = token.clone();
        let request = request.clone();
        move |_n: u64| {
            let mut client = client.clone();
            let request = with_token(request.clone(), &token);
            async move {
                let response = client.get_account(request).await?.into_inner();
                anyhow::ensure!(response.account.is_some(), "GetAccount returned no account");
                Ok(())
            }
        }
    };
    let phase = Phase::timed(settings.in_flight, settings.warmup, settings.window);
    let before = crate::cluster::lookups(&bench.cluster.metrics());
    let (ceiling, measured) = load::alternate(
        "GetAccount",
        settings.rounds,
        phase,
        call(ceiling),
        call(service),
    )
    .await?;
    let after = crate::cluster::lookups(&bench.cluster.metrics());
    let mut row = Row::rated(
        "GetAccount (authorization included)",
        &measured,
        &ceiling,
        Goal {
            ratio: 0.5,
            p50: None,
            p99: Some(Duration::from_millis(5)),
        },
        format!(
            "ceiling p50 {:.2} ms, p99 {:.2} ms; local view: {}",
            ms(ceiling.quantile(0.5)),
            ms(ceiling.quantile(0.99)),
            crate::cluster::describe_lookups(&before, &after)
        ),
    );
    // Both parts of the goal hold at this many calls in flight.
    row.goal = format!("{} at {} in flight", row.goal, settings.in_flight);
    Ok(row)
}

/// Milliseconds of an optional duration (0 when absent).
pub fn ms(duration: Option<Duration>) -> f64 {
    duration.map_or(0.0, |d| d.as_secs_f64() * 1e3)
}
