//! The telemetry exporters' HTTPS requests (error reports to Sentry, spans over OTLP), sent from
//! a thread of their own.
//!
//! Neither exporter can count on the process's runtime to send for it: the span batch processor
//! waits on its own thread, and an error report may be flushed by a panic hook on the runtime's
//! only thread (the Lambda functions run a one-thread runtime, which cannot send while that
//! thread waits). So the requests run on a one-thread runtime of their own, started with the
//! first request: a process that never reports starts nothing.
//!
//! The client is the AWS SDK's HTTP/1.1 stack ([`crate::aws`]: hyper over rustls with ring and
//! the built-in roots). The exporters' own clients would each link reqwest, a second HTTP stack
//! of about 200 KiB of code in every function.

use std::{sync::OnceLock, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;

use crate::aws::http_client::{Https, new_pool};

/// What can go wrong with a request; the exporters only log or count it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The most of an answer's body that is read: the exporters look at the status and headers,
/// and a collector's or Sentry's body is a short acknowledgement or error.
const MAX_ANSWER: usize = 64 * 1024;

/// A connection that takes longer than this to open is not worth waiting for: an export has a
/// few seconds in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Outbound {
    runtime: tokio::runtime::Handle,
    client: Client<Https, Full<Bytes>>,
}

/// The thread and its client, started by the first call; `None` if the thread could not start.
fn outbound() -> Option<&'static Outbound> {
    static OUTBOUND: OnceLock<Option<Outbound>> = OnceLock::new();
    OUTBOUND
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("telemetry-out".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(Outbound {
                runtime: handle,
                client: new_pool(Some(CONNECT_TIMEOUT)),
            })
        })
        .as_ref()
}

/// Sends `request` from the telemetry thread, then hands its outcome to `then` there; `false`
/// (and `then` never called) if that thread could not start. For a caller that does not wait.
pub(crate) fn send_then<F>(request: http::Request<Bytes>, timeout: Duration, then: F) -> bool
where
    F: FnOnce(Result<http::Response<Bytes>, Error>) + Send + 'static,
{
    let Some(out) = outbound() else {
        return false;
    };
    let exchange = exchange(out.client.clone(), request, timeout);
    out.runtime.spawn(async move { then(exchange.await) });
    true
}

/// Sends `request` from the telemetry thread and reads its answer, all within `timeout`. Any
/// caller may await it: a runtime, an executor of its own, a blocking wait.
pub(crate) async fn send(
    request: http::Request<Bytes>,
    timeout: Duration,
) -> Result<http::Response<Bytes>, Error> {
    let out = outbound().ok_or("the telemetry thread could not start")?;
    out.runtime
        .spawn(exchange(out.client.clone(), request, timeout))
        .await?
}

/// One request and its answer's head and body, within `timeout`. Runs on the telemetry runtime:
/// the caller may have no timer (the batch processor's thread), so even the timeout is made there.
async fn exchange(
    client: Client<Https, Full<Bytes>>,
    request: http::Request<Bytes>,
    timeout: Duration,
) -> Result<http::Response<Bytes>, Error> {
    let answered = async move {
        let answer = client.request(request.map(Full::new)).await?;
        let (head, body) = answer.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
        Ok::<_, Error>(http::Response::from_parts(head, body))
    };
    tokio::time::timeout(timeout, answered)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener that answers each connection's first request with `answer`, after `delay`.
    async fn answering(answer: &'static str, delay: Duration) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = conn.read(&mut request).await;
                    tokio::time::sleep(delay).await;
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn post(addr: std::net::SocketAddr) -> http::Request<Bytes> {
        http::Request::post(format!("http://{addr}/v1/traces"))
            .body(Bytes::from_static(b"spans"))
            .expect("a request")
    }

    #[tokio::test]
    async fn a_request_is_sent_from_the_telemetry_thread_and_its_answer_read() {
        let addr = answering(
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nx-seen: yes\r\n\r\nok",
            Duration::ZERO,
        )
        .await;
        let answer = send(post(addr), Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 202);
        assert_eq!(answer.headers()["x-seen"], "yes");
        assert_eq!(&answer.body()[..], b"ok");
    }

    /// Polls `future` on this thread, with no runtime at all: as the span batch processor's
    /// thread waits for an export.
    fn wait_without_a_runtime<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
        let mut context = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut context) {
                return out;
            }
            std::thread::park();
        }
    }

    #[tokio::test]
    async fn a_thread_without_a_runtime_sends_and_gets_its_answer() {
        let addr = answering(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::from_millis(50),
        )
        .await;
        let answer = tokio::task::spawn_blocking(move || {
            wait_without_a_runtime(send(post(addr), Duration::from_secs(5)))
        })
        .await
        .expect("the waiting thread");
        assert_eq!(answer.expect("an answer").status(), 200);
    }

    #[tokio::test]
    async fn a_request_without_an_answer_in_time_fails_at_its_timeout() {
        let addr = answering("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(30)).await;
        let started = std::time::Instant::now();
        let failed = send(post(addr), Duration::from_millis(200)).await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
