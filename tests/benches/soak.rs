//! Soak benchmark (not a test: it prints a table and fails only on unbounded growth).
//!
//! `scripts/bench-soak.sh` starts the release `local` server and runs this against it:
//! `SOAK_URL`, `SOAK_PID` (the server's process), `SOAK_SECS` (600), `SOAK_CONNECTIONS` (64).
//! Each connection is one simulated user: it registers, then loops over a mixed profile —
//! `GET /users/me` most of the time, a refresh, an upload creation, and a fresh login every few
//! seconds (password hashing is bounded per core, so logins are paced to what two cores hash,
//! not sent flat out). Every 10 s it samples the server's RSS, threads and open descriptors
//! (from /proc), its Postgres connections (`pg_stat_activity` of the bench database) and Redis
//! clients (`INFO clients`), and prints one row. At the end it fails when a resource kept
//! growing: the last third's peak above the middle third's by more than a small slack.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How often each simulated user logs in again (64 users: 16 logins/s, within two cores'
/// hashing).
const LOGIN_EVERY: Duration = Duration::from_secs(4);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

struct User {
    client: reqwest::Client,
    base: String,
    email: String,
    access: String,
    refresh: String,
    counts: Counts,
}

impl User {
    async fn send(
        &self,
        op: &str,
        req: reqwest::RequestBuilder,
    ) -> Option<(reqwest::StatusCode, Value)> {
        let res = req.send().await;
        let (status, body) = match res {
            Ok(res) => {
                let status = res.status();
                let body = res.bytes().await.unwrap_or_default();
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Err(_) => {
                self.count(op, "transport error");
                return None;
            }
        };
        self.count(op, status.as_str());
        Some((status, body))
    }

    fn count(&self, op: &str, outcome: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(format!("{op} {outcome}")).or_default() += 1;
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
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

    async fn register(&mut self) {
        let body = json!({"email": self.email, "password": PASSWORD, "name": "Soak"});
        if let Some((_, body)) = self
            .send("register", self.post("/api/v1/auth/register", &body))
            .await
        {
            self.take_tokens(&body);
        }
    }

    async fn login(&mut self) {
        let body = json!({"email": self.email, "password": PASSWORD});
        if let Some((_, body)) = self
            .send("login", self.post("/api/v1/auth/login", &body))
            .await
        {
            self.take_tokens(&body);
        }
    }

    async fn refresh(&mut self) {
        let body = json!({"refresh_token": self.refresh});
        if let Some((_, body)) = self
            .send("refresh", self.post("/api/v1/auth/refresh", &body))
            .await
        {
            self.take_tokens(&body);
        }
    }

    async fn me(&self) {
        let req = self
            .client
            .get(format!("{}/api/v1/users/me", self.base))
            .bearer_auth(&self.access);
        self.send("users/me", req).await;
    }

    async fn create_upload(&self) {
        let body = json!({"filename": "soak.txt", "content_type": "text/plain", "size": 1024});
        let req = self
            .post("/api/v1/uploads", &body)
            .bearer_auth(&self.access);
        self.send("upload", req).await;
    }
}

async fn simulate(mut user: User, stop: Arc<AtomicBool>, offset: Duration) {
    tokio::time::sleep(offset).await;
    user.register().await;
    let mut last_login = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if last_login.elapsed() >= LOGIN_EVERY {
            user.login().await;
            last_login = Instant::now();
        } else if n.is_multiple_of(20) {
            user.refresh().await;
        } else if n % 20 == 10 {
            user.create_upload().await;
        } else {
            user.me().await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    rss_mib: f64,
    threads: u64,
    fds: u64,
    pg: u64,
    redis: u64,
}

fn proc_sample(pid: u32) -> (f64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (field("VmRSS:") as f64 / 1024.0, field("Threads:"), fds)
}

async fn sample(
    pid: u32,
    db: &tokio_postgres::Client,
    redis: &mut redis::aio::MultiplexedConnection,
) -> Sample {
    let (rss_mib, threads, fds) = proc_sample(pid);
    let pg = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(redis)
        .await
        .unwrap_or_default();
    let clients = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // Less this sampler's own connection.
    Sample {
        rss_mib,
        threads,
        fds,
        pg,
        redis: clients.saturating_sub(1),
    }
}

/// A resource grew without bound when the last third's peak exceeds the middle third's by more
/// than `slack` (relative) and one whole unit.
fn grew(name: &str, values: &[f64], slack: f64) -> Option<String> {
    let third = values.len() / 3;
    if third == 0 {
        return None;
    }
    let peak = |s: &[f64]| s.iter().copied().fold(f64::MIN, f64::max);
    let (middle, last) = (peak(&values[third..2 * third]), peak(&values[2 * third..]));
    (last > middle * (1.0 + slack) && last - middle >= 1.0).then(|| {
        format!("{name} kept growing: {middle:.1} in the middle third, {last:.1} in the last")
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::var("SOAK_URL").unwrap_or_else(|_| "http://127.0.0.1:3195".into());
    let pid = u32::try_from(env_or("SOAK_PID", 0))?;
    anyhow::ensure!(pid != 0, "SOAK_PID must name the server's process");
    let secs = env_or("SOAK_SECS", 600);
    let connections = env_or("SOAK_CONNECTIONS", 64);
    let db_url = std::env::var("SOAK_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/backend_bench_soak".into());

    let (db, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let redis_url =
        std::env::var("SOAK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;

    let counts: Counts = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(connections)?)
        .build()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut users = Vec::new();
    for i in 0..connections {
        let user = User {
            client: client.clone(),
            base: base.clone(),
            email: format!("soak-{run}-{i}@example.com"),
            access: String::new(),
            refresh: String::new(),
            counts: counts.clone(),
        };
        // Spread the first registrations and logins over the login period.
        let offset = LOGIN_EVERY.mul_f64(i as f64 / connections as f64);
        users.push(tokio::spawn(simulate(user, stop.clone(), offset)));
    }

    println!("| t (s) | requests/s | RSS (MiB) | threads | fds | Postgres conns | Redis clients |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_total = 0;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.tick().await;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let s = sample(pid, &db, &mut redis).await;
        let total: u64 = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum();
        let rate = (total - last_total) as f64 / SAMPLE_EVERY.as_secs_f64();
        last_total = total;
        println!(
            "| {} | {rate:.0} | {:.1} | {} | {} | {} | {} |",
            started.elapsed().as_secs(),
            s.rss_mib,
            s.threads,
            s.fds,
            s.pg,
            s.redis
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for user in users {
        let _ = user.await;
    }

    println!("\nanswers:");
    for (what, n) in counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        println!("  {what}: {n}");
    }
    let series = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    let growth: Vec<String> = [
        grew("RSS", &series(|s| s.rss_mib), 0.05),
        grew("threads", &series(|s| s.threads as f64), 0.0),
        grew("open descriptors", &series(|s| s.fds as f64), 0.05),
        grew("Postgres connections", &series(|s| s.pg as f64), 0.0),
        grew("Redis clients", &series(|s| s.redis as f64), 0.0),
    ]
    .into_iter()
    .flatten()
    .collect();
    let failed_5xx: u64 = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(k, _)| {
            k.ends_with(" 500") || k.ends_with(" 502") || k.ends_with("transport error")
        })
        .map(|(_, n)| n)
        .sum();
    if failed_5xx > 0 {
        anyhow::bail!("{failed_5xx} answers were 500s or transport errors");
    }
    if !growth.is_empty() {
        anyhow::bail!("unbounded growth: {}", growth.join("; "));
    }
    println!("\nno resource grew without bound over {secs} s");
    Ok(())
}
