//! What a SendMessage costs the customer registry: one BatchGetAccounts for the partner and
//! every listed recipient, however many there are (it used to be a customer list plus a
//! GetAccount per recipient the list did not hold).

use tenantry_e2e::{create_customer, partner_with_owner, send_message};
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_testkit::{Backend, TestCluster, TestUser};

const REGISTRY: &str = "tenantry.registry.v1.CustomerRegistryService";

/// Calls of the registry's `method` the cluster served so far, whatever their outcome.
fn registry_calls(cluster: &TestCluster, method: &str) -> f64 {
    let labels = format!("grpc_method=\"{method}\",grpc_service=\"{REGISTRY}\"");
    cluster
        .metrics()
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{") && line.contains(&labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_many_listed_customers_is_one_registry_call() {
    const CUSTOMERS: usize = 150;
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "many", "many-owner").await;
    let mut names = Vec::with_capacity(CUSTOMERS);
    for index in 0..CUSTOMERS {
        let customer = create_customer(
            &cluster,
            &partner.owner,
            &partner.account.name,
            &format!("many-c{index:03}"),
        )
        .await
        .expect("create customer");
        names.push(customer.name);
    }
    // The first message warms what is kept between calls (the sender's authorization).
    send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &[names[0].as_str()],
        "Warm-up",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send to one customer");

    let methods = ["BatchGetAccounts", "GetAccount", "ListManagedCustomers"];
    let before: Vec<f64> = methods
        .iter()
        .map(|method| registry_calls(&cluster, method))
        .collect();
    let recipients: Vec<&str> = names.iter().map(String::as_str).collect();
    let message = send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &recipients,
        "Maintenance",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send to every customer, listed");
    assert_eq!(message.recipients.len(), CUSTOMERS);
    let made: Vec<f64> = methods
        .iter()
        .zip(&before)
        .map(|(method, before)| registry_calls(&cluster, method) - before)
        .collect();
    assert_eq!(
        made,
        [1.0, 0.0, 0.0],
        "registry calls of one SendMessage to {CUSTOMERS} listed customers ({methods:?})"
    );
    cluster.stop().await;
}
