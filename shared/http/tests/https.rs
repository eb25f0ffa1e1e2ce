//! End-to-end tests of `EndpointClient` against a local HTTPS receiver on
//! 127.0.0.1 whose certificate comes from a CA generated per test (the
//! repository's one local CA helper, `platformsync_receiver::tls`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platformsync_delivery::ssrf::AllowList;
use platformsync_http::{AttemptError, ClientConfig, EndpointClient, Refusal};
use platformsync_receiver::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A minimal HTTP/1.1 receiver. Answers by path:
/// `/ok` 200, `/created` 201, `/redirect` 302, `/busy` 503 + `Retry-After: 120`,
/// `/busy-date` 429 + an HTTP-date one hour ahead, `/big` 200 with a 4 KiB body,
/// `/slow` waits 5 s.
struct Receiver {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    ca_pem: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let certificate = tls::generate().unwrap();
        let acceptor = TlsAcceptor::from(tls::server_config(&certificate).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, reqs) = (acceptor.clone(), reqs.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = handle(tls, port, reqs).await;
                    }
                });
            }
        });
        Receiver {
            port,
            connections,
            requests,
            ca_pem: certificate.ca_pem,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn handle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    requests.lock().unwrap().push(format!("{head}{body}"));

    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = path.split('?').next().unwrap_or("/");
    let later = httpdate(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    let (status, extra, body): (&str, String, String) = match path {
        "/ok" => ("200 OK", String::new(), "accepted".into()),
        "/created" => ("201 Created", String::new(), String::new()),
        "/redirect" => (
            "302 Found",
            format!("Location: https://127.0.0.1:{port}/ok\r\n"),
            String::new(),
        ),
        "/busy" => (
            "503 Service Unavailable",
            "Retry-After: 120\r\n".into(),
            "down for maintenance".into(),
        ),
        "/busy-date" => (
            "429 Too Many Requests",
            format!("Retry-After: {later}\r\n"),
            String::new(),
        ),
        "/big" => ("200 OK", String::new(), "x".repeat(4096)),
        "/echo" => (
            "400 Bad Request",
            String::new(),
            format!("bad request: {head}"),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ("200 OK", String::new(), String::new())
        }
        _ => ("404 Not Found", String::new(), String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn httpdate(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc2822)
        .unwrap()
        .replace("+0000", "GMT")
}

fn client(receiver: &Receiver) -> EndpointClient {
    EndpointClient::new(ClientConfig {
        extra_ca_pem: Some(receiver.ca_pem.clone().into_bytes()),
        allow: AllowList::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn status_200_is_delivered_and_the_request_is_as_given() {
    let receiver = Receiver::start().await;
    let response = client(&receiver)
        .post(
            &receiver.url("/ok?v=1"),
            &pairs(&[("apikey", "k&y=1")]),
            &pairs(&[("Authorization", "Bearer tok-123")]),
            br#"{"Transactions":[]}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(response.is_delivered());
    assert_eq!(response.body_snippet, "accepted");
    assert_eq!(response.retry_after, None);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(
        request.starts_with("POST /ok?v=1&apikey=k%26y%3D1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("authorization: Bearer tok-123\r\n"),
        "{request}"
    );
    assert!(
        request.contains("content-type: application/json\r\n"),
        "{request}"
    );
    assert!(request.contains("user-agent: PlatformSync/"), "{request}");
    assert!(request.ends_with(r#"{"Transactions":[]}"#), "{request}");
}

#[tokio::test]
async fn a_named_host_goes_through_the_guarded_resolver() {
    let receiver = Receiver::start().await;
    let url = format!("https://localhost:{}/ok", receiver.port);
    let response = client(&receiver)
        .post(&url, &[], &[], vec![])
        .await
        .unwrap();
    assert!(response.is_delivered());
}

#[tokio::test]
async fn status_201_is_not_delivered() {
    let receiver = Receiver::start().await;
    let response = client(&receiver)
        .post(&receiver.url("/created"), &[], &[], vec![])
        .await
        .unwrap();
    assert_eq!(response.status, 201);
    assert!(!response.is_delivered());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start().await;
    let response = client(&receiver)
        .post(&receiver.url("/redirect"), &[], &[], vec![])
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    assert!(!response.is_delivered());
    assert_eq!(
        receiver.requests().len(),
        1,
        "the Location must not be fetched"
    );
}

#[tokio::test]
async fn retry_after_seconds_and_date_are_parsed() {
    let receiver = Receiver::start().await;
    let client = client(&receiver);
    let response = client
        .post(&receiver.url("/busy"), &[], &[], vec![])
        .await
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(response.body_snippet, "down for maintenance");

    let response = client
        .post(&receiver.url("/busy-date"), &[], &[], vec![])
        .await
        .unwrap();
    assert_eq!(response.status, 429);
    let after = response.retry_after.expect("an HTTP-date Retry-After");
    assert!(
        after > Duration::from_secs(3500) && after <= Duration::from_secs(3600),
        "{after:?}"
    );
}

#[tokio::test]
async fn body_snippet_is_capped_and_scrubbed() {
    let receiver = Receiver::start().await;
    let client = client(&receiver);
    let response = client
        .post(&receiver.url("/big"), &[], &[], vec![])
        .await
        .unwrap();
    assert_eq!(response.body_snippet.len(), 512);

    // A receiver echoing our request (and so our key) back.
    let response = client
        .post(
            &receiver.url("/echo"),
            &pairs(&[("apikey", "SECRET123")]),
            &pairs(&[("Authorization", "Bearer SECRET456")]),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    assert!(
        response.body_snippet.contains("[redacted]"),
        "{}",
        response.body_snippet
    );
    assert!(!response.body_snippet.contains("SECRET123"));
    assert!(!response.body_snippet.contains("SECRET456"));
}

#[tokio::test]
async fn an_untrusted_certificate_fails_as_tls() {
    let receiver = Receiver::start().await;
    // No extra CA: the system roots do not know the test CA.
    let untrusting = EndpointClient::new(ClientConfig {
        allow: AllowList::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = untrusting
        .post(&receiver.url("/ok"), &[], &[], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, AttemptError::Tls { .. }), "{err:?}");

    // Another CA's certificate does not help either.
    let other = EndpointClient::new(ClientConfig {
        extra_ca_pem: Some(tls::generate().unwrap().ca_pem.into_bytes()),
        allow: AllowList::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = other
        .post(&receiver.url("/ok"), &[], &[], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, AttemptError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("https://127.0.0.1:"), "{err}");
    println!("untrusted CA: {err}");
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn loopback_is_refused_before_connecting_without_the_allow_list() {
    let receiver = Receiver::start().await;
    let guarded = EndpointClient::new(ClientConfig {
        extra_ca_pem: Some(receiver.ca_pem.clone().into_bytes()),
        ..ClientConfig::default()
    })
    .unwrap();
    for url in [
        receiver.url("/ok"),
        format!("https://localhost:{}/ok", receiver.port),
        format!("https://2130706433:{}/ok", receiver.port),
        format!("https://0x7f.1:{}/ok", receiver.port),
        format!("https://[::ffff:127.0.0.1]:{}/ok", receiver.port),
    ] {
        let err = guarded.post(&url, &[], &[], vec![]).await.unwrap_err();
        assert!(err.is_refused(), "{url}: {err:?}");
        assert!(err.to_string().contains("loopback"), "{url}: {err}");
        println!("{url}: {err}");
    }
    let err = guarded
        .post(
            &format!("https://localhost:{}/ok", receiver.port),
            &[],
            &[],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttemptError::Refused(Refusal::Address(_))),
        "{err:?}"
    );
    assert_eq!(receiver.connections(), 0, "nothing may reach the receiver");
}

#[tokio::test]
async fn form_errors_are_refused() {
    let client = EndpointClient::new(ClientConfig::default()).unwrap();
    for url in [
        "http://example.com/",
        "https://user:pw@example.com/",
        "https://169.254.169.254/latest/meta-data",
    ] {
        let err = client.post(url, &[], &[], vec![]).await.unwrap_err();
        assert!(
            matches!(err, AttemptError::Refused(Refusal::Url(_))),
            "{url}: {err:?}"
        );
    }
    let err = client
        .post(
            "https://example.com/",
            &[],
            &pairs(&[("Authorization", "Bearer x\r\ny")]),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttemptError::Refused(Refusal::InvalidHeader { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let receiver = Receiver::start().await;
    let impatient = EndpointClient::new(ClientConfig {
        attempt_timeout: Duration::from_millis(300),
        extra_ca_pem: Some(receiver.ca_pem.clone().into_bytes()),
        allow: AllowList::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = impatient
        .post(&receiver.url("/slow"), &[], &[], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, AttemptError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn errors_never_show_query_or_header_values() {
    // A port nobody listens on.
    let closed: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = EndpointClient::new(ClientConfig {
        allow: AllowList::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = client
        .post(
            &format!("https://127.0.0.1:{}/hook?apikey=SECRET000", closed.port()),
            &pairs(&[("apikey", "SECRET123")]),
            &pairs(&[("Authorization", "Bearer SECRET456")]),
            b"{}".to_vec(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AttemptError::Connect { .. }), "{err:?}");
    let shown = format!("{err} / {err:?}");
    println!("closed port: {err}");
    for secret in ["SECRET000", "SECRET123", "SECRET456", "apikey"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(
        shown.contains(&format!("https://127.0.0.1:{}/hook", closed.port())),
        "{shown}"
    );
}

#[tokio::test]
async fn bad_extra_ca_is_a_build_error() {
    let err = EndpointClient::new(ClientConfig {
        extra_ca_pem: Some(b"not a certificate".to_vec()),
        ..ClientConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("no certificate") || err.to_string().contains("PEM"),
        "{err}"
    );
}
