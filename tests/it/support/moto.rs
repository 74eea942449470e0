//! The moto server: the real S3 API on 127.0.0.1:5000. Started here when it is not running.

use std::{net::TcpStream, process::Command, time::Duration};

pub const ENDPOINT: &str = "http://127.0.0.1:5000";

fn listening() -> bool {
    TcpStream::connect_timeout(
        &"127.0.0.1:5000".parse().expect("addr"),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Makes sure moto answers on 127.0.0.1:5000, starting `moto_server` if needed.
pub async fn ensure_running() {
    if listening() {
        return;
    }
    let spawned = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "5000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(err) = spawned {
        panic!("moto_server is not installed ({err}): pip install 'moto[server]'");
    }
    for _ in 0..100 {
        if listening() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on 127.0.0.1:5000: pip install 'moto[server]'");
}
