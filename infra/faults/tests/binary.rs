//! The `platformsync-faults` binary as scripts use it: `--rules FILE`, the URL
//! on the first stdout line, the control endpoint, a clean stop on SIGTERM.
//! Needs the local stack's environment (`source .local/<state>/stack.env`);
//! without `AWS_ENDPOINT_URL` it says so and passes without running.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

mod common;

use aws_config::BehaviorVersion;
use aws_sdk_sns::error::ProvideErrorMetadata;
use platformsync_faults::Stats;

/// Kills the child we started if a test fails before it stops it.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_rules_from_a_file_and_stops_on_sigterm() {
    let Some(upstreams) = common::upstreams() else {
        return;
    };
    let upstream = upstreams.default_url().to_owned();
    let rules = std::env::temp_dir().join(format!("faults-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &rules,
        r#"{"rules": [{"service": "sns", "operation": "Publish", "fault": "throttle", "times": 1}]}"#,
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_platformsync-faults"))
        .args(["--upstream", &upstream, "--rules"])
        .arg(&rules)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut proxy = Proxy(child);
    let mut line = String::new();
    BufReader::new(proxy.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = std::fs::remove_file(&rules);
    let url = line.trim().to_owned();
    let addr = url
        .strip_prefix("http://")
        .expect("prints its URL")
        .to_owned();

    let (status, body) = common::http(&addr, "GET", "/__faults", "").await;
    assert_eq!(status, 200);
    let stats: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!(stats.rules.len(), 1);
    assert_eq!(stats.rules[0].rule.operation, "Publish");

    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&url)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let sns = aws_sdk_sns::Client::new(&conf);
    let topic = sns
        .create_topic()
        .name(format!(
            "faults-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
        .send()
        .await
        .expect("passes through")
        .topic_arn
        .unwrap();
    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("m")
        .send()
        .await
        .expect_err("the file's rule");
    assert_eq!(err.code(), Some("Throttling"));

    let (_, body) = common::http(&addr, "GET", "/__faults", "").await;
    let stats: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!(stats.calls("sns", "CreateTopic"), 1);
    assert_eq!(stats.failed("sns", "Publish"), 1);

    let pid = proxy.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = proxy.0.wait().unwrap();
    assert!(status.success(), "stops cleanly on SIGTERM: {status:?}");
}
