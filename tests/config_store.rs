//! The configuration table on the local stack: customers, endpoints, safes.

use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_tests::Stack;

fn endpoint(customer: &str, id: &str) -> EndpointSettings {
    serde_json::from_value(serde_json::json!({
        "EndpointId": id,
        "CustomerId": customer,
        "Url": "https://hooks.example.com/push",
        "ApiKeySecret": format!("platformsync/test/endpoints/{id}"),
        "Whitelist": ["ValidatedCashIn"],
        "Metadata": {"Site": "north"},
        "MaxBatchSize": 250,
    }))
    .unwrap()
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
    config
        .put_endpoint(&endpoint("acme", "acme-erp"))
        .await
        .unwrap();
    config
        .put_endpoint(&endpoint("acme", "acme-test"))
        .await
        .unwrap();
    config
        .put_endpoint(&endpoint("other", "other-1"))
        .await
        .unwrap();
    config.assign_safe("UT07761", "acme").await.unwrap();

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
