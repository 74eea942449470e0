//! A TCP proxy in front of Postgres (or Redis) that can keep a dead connection looking alive.
//!
//! When a server kills a connection, the client learns of it only when it reads the server's
//! goodbye (a FATAL message, then the close). Until then, and for good after a failover whose
//! close never arrives, a pooled connection looks healthy to its pool. `hold_back_goodbyes` makes
//! that window as wide as a test needs: from then on, the connections open so far pass nothing
//! from the server to the client, and each is closed on the client the moment the client next
//! sends anything, as a connection to a server that went away answers. `freeze` models a server
//! frozen or a route black-holed: the connections open so far pass nothing in either direction
//! and are never closed. Connections opened later are proxied normally.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub struct HoldingProxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// Connections opened before this generation have lost their server.
    generation: Arc<AtomicU64>,
    /// Connections opened before this generation are frozen.
    frozen: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    /// Proxies 127.0.0.1:<a free port> to the server of `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let config: tokio_postgres::Config = database_url.parse().expect("a Postgres URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            other => panic!("the proxy needs a TCP host, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolving the database host")
            .next()
            .expect("an address");
        Self::start_to(upstream).await
    }

    /// Proxies 127.0.0.1:<a free port> to `upstream`.
    pub async fn start_to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let generation = Arc::new(AtomicU64::new(0));
        let frozen = Arc::new(AtomicU64::new(0));
        let (gone, cold) = (generation.clone(), frozen.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let state = Fate {
                    born: (gone.load(Ordering::SeqCst), cold.load(Ordering::SeqCst)),
                    gone: gone.clone(),
                    frozen: cold.clone(),
                };
                tokio::spawn(relay(client, server, state));
            }
        });
        Self {
            addr,
            upstream,
            generation,
            frozen,
            accept,
        }
    }

    /// `database_url` with its server replaced by the proxy.
    pub fn url_for(&self, database_url: &str) -> String {
        let server = self.upstream.to_string();
        let proxied = database_url.replacen(&server, &self.addr.to_string(), 1);
        assert_ne!(
            proxied, database_url,
            "the URL names its server as {server}"
        );
        proxied
    }

    /// From now on the connections open so far hear nothing more from their server.
    pub fn hold_back_goodbyes(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// From now on the connections open so far pass nothing, and stay open.
    pub fn freeze(&self) {
        self.frozen.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What has happened to one connection since it was opened.
struct Fate {
    born: (u64, u64),
    gone: Arc<AtomicU64>,
    frozen: Arc<AtomicU64>,
}

impl Fate {
    fn server_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst) > self.born.0
    }
    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst) > self.born.1
    }
}

async fn relay(client: TcpStream, server: TcpStream, fate: Fate) {
    let held_back = || fate.server_gone() || fate.frozen();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    let mut server_open = true;
    loop {
        tokio::select! {
            read = client_read.read(&mut from_client) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if fate.frozen() {
                    continue;
                }
                // The server is gone: the client's first word after that closes the connection.
                if fate.server_gone() {
                    return;
                }
                if server_write.write_all(&from_client[..n]).await.is_err() {
                    return;
                }
            }
            read = server_read.read(&mut from_server), if server_open => {
                match read {
                    Ok(0) | Err(_) if held_back() => server_open = false,
                    Ok(0) | Err(_) => return,
                    Ok(_) if held_back() => {}
                    Ok(n) => {
                        if client_write.write_all(&from_server[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}
