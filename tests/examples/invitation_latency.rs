//! Measures the latency from `CreateInvitation` returning to the invitation e-mail being
//! received by a real SMTP server (aiosmtpd), on the production shape: PostgreSQL, RabbitMQ,
//! relay with publisher confirms, mailer, SMTP. Prints the median and tail of N invitations
//! sent one after the other.
//!
//! ```text
//! TENANTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! TENANTRY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!   cargo run --release -p tenantry-e2e --example invitation_latency -- 100
//! ```
//! Add `--embedded` to measure the embedded default instead (SQLite, in-process bus, SMTP).

use std::time::{Duration, Instant};

use tenantry_e2e::{invite, partner_admin_in_customer};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let embedded = args.iter().any(|arg| arg == "--embedded");
    let count: usize = args.iter().find_map(|arg| arg.parse().ok()).unwrap_or(100);

    let smtp = SmtpServer::start().await;
    let mut options = ClusterOptions::new(if embedded {
        Backend::Sqlite
    } else {
        Backend::Postgres
    });
    options.amqp = !embedded;
    options.mail.smtp_url = Some(smtp.url());
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;

    let mut latencies = Vec::with_capacity(count);
    for index in 0..count {
        let address = format!("latency-{index}@example.com");
        invite(
            &cluster,
            &partner.owner,
            &customer.name,
            &address,
            Role::Employee,
        )
        .await
        .expect("invite");
        // Timed from the moment the create call has returned: the invitation is committed.
        let started = Instant::now();
        loop {
            if !smtp.received_by(&address).is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no e-mail for {address}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
        if (index + 1) % 10 == 0 {
            eprint!("\r{}/{count}", index + 1);
        }
    }
    eprintln!();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "CreateInvitation → e-mail received ({}; n = {count}): median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if embedded {
            "SQLite + in-process bus + SMTP"
        } else {
            "PostgreSQL + RabbitMQ + SMTP"
        },
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().expect("samples").as_secs_f64() * 1e3,
    );
    cluster.stop().await;
    smtp.stop().await;
}
