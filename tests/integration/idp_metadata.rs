//! IdP metadata read from where the IdP publishes it (an https URL, its
//! certificate verified) or from a ConfigMap: a signing key rollover at the
//! IdP reaches logins with no edit to the policy.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use roster::api::{ConfigMapKeyRef, ProvisioningPolicy, SamlTrust};
use roster::server::ServerArgs;
use serde_json::json;

use crate::controller::eventually;
use crate::support::fixtures::jit_policy;
use crate::support::saml::{Idp, PUBLIC_URL, Response, SamlServer, create_policy, start_with_args};
use crate::support::{TestEnv, env};

/// An HTTPS server publishing metadata at `/metadata` (whatever is current)
/// and 300 KiB of it at `/huge`, with a certificate of its own CA.
struct MetadataServer {
    url: String,
    current: Arc<Mutex<String>>,
    ca: tempfile::NamedTempFile,
}

impl MetadataServer {
    async fn start(metadata: String) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            certified.cert.pem().into_bytes(),
            certified.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let current = Arc::new(Mutex::new(metadata));
        let served = current.clone();
        let app = Router::new()
            .route(
                "/metadata",
                get(move || {
                    let xml = served.lock().unwrap().clone();
                    async move { xml }
                }),
            )
            .route("/huge", get(|| async { "<x/>".repeat(80 * 1024) }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            axum_server::from_tcp_rustls(listener, config)
                .unwrap()
                .serve(app.into_make_service()),
        );
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), certified.cert.pem()).unwrap();
        Self {
            url: format!("https://127.0.0.1:{port}"),
            current,
            ca,
        }
    }

    fn publish(&self, metadata: String) {
        *self.current.lock().unwrap() = metadata;
    }
}

/// A Jit policy `name` whose trust is only where its metadata is.
fn policy(name: &str, source: impl FnOnce(&mut SamlTrust)) -> ProvisioningPolicy {
    let mut policy = jit_policy(name);
    let mut saml: SamlTrust = serde_json::from_value(json!({})).unwrap();
    source(&mut saml);
    policy.spec.saml = Some(saml);
    policy
}

/// A SAML server reading metadata again every second, trusting `ca`.
async fn server(env: &TestEnv, name: &str, ca: Option<&std::path::Path>) -> SamlServer {
    let args = ServerArgs {
        public_url: Some(PUBLIC_URL.to_owned()),
        idp_metadata_refresh_seconds: 1,
        idp_metadata_ca_file: ca.map(ToOwned::to_owned),
        ..ServerArgs::default()
    };
    start_with_args(env.client.clone(), env, name, args).await
}

async fn login(server: &SamlServer, idp: &Idp, email: &str) -> u16 {
    let response = Response::okta(idp, server, email, "Ada", "Lovelace");
    server.sp_login(idp, response).await.status.as_u16()
}

#[tokio::test]
async fn a_key_rollover_at_the_idp_reaches_logins_through_the_metadata_url() {
    let env = env().await;
    let before = Idp::okta();
    let after = Idp::new(&before.entity_id);
    let published = MetadataServer::start(before.metadata()).await;
    let url = format!("{}/metadata", published.url);
    create_policy(
        &env,
        &policy("wiki", |s| s.idp_metadata_url = Some(url.clone())),
    )
    .await;
    let server = server(&env, "wiki", Some(published.ca.path())).await;
    assert_eq!(login(&server, &before, "ada@example.com").await, 200);

    // The IdP rolls its signing key over and publishes the new certificate.
    published.publish(after.metadata());
    eventually("a login signed with the new key", || async {
        (login(&server, &after, "ada@example.com").await == 200).then_some(())
    })
    .await;
    assert_eq!(
        login(&server, &before, "ada@example.com").await,
        403,
        "the old key is no longer trusted"
    );

    // Too large: refused, so no login without a copy.
    let huge = format!("{}/huge", published.url);
    create_policy(&env, &policy("big", |s| s.idp_metadata_url = Some(huge))).await;
    let big = self::server(&env, "big", Some(published.ca.path())).await;
    let started = big.get("login").await;
    assert_eq!(started.status, 503, "{}", started.body);

    // A server whose certificate Roster does not trust serves no metadata.
    let untrusted = self::server(&env, "wiki", None).await;
    assert_eq!(untrusted.get("login").await.status, 503);
}

#[tokio::test]
async fn idp_metadata_in_a_config_map_follows_its_updates() {
    let env = env().await;
    let before = Idp::okta();
    let after = Idp::new(&before.entity_id);
    let maps = env.api::<ConfigMap>();
    let mut map = ConfigMap::default();
    map.metadata.name = Some("idp".into());
    map.data = Some([("metadata.xml".to_owned(), before.metadata())].into());
    maps.create(&PostParams::default(), &map).await.unwrap();
    let reference = ConfigMapKeyRef {
        name: "idp".into(),
        key: "metadata.xml".into(),
    };
    create_policy(
        &env,
        &policy("wiki", |s| s.idp_metadata_config_map_ref = Some(reference)),
    )
    .await;
    let server = server(&env, "wiki", None).await;
    assert_eq!(login(&server, &before, "ada@example.com").await, 200);

    let update = json!({"data": {"metadata.xml": after.metadata()}});
    maps.patch("idp", &PatchParams::default(), &Patch::Merge(&update))
        .await
        .unwrap();
    eventually(
        "a login signed with the key in the updated ConfigMap",
        || async { (login(&server, &after, "ada@example.com").await == 200).then_some(()) },
    )
    .await;
}
