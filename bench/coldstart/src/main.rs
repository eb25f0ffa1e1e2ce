//! Cold-init benchmark of the Lambda functions (issue 6).
//!
//! ```text
//! cargo run -p platformsync-coldstart --release -- [--runs N] [--template PATH]
//!     [--only BIN,...] [--bin BIN] [--env BIN:KEY=VALUE ...] [--no-build]
//!     [--print-env BIN]
//! ```
//!
//! `--print-env BIN` prints the environment BIN would get (`KEY=VALUE`
//! lines, the Runtime API and AWS endpoints on a closed loopback port) and
//! exits, to profile one init by hand: the function builds its clients,
//! fails its first `next` and exits, e.g.
//! `env -i $(coldstart --print-env push) valgrind --tool=callgrind <binary>`
//! on a build with symbols (`CARGO_PROFILE_RELEASE_STRIP=false
//! CARGO_PROFILE_RELEASE_DEBUG=1`).
//!
//! `--bin` adds a binary `template.yaml` does not declare (give it its
//! variables with `--env`); `--env '*:KEY=VALUE'` sets a variable for every
//! binary, e.g. `'*:RUST_LOG=debug'`. The functions' root certificates are
//! compiled in (platformsync-tls), so the machine's CA layout does not matter.
//!
//! For every function of `template.yaml` (its `BuildProperties.Binary`) and a
//! hello-world `lambda_runtime` binary (`hello-lambda`, the baseline):
//!
//! 1. builds it exactly as `sam build` has cargo-lambda build it, less the
//!    cross-compilation: `cargo build --release -p <package> --bin <bin>`,
//!    one package at a time (`CodeUri: functions/<crate>`: cargo-lambda runs
//!    in the crate's directory, so only that package's features are
//!    resolved; a workspace-wide build would add the tests' and tools'
//!    features, e.g. aws-config and aws-lc), with the workspace release
//!    profile (LTO, one codegen unit, strip, panic=abort), host architecture;
//! 2. runs it N times, interleaved (hello, f1, f2, ..., hello, f1, ...) after
//!    one discarded warm-up round: a stub Lambda Runtime API on a fresh
//!    loopback port, the binary exec'd with the Lambda environment
//!    (`AWS_LAMBDA_RUNTIME_API`, function name/memory/version, region, fake
//!    credentials, JSON logs) plus the function's own `Environment` from
//!    `template.yaml`, resolved with dummy physical names;
//! 3. measures exec -> first `GET /2018-06-01/runtime/invocation/next` (the
//!    function has built its clients and loaded its configuration: that is
//!    what `main` does before `lambda_runtime::run`), reads the child's peak
//!    RSS (`VmHWM` in `/proc/<pid>/status`) while the request hangs, kills it.
//!
//! Init must not touch the network: `AWS_ENDPOINT_URL` points every SDK
//! client at a loopback "tripwire" listener that counts connections; any
//! connection during init is reported (and such a function would pay a
//! network round trip per cold start on Lambda).
//!
//! Prints per binary: median, p90 and min init time, the ratio of medians to
//! hello-world (target <= 1.5x), median peak RSS and the binary's size.

use anyhow::{Context, Result, anyhow, bail};
use platformsync_template::{Physical, Resolver, Template};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const HELLO: &str = "hello-lambda";
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const STAGE: &str = "bench";
/// A function that has not asked for its first event by then failed its init.
const INIT_TIMEOUT: Duration = Duration::from_secs(20);

struct Args {
    runs: usize,
    template: PathBuf,
    only: Option<Vec<String>>,
    extra_bins: Vec<String>,
    extra_env: Vec<(String, String, String)>,
    build: bool,
    print_env: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 20,
        template: PathBuf::from("template.yaml"),
        only: None,
        extra_bins: Vec::new(),
        extra_env: Vec::new(),
        build: true,
        print_env: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" | "-n" => args.runs = value()?.parse().context("--runs")?,
            "--template" => args.template = PathBuf::from(value()?),
            "--only" => {
                args.only = Some(value()?.split(',').map(str::to_owned).collect());
            }
            "--bin" => args.extra_bins.push(value()?),
            "--env" => {
                let v = value()?;
                let (bin, kv) = v
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--env wants BIN:KEY=VALUE, got {v:?}"))?;
                let (k, val) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--env wants BIN:KEY=VALUE, got {v:?}"))?;
                args.extra_env.push((bin.into(), k.into(), val.into()));
            }
            "--no-build" => args.build = false,
            "--print-env" => args.print_env = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "coldstart [--runs N] [--template PATH] [--only BIN,..] \
                     [--bin BIN] [--env BIN:KEY=VALUE] [--no-build] [--print-env BIN]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(args)
}

/// One binary under test.
struct Subject {
    bin: String,
    /// The function's name in the Lambda environment.
    function_name: String,
    memory_mb: u64,
    env: BTreeMap<String, String>,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let workspace = workspace()?;
    let template_path = if args.template.is_relative() {
        workspace.root.join(&args.template)
    } else {
        args.template.clone()
    };
    let mut subjects = vec![Subject {
        bin: HELLO.into(),
        function_name: "platformsync-bench-hello".into(),
        memory_mb: 128,
        env: BTreeMap::new(),
    }];
    subjects.extend(template_subjects(&template_path)?);
    for bin in &args.extra_bins {
        if !subjects.iter().any(|s| &s.bin == bin) {
            subjects.push(Subject {
                bin: bin.clone(),
                function_name: format!("platformsync-{STAGE}-{bin}"),
                memory_mb: 512,
                env: BTreeMap::new(),
            });
        }
    }
    for (bin, k, v) in &args.extra_env {
        // `*:KEY=VALUE` applies to every binary, hello-world included.
        let mut matched = false;
        for s in subjects.iter_mut().filter(|s| bin == "*" || &s.bin == bin) {
            s.env.insert(k.clone(), v.clone());
            matched = true;
        }
        if !matched {
            bail!("--env for {bin}, which is not measured");
        }
    }
    if let Some(bin) = &args.print_env {
        let s = subjects
            .iter()
            .find(|s| &s.bin == bin)
            .ok_or_else(|| anyhow!("--print-env {bin}: no such binary"))?;
        // Port 9 (discard) on loopback: nothing listens, so the first
        // request fails at once and the function exits after its init.
        let closed = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        for (k, v) in lambda_env(s, closed, closed) {
            println!("{k}={v}");
        }
        return Ok(());
    }
    if let Some(only) = &args.only {
        subjects.retain(|s| s.bin == HELLO || only.contains(&s.bin));
    }

    // Build as sam build does (see the module documentation): one cargo
    // invocation per package, so each gets its own features only.
    for s in &subjects {
        if !workspace.bins.contains_key(&s.bin) {
            bail!("no workspace package has a bin named {}", s.bin);
        }
    }
    if args.build {
        for s in &subjects {
            let package = workspace.bins[&s.bin].as_str();
            let cargo_args = [
                "build",
                "--release",
                "--quiet",
                "-p",
                package,
                "--bin",
                s.bin.as_str(),
            ];
            eprintln!("coldstart: cargo {}", cargo_args.join(" "));
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(cargo_args)
                .current_dir(&workspace.root)
                .status()
                .context("running cargo build")?;
            if !status.success() {
                bail!("cargo build failed");
            }
        }
    }
    let mut paths = BTreeMap::new();
    for s in &subjects {
        let path = workspace.target_dir.join("release").join(&s.bin);
        if !path.is_file() {
            bail!(
                "{} is missing (build it or drop --no-build)",
                path.display()
            );
        }
        paths.insert(s.bin.clone(), path);
    }

    let logs = workspace.target_dir.join("coldstart");
    std::fs::create_dir_all(&logs)?;
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    eprintln!(
        "coldstart: {} runs of {} binaries (+1 warm-up round), interleaved",
        args.runs,
        subjects.len()
    );
    for round in 0..=args.runs {
        for s in &subjects {
            let log = logs.join(format!("{}.log", s.bin));
            let sample = run_once(&paths[&s.bin], s, &log)
                .with_context(|| format!("{} (its output: {})", s.bin, log.display()))?;
            if round > 0 {
                samples.entry(s.bin.clone()).or_default().push(sample);
            }
        }
    }

    let hello_median = median(&init_times(&samples[HELLO]));
    println!(
        "| binary | size (stripped) | init median | init p90 | init min | ratio to hello (median) | peak RSS (median) | AWS connections at init |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in &subjects {
        let xs = &samples[&s.bin];
        let t = init_times(xs);
        let med = median(&t);
        let mut rss: Vec<f64> = xs.iter().map(|x| x.peak_rss_kib as f64).collect();
        rss.sort_by(f64::total_cmp);
        let size = std::fs::metadata(&paths[&s.bin])?.len();
        let connections: usize = xs.iter().map(|x| x.aws_connections).sum();
        println!(
            "| `{}` | {:.2} MB | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x | {:.1} MiB | {} |",
            s.bin,
            size as f64 / 1e6,
            med,
            percentile(&t, 0.9),
            t[0],
            med / hello_median,
            median(&rss) / 1024.0,
            connections,
        );
    }
    Ok(())
}

struct Sample {
    init: Duration,
    peak_rss_kib: u64,
    aws_connections: usize,
}

fn init_times(xs: &[Sample]) -> Vec<f64> {
    let mut t: Vec<f64> = xs.iter().map(|x| x.init.as_secs_f64() * 1e3).collect();
    t.sort_by(f64::total_cmp);
    t
}

/// Of sorted values.
fn median(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Nearest rank, of sorted values.
fn percentile(xs: &[f64], p: f64) -> f64 {
    let rank = (p * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// One cold start: stub runtime API up, exec, wait for the first
/// `/invocation/next`, read the peak RSS, kill.
fn run_once(path: &Path, subject: &Subject, log: &Path) -> Result<Sample> {
    let runtime_api = TcpListener::bind("127.0.0.1:0")?;
    let runtime_addr = runtime_api.local_addr()?;
    let tripwire = TcpListener::bind("127.0.0.1:0")?;
    let tripwire_addr = tripwire.local_addr()?;
    let connections = Arc::new(AtomicUsize::new(0));
    {
        // Counts connections; holds them open without answering so nothing
        // downstream moves on (and nothing reaches the real AWS).
        let connections = connections.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in tripwire.incoming().flatten() {
                connections.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
    }
    let (first_next, arrived) = mpsc::channel::<(Instant, String)>();
    thread::spawn(move || {
        // Keeps every connection open: the runtime's long poll just hangs.
        let mut held: Vec<TcpStream> = Vec::new();
        // The request line is read on this thread (no thread start-up in
        // the measurement); the runtime opens one connection at a time.
        for stream in runtime_api.incoming().flatten() {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                let _ = first_next.send((Instant::now(), line.trim_end().to_owned()));
            }
            held.push(stream);
        }
    });

    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .envs(lambda_env(subject, runtime_addr, tripwire_addr))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("exec {}", path.display()))?;
    let result = wait_for_next(&mut child, &arrived, started);
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let init = result?;
    Ok(Sample {
        init,
        peak_rss_kib: rss?,
        aws_connections: connections.load(Ordering::SeqCst),
    })
}

fn wait_for_next(
    child: &mut Child,
    arrived: &mpsc::Receiver<(Instant, String)>,
    started: Instant,
) -> Result<Duration> {
    loop {
        match arrived.recv_timeout(Duration::from_millis(2)) {
            Ok((at, line)) => {
                if line.starts_with("GET ") && line.contains("/runtime/invocation/next") {
                    return Ok(at - started);
                }
                bail!("first request to the runtime API was {line:?}, not invocation/next");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => bail!("stub runtime API: {e}"),
        }
        if let Some(status) = child.try_wait()? {
            bail!("exited during init ({status})");
        }
        if started.elapsed() > INIT_TIMEOUT {
            bail!("no GET /runtime/invocation/next within {INIT_TIMEOUT:?}");
        }
    }
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let mut status = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))?.read_to_string(&mut status)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// What Lambda sets for a `provided.al2023` function with JSON logging
/// (less the per-invocation trace id), then the function's own variables.
fn lambda_env(
    s: &Subject,
    runtime: std::net::SocketAddr,
    tripwire: std::net::SocketAddr,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("_HANDLER", "bootstrap"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "coldstart-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), runtime.to_string());
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{tripwire}"));
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), s.function_name.clone());
    env.insert(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
        s.memory_mb.to_string(),
    );
    env.insert(
        "AWS_LAMBDA_LOG_GROUP_NAME".into(),
        format!("/aws/lambda/{}", s.function_name),
    );
    env.insert(
        "AWS_LAMBDA_LOG_STREAM_NAME".into(),
        "2026/01/01/[$LATEST]00000000000000000000000000000000".into(),
    );
    env.extend(s.env.clone());
    env
}

/// The functions of `template.yaml` with their environment resolved against
/// dummy physical names (a stage of their own, this account, this region).
fn template_subjects(path: &Path) -> Result<Vec<Subject>> {
    let template = Template::load(path).with_context(|| format!("reading {}", path.display()))?;
    let overrides = BTreeMap::from([("Stage".to_owned(), STAGE.to_owned())]);
    let mut resolver = Resolver::new(&template, &overrides, "platformsync-bench", REGION, ACCOUNT);
    // Names may refer to other resources: record what resolves, repeat.
    let mut pending: Vec<_> = template.resources().collect();
    for _ in 0..8 {
        let before = pending.len();
        pending.retain(|r| match physical(&resolver, r) {
            Some(p) => {
                resolver.record(r.logical_id.clone(), p);
                false
            }
            None => true,
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for r in pending {
        // Unresolvable names still get a Ref and the usual attributes.
        let p = dummy(&r.kind, &format!("platformsync-{STAGE}-{}", r.logical_id));
        resolver.record(r.logical_id.clone(), p);
    }
    let globals = template
        .globals()
        .get("Function")
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    for f in template.functions(&resolver)? {
        let props = template
            .resource(&f.logical_id)
            .map(|r| r.properties.clone())
            .unwrap_or(Value::Null);
        let memory_mb = props
            .get("MemorySize")
            .or_else(|| globals.get("MemorySize"))
            .and_then(|m| resolver.resolve(m).ok())
            .and_then(|m| platformsync_template::scalar_string(&m).parse().ok())
            .unwrap_or(128);
        out.push(Subject {
            function_name: format!("platformsync-{STAGE}-{}", f.logical_id),
            bin: f.binary,
            memory_mb,
            env: f.environment,
        });
    }
    Ok(out)
}

/// A resource's physical name from its name property, `None` while that
/// name refers to something not yet recorded.
fn physical(resolver: &Resolver, r: &platformsync_template::Resource) -> Option<Physical> {
    let key = match r.kind.as_str() {
        "AWS::DynamoDB::Table" => "TableName",
        "AWS::SQS::Queue" => "QueueName",
        "AWS::SNS::Topic" => "TopicName",
        "AWS::SecretsManager::Secret" => "Name",
        "AWS::Serverless::Function" | "AWS::Lambda::Function" => "FunctionName",
        _ => "Name",
    };
    let name = match r.properties.get(key) {
        Some(v) => platformsync_template::scalar_string(&resolver.resolve(v).ok()?),
        None => format!("platformsync-{STAGE}-{}", r.logical_id),
    };
    Some(dummy(&r.kind, &name))
}

fn dummy(kind: &str, name: &str) -> Physical {
    let arn =
        |service: &str, resource: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}");
    let (reference, attrs): (String, Vec<(&str, String)>) = match kind {
        "AWS::DynamoDB::Table" => {
            let table = arn("dynamodb", &format!("table/{name}"));
            (
                name.into(),
                vec![
                    (
                        "StreamArn",
                        format!("{table}/stream/2026-01-01T00:00:00.000"),
                    ),
                    ("Arn", table),
                ],
            )
        }
        "AWS::SQS::Queue" => (
            format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"),
            vec![
                ("Arn", arn("sqs", name)),
                ("QueueName", name.into()),
                (
                    "QueueUrl",
                    format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"),
                ),
            ],
        ),
        "AWS::SNS::Topic" => (
            arn("sns", name),
            vec![("TopicArn", arn("sns", name)), ("TopicName", name.into())],
        ),
        "AWS::SecretsManager::Secret" => {
            let a = arn("secretsmanager", &format!("secret:{name}-AbCdEf"));
            (a.clone(), vec![("Id", a)])
        }
        "AWS::Serverless::Function" | "AWS::Lambda::Function" => (
            name.into(),
            vec![("Arn", arn("lambda", &format!("function:{name}")))],
        ),
        _ => (name.into(), vec![("Arn", arn("bench", name))]),
    };
    Physical {
        reference,
        attributes: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    /// Binary name -> its package.
    bins: BTreeMap<String, String>,
}

/// Where the workspace and its target directory are, and its binaries
/// (`cargo metadata`).
fn workspace() -> Result<Workspace> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let text = |key: &str| {
        meta.get(key)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("cargo metadata has no {key}"))
    };
    let mut bins = BTreeMap::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let package = p["name"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            let is_bin = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if let (true, Some(name)) = (is_bin, t["name"].as_str()) {
                bins.insert(name.to_owned(), package.to_owned());
            }
        }
    }
    Ok(Workspace {
        root: text("workspace_root")?,
        target_dir: text("target_directory")?,
        bins,
    })
}
