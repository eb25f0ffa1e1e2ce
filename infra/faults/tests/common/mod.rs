//! What every fault proxy test binary needs: the local stack's endpoints
//! (loopback only) or a skip when its environment is not loaded, and a proxy
//! in front of them.

// Every test binary compiles its own copy of this module and uses part of it.
#![allow(dead_code)]

use platformsync_faults::{FaultProxy, Upstreams};

/// Where the local stack serves each service, if its environment is loaded
/// (`AWS_ENDPOINT_URL`, and `AWS_ENDPOINT_URL_DYNAMODB`... on the LocalStack
/// pair). Refuses anything but loopback, like tests/support does: no test
/// may reach AWS.
pub fn upstreams() -> Option<Upstreams> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if endpoint.is_empty() {
        eprintln!(
            "SKIPPED: AWS_ENDPOINT_URL is not set; run `infra/scripts/local-stack.sh up` and \
             `source .local/stack.env` (or `make test`) to run the fault proxy tests"
        );
        return None;
    }
    let upstreams = Upstreams::from_env().expect("AWS_ENDPOINT_URL is set");
    for url in std::iter::once(upstreams.default_url()).chain(upstreams.routes().map(|(_, u)| u)) {
        assert!(
            platformsync_faults::upstreams::is_loopback_url(url),
            "the fault proxy tests need the local AWS stack, an endpoint is {url:?}"
        );
    }
    Some(upstreams)
}

/// A fault proxy in front of [`upstreams`], if the local stack is there.
pub async fn proxy() -> Option<FaultProxy> {
    let upstreams = upstreams()?;
    Some(
        FaultProxy::start_routed(upstreams)
            .await
            .expect("proxy starts"),
    )
}

/// One HTTP/1.1 request to a proxy's control endpoint at `addr`
/// (`host:port`), no client crate needed: the status and the body.
pub async fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("control endpoint answers");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("control endpoint answers within 10 s");
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
