//! Real applications to provision into: scim2-server (PyPI), started as a
//! child process on a free port and killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Scim2Server {
    pub port: u16,
    pub token: String,
    child: Child,
    http: reqwest::Client,
}

impl Scim2Server {
    /// Starts scim2-server with a fresh bearer token; `port` 0 picks a free one.
    pub async fn start(port: u16) -> Self {
        Self::start_with_token(port, &format!("app-{:016x}", rand::random::<u64>())).await
    }

    /// Starts scim2-server on `port` (0: a free one) accepting `token`.
    pub async fn start_with_token(port: u16, token: &str) -> Self {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let token = token.to_owned();
        let child = Command::new("scim2-server")
            .args(["--port", &port.to_string(), "--bearer-token", &token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scim2-server is on PATH (make deps installs it; make test puts it on PATH)");
        let server = Self {
            port,
            token,
            child,
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if server.try_get("/ServiceProviderConfig").await.is_some() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("scim2-server did not start on port {port}");
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        let reply = self
            .http
            .get(format!("{}{path}", self.base_url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        let status = reply.status().as_u16();
        Some((status, reply.json().await.unwrap_or(Value::Null)))
    }

    /// GET from the application's own API: (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.try_get(path).await.expect("scim2-server answers")
    }

    /// Every user the application holds.
    pub async fn users(&self) -> Vec<Value> {
        let (_, body) = self.get("/Users?count=100000").await;
        body["Resources"].as_array().cloned().unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        self.stop();
    }
}
