//! HTTP load with a session per connection (not a test: it prints one table row).
//!
//! `scripts/bench-http.sh` runs it for the profiles wrk cannot send: a refresh token rotates on
//! every use and a reused one revokes its family, so each connection needs its own chain.
//! - `LOAD_PROFILE=refresh`: every request is `POST /api/v1/auth/refresh` with the connection's
//!   latest refresh token.
//! - `LOAD_PROFILE=mixed`: 90 % reads (`GET /api/v1/users/me`), 10 % writes (a refresh).
//!
//! `LOAD_URL`, `LOAD_CONNECTIONS` (64), `LOAD_SECS` (30), `LOAD_LABEL`. Each connection
//! registers its own account first; after a 3 s warm-up, it counts answers and latencies. An
//! answer other than 200 is an error.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const WARM_UP: Duration = Duration::from_secs(3);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Worker {
    client: reqwest::Client,
    base: String,
    access: String,
    refresh: String,
}

impl Worker {
    async fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .ok()?;
        let status = res.status().as_u16();
        let body = res.bytes().await.ok()?;
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    fn take_tokens(&mut self, body: &Value) {
        if let (Some(a), Some(r)) = (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) {
            self.access = a.into();
            self.refresh = r.into();
        }
    }

    async fn refresh(&mut self) -> bool {
        let body = json!({"refresh_token": self.refresh});
        match self.post("/api/v1/auth/refresh", &body).await {
            Some((200, body)) => {
                self.take_tokens(&body);
                true
            }
            _ => false,
        }
    }

    async fn me(&self) -> bool {
        let res = self
            .client
            .get(format!("{}/api/v1/users/me", self.base))
            .bearer_auth(&self.access)
            .send()
            .await;
        match res {
            Ok(res) => res.status() == 200 && res.bytes().await.is_ok(),
            Err(_) => false,
        }
    }
}

struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("LOAD_URL").unwrap_or_else(|_| "http://127.0.0.1:3191".into());
    let profile = std::env::var("LOAD_PROFILE").unwrap_or_else(|_| "mixed".into());
    anyhow::ensure!(
        profile == "refresh" || profile == "mixed",
        "LOAD_PROFILE is refresh or mixed"
    );
    let label = std::env::var("LOAD_LABEL").unwrap_or_else(|_| base.clone());
    let connections = usize::try_from(env_or("LOAD_CONNECTIONS", 64))?;
    let secs = env_or("LOAD_SECS", 30);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;

    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut workers = Vec::new();
    for i in 0..connections {
        let mut worker = Worker {
            client: client.clone(),
            base: base.clone(),
            access: String::new(),
            refresh: String::new(),
        };
        let body = json!({
            "email": format!("load-{run}-{i}@example.com"),
            "password": "correct horse battery staple",
            "name": "Load",
        });
        match worker.post("/api/v1/auth/register", &body).await {
            Some((201, body)) => worker.take_tokens(&body),
            other => anyhow::bail!("registering a load account: {other:?}"),
        }
        workers.push(worker);
    }

    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally {
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for mut worker in workers {
        let (counting, stop, tally, profile) = (
            counting.clone(),
            stop.clone(),
            tally.clone(),
            profile.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let ok = if profile == "refresh" || n.is_multiple_of(10) {
                    worker.refresh().await
                } else {
                    worker.me().await
                };
                if counting.load(Ordering::Relaxed) {
                    latencies_us
                        .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                    let counter = if ok { &tally.ok } else { &tally.errors };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies_us
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(i).copied().unwrap_or(0)) / 1000.0
    };
    let (ok, errors) = (
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    let total = ok + errors;
    println!(
        "| {label} | {profile} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} % |",
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        if total == 0 {
            0.0
        } else {
            errors as f64 * 100.0 / total as f64
        }
    );
    Ok(())
}
