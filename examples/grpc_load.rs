//! gRPC load generator for a protected RPC that needs no database (used by `make bench`).
//!
//! ```text
//! [RPC=GetDomains|UserInfo] grpc_load <endpoint> <token> <concurrency> <duration-seconds> [connections]
//! ```
//!
//! * `RPC` (env): `GetDomains` (default; `flyteidl.service.AdminService/GetDomains`, the same
//!   work with and without auth) or `UserInfo` (`IdentityService/UserInfo`, whose answer
//!   carries the caller's claims with auth on and is empty with auth off).
//! * `PROTOCOL` (env): `grpc` (default) or `connect`: the same RPC as a Connect unary call
//!   (`POST` with `content-type: application/proto`) over the same HTTP/2 connections.
//! * `endpoint`: `http://127.0.0.1:8088`
//! * `token`: a bearer token sent in `flyte-authorization`; `-` sends none (auth off);
//!   `@FILE` reads one token per line and sends each one exactly once (a new token per call),
//!   to make the server verify many distinct tokens; the run ends when they are used up.
//! * `concurrency`: calls in flight at all times (one task each).
//! * `duration-seconds`: measured time, after a 1 s warm-up that is not counted (with a token
//!   file: no warm-up, and the duration is an upper bound).
//! * `connections`: HTTP/2 connections the calls are spread over (default 1, like a gRPC
//!   client with one channel).
//!
//! Prints one JSON object: `{"concurrency", "connections", "duration_s", "requests",
//! "errors", "rps", "p50_ms", "p99_ms", "max_ms", "client_cpu_s", "server_cpu_s"}`. The CPU
//! times (user + system, from `/proc/<pid>/stat`, Linux only, else null) cover the measured
//! window; `server_cpu_s` needs the server's pid in env `SERVER_PID`. A call that fails counts as an error and
//! its latency is not recorded; the first error message goes to stderr.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flyteauth::pb::flyteidl::admin::GetDomainRequest;
use flyteauth::pb::flyteidl::service::admin_service_client::AdminServiceClient;
use flyteauth::pb::flyteidl::service::identity_service_client::IdentityServiceClient;
use flyteauth::pb::flyteidl::service::UserInfoRequest;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

type Value = MetadataValue<tonic::metadata::Ascii>;

struct Tokens {
    values: Vec<Value>,
    /// Each token once, then stop (a token file); otherwise the one token (or none) forever.
    once_each: bool,
    next: AtomicUsize,
}

impl Tokens {
    /// `None`: no more calls to make. `Some(None)`: a call without a token.
    fn pick(&self) -> Option<Option<Value>> {
        if self.once_each {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            return self.values.get(i).cloned().map(Some);
        }
        Some(self.values.first().cloned())
    }
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat` fields 14 and 15, USER_HZ 100).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn json_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}"))
        .unwrap_or_else(|| "null".into())
}

fn request<T>(message: T, token: Option<Value>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(v) = token {
        req.metadata_mut().insert("flyte-authorization", v);
    }
    req
}

/// One Connect unary call over the channel (used as a plain HTTP/2 client); the answer must be
/// a 200 with a protobuf body.
async fn connect_call(
    channel: Channel,
    uri: &str,
    body: bytes::Bytes,
    token: Option<Value>,
) -> Result<(), String> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1");
    if let Some(v) = token {
        req = req.header("flyte-authorization", v.as_bytes());
    }
    let req = req
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .map_err(|e| e.to_string())?;
    let resp = channel.oneshot(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != http::StatusCode::OK {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: [RPC=GetDomains|UserInfo] [PROTOCOL=grpc|connect] grpc_load <endpoint> <token|-|@file> <concurrency> <duration-seconds> [connections]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 || args.len() > 5 {
        usage();
    }
    let endpoint = args[0].clone();
    let concurrency: usize = args[2].parse().unwrap_or_else(|_| usage());
    let duration: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let connections: usize = args
        .get(4)
        .map(|c| c.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(1)
        .max(1);
    if concurrency == 0 || duration <= 0.0 {
        usage();
    }

    let raw: Vec<String> = match args[1].as_str() {
        "-" => Vec::new(),
        t if t.starts_with('@') => std::fs::read_to_string(&t[1..])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        t => vec![t.to_owned()],
    };
    let from_file = args[1].starts_with('@');
    let tokens = Arc::new(Tokens {
        values: raw
            .iter()
            .map(|t| format!("Bearer {t}").parse())
            .collect::<Result<_, _>>()?,
        once_each: from_file,
        next: AtomicUsize::new(0),
    });

    let mut channels: Vec<Channel> = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Endpoint::from_shared(endpoint.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }

    let warmup = if from_file {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    let measure = Duration::from_secs_f64(duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + measure;
    let reported = Arc::new(AtomicBool::new(false));

    // CPU time of this process and of the server over the measured window.
    let server_pid = std::env::var("SERVER_PID").ok();
    let cpu_window = tokio::spawn(async move {
        let snap =
            |pid: &Option<String>| (cpu_seconds("self"), pid.as_deref().and_then(cpu_seconds));
        tokio::time::sleep_until(measure_from.into()).await;
        let a = snap(&server_pid);
        tokio::time::sleep_until(stop_at.into()).await;
        let b = snap(&server_pid);
        let d = |x: Option<f64>, y: Option<f64>| Some(y? - x?);
        (d(a.0, b.0), d(a.1, b.1))
    });

    let user_info = match std::env::var("RPC").as_deref() {
        Err(_) | Ok("GetDomains") => false,
        Ok("UserInfo") => true,
        Ok(_) => usage(),
    };
    let connect = match std::env::var("PROTOCOL").as_deref() {
        Err(_) | Ok("grpc") => false,
        Ok("connect") => true,
        Ok(_) => usage(),
    };
    let connect_uri = Arc::new(format!(
        "{}/flyteidl.service.{}",
        endpoint.trim_end_matches('/'),
        if user_info {
            "IdentityService/UserInfo"
        } else {
            "AdminService/GetDomains"
        }
    ));
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let connect_channel = channels[i % connections].clone();
        let connect_uri = connect_uri.clone();
        let channel = channels[i % connections].clone();
        let mut identity = IdentityServiceClient::new(channel.clone());
        let mut admin = AdminServiceClient::new(channel);
        let tokens = tokens.clone();
        let reported = reported.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 14);
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let Some(token) = tokens.pick() else { break };
                let res = if connect {
                    // Both request messages are empty: an empty protobuf body.
                    connect_call(
                        connect_channel.clone(),
                        &connect_uri,
                        bytes::Bytes::new(),
                        token,
                    )
                    .await
                } else if user_info {
                    identity
                        .user_info(request(UserInfoRequest {}, token))
                        .await
                        .map(drop)
                        .map_err(|e| format!("{:?} {}", e.code(), e.message()))
                } else {
                    admin
                        .get_domains(request(GetDomainRequest {}, token))
                        .await
                        .map(drop)
                        .map_err(|e| format!("{:?} {}", e.code(), e.message()))
                };
                let t1 = Instant::now();
                if t0 < measure_from {
                    continue;
                }
                match res {
                    Ok(_) => lat_us.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32),
                    Err(e) => {
                        errors += 1;
                        if !reported.swap(true, Ordering::Relaxed) {
                            eprintln!("grpc_load: first error: {e}");
                        }
                    }
                }
            }
            (lat_us, errors)
        }));
    }

    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0u64;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = (Instant::now() - measure_from).as_secs_f64();
    let (client_cpu, server_cpu) = if from_file {
        (None, None) // the run ends when the tokens are used up, not at stop_at
    } else {
        cpu_window.await?
    };
    if reported.load(Ordering::Relaxed) {
        eprintln!("grpc_load: {errors} calls failed");
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx] as f64 / 1000.0
    };
    let ok = all.len() as u64;
    println!(
        "{{\"concurrency\":{},\"connections\":{},\"duration_s\":{:.3},\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"client_cpu_s\":{},\"server_cpu_s\":{}}}",
        concurrency,
        connections,
        elapsed,
        ok,
        errors,
        ok as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
        json_opt(client_cpu),
        json_opt(server_cpu),
    );
    Ok(())
}
