//! The demo applications `roster dev` runs beside the examples it applied,
//! so provisioning has somewhere to go on a machine with nothing else: for a
//! policy whose application is on this machine (127.0.0.1 or localhost),
//!
//! - a SCIM application: `scim2-server` from the project's virtualenv (what
//!   `make run` installs), accepting the policy's application token;
//! - a webhook receiver: verifies each event's signature with the policy's
//!   key, as an application should, and prints it. Its code is also the
//!   README's reference receiver in Rust.
//!
//! Only `roster dev` starts these (the `dev` feature): never the production
//! binary.

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use reqwest::Url;

use crate::api::{ApplicationKind, ProvisioningPolicy, SecretKeyRef};
use crate::connectors::webhook::{
    DEFAULT_TOLERANCE_SECS, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify,
};

/// What runs until dropped: child processes and server tasks.
#[derive(Default)]
pub struct DemoApps {
    children: Vec<tokio::process::Child>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// One line per application, for the start-up text.
    pub lines: Vec<String>,
}

impl Drop for DemoApps {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        for server in &self.servers {
            server.abort();
        }
    }
}

/// Starts a demo application for each of `applied` (`kind namespace/name`
/// lines) whose application is on this machine. One that cannot start is
/// reported in `lines`, not fatal.
pub async fn start(client: &kube::Client, applied: &[String]) -> DemoApps {
    let mut apps = DemoApps::default();
    for (namespace, policy) in crate::dev::applied_policies(client, applied).await {
        let namespace = namespace.as_str();
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let started = match policy.spec.application.kind {
            ApplicationKind::Scim => start_scim_app(client, namespace, &policy, &mut apps).await,
            ApplicationKind::Webhook => start_receiver(client, namespace, &policy, &mut apps).await,
        };
        if let Err(error) = started {
            apps.lines.push(format!(
                "demo application of {namespace}/{name} not started: {error:#}"
            ));
        }
    }
    apps
}

/// `host:port` of `url` if it is on this machine.
fn local_port(url: &str) -> Option<(Url, u16)> {
    let url = Url::parse(url).ok()?;
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
    let port = url.port_or_known_default()?;
    local.then_some((url, port))
}

async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    reference: &SecretKeyRef,
) -> anyhow::Result<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&reference.name)
        .await
        .with_context(|| format!("reading Secret {}", reference.name))?;
    let value = secret
        .data
        .and_then(|mut data| data.remove(&reference.key))
        .with_context(|| format!("Secret {} has no key {}", reference.name, reference.key))?;
    Ok(value.0)
}

async fn start_scim_app(
    client: &kube::Client,
    namespace: &str,
    policy: &ProvisioningPolicy,
    apps: &mut DemoApps,
) -> anyhow::Result<()> {
    let Some(scim) = &policy.spec.application.scim else {
        return Ok(());
    };
    let Some((url, port)) = local_port(&scim.base_url) else {
        return Ok(());
    };
    let token = secret_value(client, namespace, &scim.token_secret_ref).await?;
    let token = String::from_utf8(token).context("the application token is not UTF-8")?;
    // The virtualenv `make run` installed, else whatever is on PATH.
    let program = std::env::var_os("ROSTER_CACHE_DIR")
        .map(|dir| std::path::Path::new(&dir).join("venv/bin/scim2-server"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| "scim2-server".into());
    let child = tokio::process::Command::new(&program)
        .args(["--port", &port.to_string(), "--bearer-token", token.trim()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", program.display()))?;
    apps.children.push(child);
    let base = url.as_str().trim_end_matches('/');
    apps.lines.push(format!(
        "demo SCIM application (scim2-server) for {namespace}/{}: {base}\n  see what reached it: curl -s -H 'Authorization: Bearer {}' {base}/Users",
        policy.metadata.name.as_deref().unwrap_or_default(),
        token.trim()
    ));
    Ok(())
}

async fn start_receiver(
    client: &kube::Client,
    namespace: &str,
    policy: &ProvisioningPolicy,
    apps: &mut DemoApps,
) -> anyhow::Result<()> {
    let Some(webhook) = &policy.spec.application.webhook else {
        return Ok(());
    };
    let Some((url, port)) = local_port(&webhook.url) else {
        return Ok(());
    };
    let key = secret_value(client, namespace, &webhook.signing_secret_ref).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let path = url.path().to_owned();
    let router = axum::Router::new().route(
        &path,
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let key = key.clone();
            async move { receive(&key, &headers, &body) }
        }),
    );
    apps.servers.push(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }));
    apps.lines.push(format!(
        "demo webhook receiver for {namespace}/{}: {url} (prints each event it verified)",
        policy.metadata.name.as_deref().unwrap_or_default()
    ));
    Ok(())
}

/// One delivery: verified (204, printed) or refused (401, printed).
fn receive(key: &[u8], headers: &HeaderMap, body: &[u8]) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header(TIMESTAMP_HEADER)
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let verified = header(SIGNATURE_HEADER).is_some_and(|signature| {
        verify(key, timestamp, body, signature, now, DEFAULT_TOLERANCE_SECS)
    });
    let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let id = header(EVENT_ID_HEADER).unwrap_or("-");
    if verified {
        println!(
            "webhook receiver: verified {} {id} {}",
            event["type"].as_str().unwrap_or("?"),
            event["user"]["userName"].as_str().unwrap_or_default()
        );
        StatusCode::NO_CONTENT
    } else {
        println!("webhook receiver: REFUSED {id}: the signature does not verify");
        StatusCode::UNAUTHORIZED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_applications_on_this_machine_get_a_demo() {
        assert_eq!(
            local_port("http://127.0.0.1:8090").map(|(_, p)| p),
            Some(8090)
        );
        assert_eq!(
            local_port("http://localhost:9090/roster-events").map(|(_, p)| p),
            Some(9090)
        );
        assert!(local_port("https://crm.example.com/scim").is_none());
    }

    #[test]
    fn the_receiver_accepts_only_what_the_key_signed() {
        let body = br#"{"type":"user.created","user":{"userName":"ada@example.com"}}"#;
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, now.into());
        headers.insert(EVENT_ID_HEADER, "e-1".parse().unwrap());
        let signature = crate::connectors::webhook::sign(b"key", now, body);
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        assert_eq!(receive(b"key", &headers, body), StatusCode::NO_CONTENT);
        assert_eq!(receive(b"other", &headers, body), StatusCode::UNAUTHORIZED);
    }
}
