//! A stalled API server, as a partition or an etcd stall looks to a client:
//! a TCP proxy to the test control plane that can stop passing bytes (both
//! ways) while every connection stays open, and pass what it held once it
//! thaws — as a SIGSTOPped kube-apiserver would, without stopping the one
//! every other test shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Cut {
    frozen: Arc<AtomicBool>,
    port: u16,
}

impl Cut {
    /// A proxy to the test control plane's API server.
    pub async fn to_api_server() -> Self {
        let direct = super::config();
        let target = direct.cluster_url.authority().unwrap().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass(client_read, server_write, flag.clone()));
                tokio::spawn(pass(server_read, client_write, flag.clone()));
            }
        });
        Self { frozen, port }
    }

    /// A client whose every request goes through the cut.
    pub fn client(&self) -> kube::Client {
        let mut config = super::config();
        config.cluster_url = format!("https://127.0.0.1:{}", self.port).parse().unwrap();
        kube::Client::try_from(config).unwrap()
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// Copies bytes, holding each read while frozen.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
