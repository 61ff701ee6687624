//! Membership's `Authorize`, as the registry calls it for every uncached `GetAccount`: a
//! service identity asks whether the partner's OWNER may read a managed customer
//! (ACCOUNT_READ). Two rows against the same ceiling technique (membership's own generated
//! service answering the same response from memory, see [`super::echo`]):
//!
//! - `bypass_view = false` (the default): answered from membership's local view — the goal.
//! - `bypass_view = true`: what a peer pays to fill its own view, the database path (no goal).

use anyhow::Context;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{AuthorizeRequest, Permission, Subject};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::get_account::ms;
use crate::cluster::{Bench, connect, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};

/// The service identity the calls present (the registry is Authorize's main caller).
const CALLER: &str = "customer-registry";

/// Measures Authorize from membership's view and past it, each against the echo ceiling.
pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let settings = &bench.settings;
    let customer = bench.create_customer(&format!("az-{}", bench.tag)).await?;
    let token: MetadataValue<Ascii> =
        format!("Bearer {}", bench.cluster.service_token(CALLER)).parse()?;
    let request = |bypass_view: bool| AuthorizeRequest {
        subject: Some(Subject {
            user: bench.owner.resource_name(),
            email: bench.owner.email.clone(),
            ..Subject::default()
        }),
        account: customer.clone(),
        permission: Permission::AccountRead as i32,
        bypass_view,
    };
    let service = MembershipServiceClient::new(bench.channel().await?);
    let answer = service
        .clone()
        .authorize(with_token(request(true), &token))
        .await
        .context("Authorize before measuring")?
        .into_inner();
    anyhow::ensure!(
        answer.allowed && answer.account_exists,
        "the partner's OWNER may not read its customer: {}",
        answer.reason
    );
    let echo = super::echo::start_membership(answer).await?;
    let ceiling = MembershipServiceClient::new(connect(echo.addr).await?);

    let call = |client: MembershipServiceClient<Channel>, request: AuthorizeRequest| {
        let token = token.clone();
        move |_n: u64| {
            let mut client = client.clone();
            let request = with_token(request.clone(), &token);
            async move {
                let response = client.authorize(request).await?.into_inner();
                anyhow::ensure!(response.allowed, "Authorize refused: {}", response.reason);
                Ok(())
            }
        }
    };
    let phase = Phase::timed(settings.in_flight, settings.warmup, settings.window);
    let mut rows = Vec::new();
    for (bypass_view, label, workload, goal) in [
        (
            false,
            "Authorize (view)",
            "Authorize, answered from membership's view",
            Some(0.6),
        ),
        (
            true,
            "Authorize (bypass_view)",
            "Authorize with bypass_view (database path)",
            None,
        ),
    ] {
        let (ceiling_measured, measured) = load::alternate(
            label,
            settings.rounds,
            phase,
            call(ceiling.clone(), request(bypass_view)),
            call(service.clone(), request(bypass_view)),
        )
        .await?;
        let notes = format!(
            "ceiling p50 {:.2} ms, p99 {:.2} ms",
            ms(ceiling_measured.quantile(0.5)),
            ms(ceiling_measured.quantile(0.99))
        );
        let mut row = Row::rated(
            workload,
            &measured,
            &ceiling_measured,
            Goal {
                ratio: goal.unwrap_or(0.0),
                p50: None,
                p99: None,
            },
            notes,
        );
        if goal.is_none() {
            row.goal = "none (what a peer's view fill costs)".into();
            row.met = None;
        }
        rows.push(row);
    }
    Ok(rows)
}
