//! The real `push` binary, started as Lambda starts it (a Runtime API on
//! loopback, `AWS_LAMBDA_FUNCTION_NAME` and `AWS_LAMBDA_RUNTIME_API` set),
//! refuses the local-only settings at init: it exits with an error naming the
//! setting and never asks for an invocation. The same binary without them
//! reaches `GET /runtime/invocation/next`, so the test would notice a refusal
//! that fired for any other reason.
//!
//! No AWS is reached: the SDK config is built from static credentials and the
//! refusal happens before any client is used.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What the fake Runtime API saw and how the process ended.
struct Started {
    asked_for_invocation: bool,
    exit_success: Option<bool>,
    output: String,
}

/// Starts the push binary against a one-connection-at-a-time fake Runtime
/// API; stops at the first `invocation/next` (answered by killing the
/// process: nothing to invoke) or when the process exits on its own.
fn start_push(extra_env: &[(&str, &str)]) -> Started {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let runtime_api = listener.local_addr().expect("local addr").to_string();
    let (seen_tx, seen_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let _ = seen_tx.send(line.clone());
            if line.contains("/runtime/init/error") {
                let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}");
            }
            // invocation/next: never answered; the test kills the process.
        }
    });

    let mut command = Command::new(env!("CARGO_BIN_EXE_push"));
    command
        .env_clear()
        .env("AWS_LAMBDA_FUNCTION_NAME", "platformsync-test-push")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CONFIG_TABLE", "platformsync-test-config")
        .env("DELIVERY_LEDGER_TABLE", "platformsync-test-ledger")
        .env(
            "DELIVERY_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/000000000000/d.fifo",
        )
        .env(
            "DEAD_LETTER_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/000000000000/dlq.fifo",
        )
        .env(
            "NOTIFICATIONS_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:000000000000:notifications",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the push binary");

    let mut asked_for_invocation = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit_success = loop {
        if let Ok(line) = seen_rx.recv_timeout(Duration::from_millis(50))
            && line.contains("/runtime/invocation/next")
        {
            asked_for_invocation = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if let Some(status) = child.try_wait().expect("poll the process") {
            break Some(status.success());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "push neither exited nor asked for an invocation within 30 s"
        );
    };
    let output = child.wait_with_output().expect("collect the output");
    Started {
        asked_for_invocation,
        exit_success,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The refusal itself, not some other init error that names the variable
/// (an unreadable file, a malformed range).
fn assert_refused_as_local_only(output: &str) {
    assert!(
        output.contains("LocalOnlyOnLambda") || output.contains("refused on AWS Lambda"),
        "not refused as a local-only setting: {output}"
    );
}

#[test]
fn without_local_only_settings_push_reaches_its_first_invocation() {
    let started = start_push(&[]);
    assert!(
        started.asked_for_invocation,
        "push did not start: {:?}\n{}",
        started.exit_success, started.output
    );
}

#[test]
fn an_allow_list_is_refused_on_lambda() {
    let started = start_push(&[("PLATFORMSYNC_ALLOW_CIDRS", "127.0.0.0/8")]);
    assert!(!started.asked_for_invocation, "{}", started.output);
    assert_refused_as_local_only(&started.output);
    assert_eq!(started.exit_success, Some(false), "{}", started.output);
    assert!(
        started.output.contains("PLATFORMSYNC_ALLOW_CIDRS"),
        "the error names the setting: {}",
        started.output
    );
}

#[test]
fn an_extra_ca_file_is_refused_on_lambda() {
    let dir = std::env::temp_dir().join(format!("push-refusal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    // Any readable file: the refusal comes before the PEM is parsed.
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .expect("write a CA file");
    let started = start_push(&[(
        "PLATFORMSYNC_EXTRA_CA_FILE",
        ca.to_str().expect("utf-8 temp path"),
    )]);
    assert!(!started.asked_for_invocation, "{}", started.output);
    assert_refused_as_local_only(&started.output);
    assert_eq!(started.exit_success, Some(false), "{}", started.output);
    assert!(
        started.output.contains("PLATFORMSYNC_EXTRA_CA_FILE"),
        "the error names the setting: {}",
        started.output
    );
}
