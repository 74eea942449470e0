//! The moto server: the real S3 API on 127.0.0.1:5000. Started here when it is not running.
//!
//! Backups need multipart uploads, which moto 5.2.0 to 5.2.4 completes but answers with a
//! malformed response (getmoto/moto#10055). Their tests use a moto of a fixed version on
//! 127.0.0.1:5001, from the tools virtual env that `scripts/services.sh` sets up.

use std::{net::TcpStream, path::PathBuf, process::Command, time::Duration};

pub const ENDPOINT: &str = "http://127.0.0.1:5000";
pub const MULTIPART_ENDPOINT: &str = "http://127.0.0.1:5001";

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Makes sure moto answers on 127.0.0.1:5000, starting `moto_server` if needed.
pub async fn ensure_running() {
    start("moto_server".into(), 5000).await;
}

/// Makes sure a moto with working multipart uploads answers on 127.0.0.1:5001.
pub async fn ensure_multipart_running() {
    let tools = std::env::var_os("TOOLS_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/backend-tools/venv")
        },
        PathBuf::from,
    );
    start(tools.join("bin/moto_server"), 5001).await;
}

async fn start(program: PathBuf, port: u16) {
    if listening(port) {
        return;
    }
    let spawned = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(err) = spawned {
        panic!(
            "{} is not installed ({err}): run scripts/services.sh",
            program.display()
        );
    }
    for _ in 0..100 {
        if listening(port) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start on 127.0.0.1:{port}: run scripts/services.sh");
}
