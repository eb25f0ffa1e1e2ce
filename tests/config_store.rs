//! The configuration table on the local stack: customers, endpoints, safes.

use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_tests::ids;
use platformsync_tests::{Stack, endpoint_settings};

fn endpoint(customer: &str, id: &str) -> EndpointSettings {
    let key_secret = format!("platformsync/test/endpoints/{id}");
    let settings = serde_json::json!({
        "Whitelist": ["ValidatedCashIn"],
        "Metadata": {"Site": "north"},
        "MaxBatchSize": 250,
    });
    let url = "https://hooks.example.com/push";
    endpoint_settings(customer, id, url, &key_secret, &settings)
}

#[tokio::test]
async fn customers_endpoints_and_safes_round_trip() {
    let stack = Stack::deploy().await;
    let config = stack.config_store();
    let acme = CustomerId::parse("acme").unwrap();
    config
        .put_customer(&Customer {
            customer_id: acme.clone(),
            name: "Acme Stores".into(),
            notification_recipients: vec!["cash@acme.example".into()],
        })
        .await
        .unwrap();
    for (customer, id) in [
        ("acme", "acme-erp"),
        ("acme", "acme-test"),
        ("other", "other-1"),
    ] {
        config.put_endpoint(&endpoint(customer, id)).await.unwrap();
    }
    config
        .assign_safe(&ids::safe("UT07761"), &ids::customer("acme"))
        .await
        .unwrap();

    assert_eq!(
        config.customer(&acme).await.unwrap().unwrap().name,
        "Acme Stores"
    );
    assert_eq!(config.customers().await.unwrap().len(), 1);
    let mine = config.endpoints_of(&acme).await.unwrap();
    let ids: Vec<&str> = mine.iter().map(|e| e.endpoint_id.as_str()).collect();
    assert_eq!(ids, ["acme-erp", "acme-test"], "only acme's endpoints");
    assert_eq!(
        mine[0],
        endpoint("acme", "acme-erp"),
        "every setting survives storage"
    );
    let one = config
        .endpoint(&acme, &EndpointId::parse("acme-test").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.max_batch_size, 250);
    assert_eq!(config.safes().await.unwrap()[0].customer_id, "acme");

    // Settings the push function could not use are refused before storage.
    let mut bad = endpoint("acme", "acme-bad");
    bad.url = "http://plain.example.com".into();
    let err = config.put_endpoint(&bad).await.unwrap_err().to_string();
    assert!(err.contains("https"), "{err}");
    assert!(
        config
            .endpoint(&acme, &bad.endpoint_id)
            .await
            .unwrap()
            .is_none()
    );
}
