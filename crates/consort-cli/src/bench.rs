//! `consort bench`: a pipelined HTTPS load generator for the logging app (HTTP/2 streams as the window).

use consort_node::client::{Connection, Protocol};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the bench waits for its last write to be committed.
pub const COMMIT_WAIT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Sandbox workspace to take the address, CA and user identity from.
    #[arg(long, default_value = "workspace/sandbox")]
    pub workspace: PathBuf,
    /// Node address; defaults to the first node of the sandbox.
    #[arg(long)]
    pub address: Option<String>,
    /// TLS connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (HTTP/2 streams).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Total write requests.
    #[arg(long, default_value_t = 50_000)]
    pub requests: u64,
    /// Workload: `private` or `public` logging writes.
    #[arg(long, default_value = "private")]
    pub workload: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let ws = &args.workspace;
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).map_err(|e| format!("{}: {e}", ws.join(f).display()));
    let ca = read("service_cert.pem")?;
    let (cert, key) = (read("user0_cert.pem")?, read("user0_privk.pem")?);
    let address = match &args.address {
        Some(a) => a.clone(),
        None => {
            let sb: serde_json::Value = serde_json::from_str(&read("sandbox.json")?).map_err(|e| e.to_string())?;
            sb["nodes"][0]["rpc_address"]
                .as_str()
                .ok_or("sandbox.json has no nodes")?
                .to_string()
        }
    };
    let path = match args.workload.as_str() {
        "private" => "/app/log/private",
        "public" => "/app/log/public",
        other => return Err(format!("unknown workload {other:?} (private, public)")),
    };
    if args.connections == 0 || args.window == 0 {
        return Err("--connections and --window must be at least 1".into());
    }
    let tls = consort_node::tls::client_config(&ca, Some((&cert, &key))).map_err(|e| e.to_string())?;
    let mut conns = vec![];
    for _ in 0..args.connections {
        conns.push(
            Connection::connect(&address, tls.clone(), Protocol::Http2)
                .await
                .map_err(|e| e.to_string())?,
        );
    }

    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = vec![];
    for conn in &conns {
        for _ in 0..args.window {
            let conn = conn.clone();
            let next = next.clone();
            let errors = errors.clone();
            let total = args.requests;
            tasks.push(tokio::spawn(async move {
                let mut lat = vec![];
                let mut last_txid: Option<(u64, u64)> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let body = serde_json::json!({"id": i, "msg": format!("bench message {i}")});
                    let t0 = Instant::now();
                    match conn.post_json(path, &body).await {
                        Ok(r) if r.status == 200 => {
                            lat.push(t0.elapsed());
                            if let Some((v, s)) = r.txid.as_deref().and_then(|t| t.split_once('.')) {
                                if let (Ok(v), Ok(s)) = (v.parse(), s.parse()) {
                                    if last_txid.is_none_or(|(_, ls)| s > ls) {
                                        last_txid = Some((v, s));
                                    }
                                }
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                (lat, last_txid)
            }));
        }
    }
    let mut latencies = vec![];
    let mut last: Option<(u64, u64)> = None;
    for t in tasks {
        let (lat, l) = t.await.map_err(|e| e.to_string())?;
        latencies.extend(lat);
        if let Some(l) = l {
            if last.is_none_or(|x| l.1 > x.1) {
                last = Some(l);
            }
        }
    }
    let acked_elapsed = started.elapsed();
    // Wait until the last acknowledged write is committed.
    let mut committed_elapsed = None;
    if let Some((v, s)) = last {
        let deadline = Instant::now() + COMMIT_WAIT;
        while Instant::now() < deadline {
            let r = conns[0]
                .get(&format!("/app/tx?transaction_id={v}.{s}"))
                .await
                .map_err(|e| e.to_string())?;
            let status = r
                .json()
                .ok()
                .and_then(|j| j["status"].as_str().map(str::to_string))
                .unwrap_or_default();
            if status == "Committed" {
                committed_elapsed = Some(started.elapsed());
                break;
            }
            if status == "Invalid" {
                return Err(format!("transaction {v}.{s} became Invalid"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    latencies.sort();
    let ok = latencies.len() as u64;
    let acked_tps = ok as f64 / acked_elapsed.as_secs_f64();
    let committed_tps = committed_elapsed.map(|d| ok as f64 / d.as_secs_f64());
    let report = serde_json::json!({
        "workload": args.workload,
        "address": address,
        "connections": args.connections,
        "window": args.window,
        "requests": args.requests,
        "acknowledged": ok,
        "errors": errors.load(Ordering::Relaxed),
        "duration_s": acked_elapsed.as_secs_f64(),
        "acked_tx_per_s": acked_tps,
        "committed_tx_per_s": committed_tps,
        "latency_ms": {
            "p50": ms(percentile(&latencies, 0.50)),
            "p90": ms(percentile(&latencies, 0.90)),
            "p99": ms(percentile(&latencies, 0.99)),
            "max": ms(latencies.last().copied().unwrap_or_default()),
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} writes ({} errors) over {} connections x {} window in {:.2}s",
            ok,
            report["errors"],
            args.connections,
            args.window,
            acked_elapsed.as_secs_f64()
        );
        println!("acknowledged: {acked_tps:.0} tx/s");
        match committed_tps {
            Some(c) => println!("committed:    {c:.0} tx/s"),
            None => println!("committed:    (last write not committed within {COMMIT_WAIT:?})"),
        }
        let f = |k: &str| report["latency_ms"][k].as_f64().unwrap_or(0.0);
        println!(
            "latency ms:   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            f("p50"),
            f("p90"),
            f("p99"),
            f("max")
        );
    }
    Ok(())
}
