//! `SendMessage` to many listed customers: its latency (one call at a time, the message
//! accepted; the fan-out runs afterwards in the background), and what each call cost the
//! customer registry, counted from the cluster's `grpc_server_handled_total`. The goal is
//! one registry call per message (BatchGetAccounts for the partner and every recipient),
//! whatever the number of recipients. No ceiling: the figure is the latency itself.

use std::time::Instant;

use anyhow::Context;
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{ReadPolicy, SendMessageRequest};

use crate::cluster::{Bench, bearer, with_token};
use crate::report::Row;

const REGISTRY: &str = "tenantry.registry.v1.CustomerRegistryService";

/// Calls the registry served so far, all methods and outcomes.
fn registry_calls(metrics: &str) -> f64 {
    let service = format!("grpc_service=\"{REGISTRY}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{") && line.contains(&service))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Measures `settings.send_messages` SendMessage calls to `settings.send_customers` customers.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let (customers, messages) = (settings.send_customers, settings.send_messages);
    eprintln!("  creating {customers} customers…");
    let mut recipients = Vec::with_capacity(customers);
    for i in 0..customers {
        recipients.push(
            bench
                .create_customer(&format!("sm-{}-{i}", bench.tag))
                .await?,
        );
    }
    let mut client = NotificationServiceClient::new(bench.channel().await?);
    let token = bearer(&bench.owner)?;
    let send = |title: String| {
        with_token(
            SendMessageRequest {
                parent: bench.partner_name(),
                title,
                body: "Maintenance tonight: please read this at login.".into(),
                read_policy: ReadPolicy::SingleReadOnly as i32,
                recipients: recipients.clone(),
                ..Default::default()
            },
            &token,
        )
    };
    // One call first, so what the process keeps between calls (the sender's authorization)
    // is warm and counted out.
    client
        .send_message(send("warm-up".into()))
        .await
        .context("SendMessage (warm-up)")?;
    let before = registry_calls(&bench.cluster.metrics());
    let mut latencies = Vec::with_capacity(messages);
    for n in 0..messages {
        let started = Instant::now();
        let message = client
            .send_message(send(format!("Maintenance {n}")))
            .await
            .context("SendMessage")?
            .into_inner()
            .message
            .context("SendMessage returned no message")?;
        latencies.push(started.elapsed());
        anyhow::ensure!(
            message.recipients.len() == customers,
            "the message names {} recipients, expected {customers}",
            message.recipients.len()
        );
    }
    let calls = (registry_calls(&bench.cluster.metrics()) - before) / messages as f64;
    Ok(Row::latencies(
        &format!("SendMessage to {customers} listed customers (one call in flight)"),
        &latencies,
        "one registry call per message",
        Some(calls <= 1.0),
        format!("{calls:.2} registry calls per message over {messages} messages"),
    ))
}
