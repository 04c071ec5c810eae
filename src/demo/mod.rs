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
//! For the examples' SAML policies it also runs a demo identity provider
//! (`idp`), which the policies are made to trust, and a demo application
//! behind the SSO gate (`app`), so a browser login can be tried end to end.
//!
//! Only `roster dev` starts these (the `dev` feature): never the production
//! binary.

pub mod app;
pub mod idp;

use std::net::SocketAddr;
use std::sync::Arc;

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

/// Where the demo identity provider and the demo application behind the
/// gate listen, and where they reach Roster.
#[derive(Clone, Debug)]
pub struct Options {
    pub idp_listen: SocketAddr,
    pub app_listen: SocketAddr,
    /// Roster's public URL (what browsers use), e.g. `http://localhost:8080`.
    pub public_url: String,
    /// Roster as this process reaches it, e.g. `http://127.0.0.1:8080`.
    pub roster: String,
}

/// Starts a demo application for each of the applied `policies` (with
/// their namespaces) whose application is on this machine, and the demo IdP
/// and gated application for the SAML ones. One that cannot start is
/// reported in `lines`, not fatal.
pub async fn start(
    client: &kube::Client,
    policies: Vec<(String, ProvisioningPolicy)>,
    options: &Options,
) -> DemoApps {
    let mut apps = DemoApps::default();
    let saml: Vec<&ProvisioningPolicy> = policies
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.spec.saml.is_some())
        .collect();
    if !saml.is_empty() {
        if let Err(error) = start_sign_in(client, &saml, options, &mut apps).await {
            apps.lines
                .push(format!("demo identity provider not started: {error:#}"));
        }
    }
    for (namespace, policy) in policies {
        let namespace = namespace.as_str();
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let started = match policy.spec.application.kind {
            ApplicationKind::Scim => start_scim_app(client, namespace, &policy, &mut apps).await,
            ApplicationKind::Webhook => start_receiver(client, namespace, &policy, &mut apps).await,
            // A database the operator points it at: nothing to start.
            ApplicationKind::Postgres | ApplicationKind::ArgoCdRbac => continue,
        };
        if let Err(error) = started {
            apps.lines.push(format!(
                "demo application of {namespace}/{name} not started: {error:#}"
            ));
        }
    }
    apps
}

/// The demo IdP, trusted by each of `policies`, and the demo application
/// behind the gate of the first (a Jit policy if there is one).
async fn start_sign_in(
    client: &kube::Client,
    policies: &[&ProvisioningPolicy],
    options: &Options,
    apps: &mut DemoApps,
) -> anyhow::Result<()> {
    let idp_listener = tokio::net::TcpListener::bind(options.idp_listen)
        .await
        .with_context(|| format!("listening on {}", options.idp_listen))?;
    let app_listener = tokio::net::TcpListener::bind(options.app_listen)
        .await
        .with_context(|| format!("listening on {}", options.app_listen))?;
    // Browsers use `localhost` for all three, so the session cookie Roster
    // sets reaches the gated application too (cookies ignore ports).
    let idp_origin = format!("http://localhost:{}", idp_listener.local_addr()?.port());
    let app_origin = format!("http://localhost:{}", app_listener.local_addr()?.port());
    let mut idp =
        tokio::task::spawn_blocking(move || idp::DemoIdp::generate(&idp_origin)).await??;
    idp.app = Some(app_origin.clone());
    let gated = policies
        .iter()
        .find(|p| p.spec.mode == crate::api::Mode::Jit)
        .unwrap_or(&policies[0]);
    for policy in policies {
        let namespace = policy.metadata.namespace.clone().unwrap_or_default();
        let name = policy.metadata.name.clone().unwrap_or_default();
        trust_demo_idp(client, &namespace, &name, &idp, &app_origin).await?;
        let urls = crate::saml::trust::SpUrls::of(policy, &options.public_url);
        idp.services.push(idp::ServiceProvider {
            namespace,
            policy: name,
            entity_id: urls.entity_id,
            acs_url: urls.acs_url,
            login_url: urls.login_url,
        });
    }
    let gated_namespace = gated.metadata.namespace.clone().unwrap_or_default();
    let gated_name = gated.metadata.name.clone().unwrap_or_default();
    let app = app::DemoApp::new(
        &options.roster,
        &options.public_url,
        &gated_namespace,
        &gated_name,
    );
    apps.lines.push(format!(
        "demo identity provider: {}/ (it signs in whoever clicks; trusted by {}, with a key made now)",
        idp.origin,
        idp.services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.policy))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    apps.lines.push(format!(
        "demo application behind the SSO gate of {gated_namespace}/{gated_name}: {app_origin}/
  sign in: open {app_origin}/ in a browser; it leads through the demo IdP and back, and shows the identity headers"
    ));
    let idp = Arc::new(idp);
    apps.servers.push(tokio::spawn(async move {
        let _ = axum::serve(idp_listener, idp::router(idp)).await;
    }));
    apps.servers.push(tokio::spawn(async move {
        let _ = axum::serve(app_listener, app::router(Arc::new(app))).await;
    }));
    Ok(())
}

/// Makes `namespace/name` trust the demo IdP (its entity id, SSO URL and
/// certificate) and send browsers back to the demo application.
async fn trust_demo_idp(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    idp: &idp::DemoIdp,
    app_origin: &str,
) -> anyhow::Result<()> {
    let patch = serde_json::json!({"spec": {"saml": {
        "idpEntityId": idp.entity_id(),
        "idpSsoUrl": idp.sso_url(),
        "idpCertificates": [idp.certificate_pem()],
        "idpMetadata": null,
        "idpMetadataUrl": null,
        "idpMetadataConfigMapRef": null,
        "allowedRedirectUrls": [format!("{app_origin}/")],
    }}});
    Api::<ProvisioningPolicy>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &kube::api::PatchParams {
                field_manager: Some(crate::directory::writers::EXAMPLES_MANAGER.to_owned()),
                ..Default::default()
            },
            &kube::api::Patch::Merge(patch),
        )
        .await
        .with_context(|| format!("making {namespace}/{name} trust the demo IdP"))?;
    Ok(())
}

/// A demo page: `banner` (what serves it, saying it is a demo) above the
/// title and `body`, never cached.
fn page(
    status: StatusCode,
    site: &str,
    banner: &str,
    title: &str,
    body: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        status,
        [("cache-control", "no-store")],
        axum::response::Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · {site}</title></head><body style=\"font-family:sans-serif;max-width:48em;margin:2em auto\">{banner}<h1>{title}</h1>{body}</body></html>"
        )),
    )
        .into_response()
}

/// Minimal HTML escaping for the demo pages, which quote errors.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        "demo SCIM application (scim2-server) for {namespace}/{}: {base}\n  see what reached it: curl -s -H 'Authorization: Bearer {token}' {base}/Users; curl -s -H 'Authorization: Bearer {token}' {base}/Groups",
        policy.metadata.name.as_deref().unwrap_or_default(),
        token = token.trim()
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
