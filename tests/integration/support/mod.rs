//! Test support: one real control plane (etcd + kube-apiserver) per test
//! binary, a fresh namespace per test.
//!
//! The control plane is started on a dedicated thread that lives as long as the
//! test process: its children are tied to that thread (PR_SET_PDEATHSIG), so
//! even a killed test run leaves no servers behind, and an exit handler stops
//! them cleanly and removes their data when the tests finish.
//!
//! `USE_EXISTING_CLUSTER=true` starts nothing and uses the current kubeconfig.

#![allow(dead_code)]

pub mod apps;
pub mod browser;
pub mod cut;
pub mod fixtures;
pub mod gate;
pub mod postgres;
pub mod saml;
pub mod scim;
pub mod webhook;

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use roster::controlplane::{Binaries, ControlPlane};
use roster::{api, cluster};

/// What every test shares: how to reach the API server.
struct Shared {
    config: kube::Config,
    kubeconfig: PathBuf,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static RUNNING: Mutex<Option<ControlPlane>> = Mutex::new(None);

/// A test's view of the cluster: a client bound to the test's own runtime and
/// a namespace no other test uses.
pub struct TestEnv {
    pub client: kube::Client,
    pub namespace: String,
}

impl TestEnv {
    /// A typed API in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// Starts (once) the control plane, installs the CRDs from `crds/`, and
/// returns a client with a fresh namespace.
pub async fn env() -> TestEnv {
    // Logs, when asked for with RUST_LOG, go to the test's captured output.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let shared = SHARED.get_or_init(start_shared);
    let client =
        kube::Client::try_from(shared.config.clone()).expect("a client for the test cluster");
    let namespace = format!("test-{:08x}", rand::random::<u32>());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    ns.metadata.labels = Some([("roster.dev/test".to_owned(), "true".to_owned())].into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the test namespace");
    TestEnv { client, namespace }
}

fn start_shared() -> Shared {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the control plane");
            let started = runtime.block_on(start_control_plane());
            let _ = tx.send(started);
            // Stay alive: the control plane's processes die with this thread.
            loop {
                std::thread::park();
            }
        })
        .expect("spawning the control-plane thread");
    let (config, kubeconfig) = match rx.recv().expect("the control-plane thread answers") {
        Ok(started) => started,
        Err(error) => panic!("the test control plane did not start: {error:#}"),
    };
    Shared { config, kubeconfig }
}

async fn start_control_plane() -> anyhow::Result<(kube::Config, PathBuf)> {
    let (config, kubeconfig) = if std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|v| v == "true") {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .and_then(|list| std::env::split_paths(&list).next())
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"))
            })
            .ok_or_else(|| anyhow::anyhow!("USE_EXISTING_CLUSTER needs KUBECONFIG or HOME"))?;
        (kube::Config::infer().await?, kubeconfig)
    } else {
        let plane = ControlPlane::start(&Binaries::from_env()?).await?;
        let config = plane.config().await?;
        let kubeconfig = plane.kubeconfig_path().to_owned();
        *RUNNING.lock().unwrap() = Some(plane);
        #[allow(unsafe_code)]
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe {
            libc::atexit(stop_control_plane)
        };
        (config, kubeconfig)
    };
    let client = kube::Client::try_from(config.clone())?;
    cluster::install_crds(&client, &checked_in_crds(), Duration::from_secs(60)).await?;
    Ok((config, kubeconfig))
}

/// The admin client configuration of the test cluster (starts the control
/// plane if no test has yet), to derive other identities from.
pub fn config() -> kube::Config {
    SHARED.get_or_init(start_shared).config.clone()
}

/// The test cluster's admin kubeconfig as a file, for kubectl (starts the
/// control plane if no test has yet).
pub fn kubeconfig_path() -> PathBuf {
    SHARED.get_or_init(start_shared).kubeconfig.clone()
}

/// The CRDs as checked in under `crds/` (what users install), not as generated.
pub fn checked_in_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/roster.dev.yaml"))
            .expect("crds/roster.dev.yaml is readable");
    let crds: Vec<_> = serde_saphyr::from_multiple(&text).expect("crds/roster.dev.yaml parses");
    assert_eq!(crds.len(), api::crds().len(), "crds/ holds every CRD");
    crds
}

extern "C" fn stop_control_plane() {
    if let Ok(mut running) = RUNNING.lock() {
        if let Some(plane) = running.take() {
            plane.stop();
        }
    }
}

/// The API server's refusal message for a failed write, for assertions.
pub fn refusal(result: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            status.message
        }
        other => panic!("expected the API server to refuse the write, got {other:?}"),
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
