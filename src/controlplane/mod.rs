//! A real Kubernetes control plane on loopback: etcd and kube-apiserver, started
//! the way controller-runtime's envtest starts them. Used by the integration
//! tests and by `roster dev` when no cluster is reachable. There is no
//! scheduler, controller-manager or kubelet: no garbage collection, no
//! namespace finalisation, no Pods.

mod binaries;
mod certs;
mod process;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

pub use binaries::Binaries;
use process::Process;

/// How long etcd and the API server get to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{var} and KUBEBUILDER_ASSETS are unset: run `make controlplane` (it prints the directory to use as KUBEBUILDER_ASSETS)"
    )]
    BinaryNotConfigured { var: &'static str },
    #[error("control plane binary {0} is missing or not executable: run `make controlplane`")]
    BinaryMissing(PathBuf),
    #[error("could not start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Pki(String),
    #[error("{process} exited early ({status}); its log is {log}")]
    Exited {
        process: &'static str,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("{process} was not ready within {timeout:?}; its log is {log}")]
    NotReady {
        process: &'static str,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A running etcd + kube-apiserver pair. Dropping it stops both and removes
/// their data. Field order is drop order: the API server stops before etcd.
pub struct ControlPlane {
    apiserver: Process,
    etcd: Process,
    kubeconfig: Kubeconfig,
    kubeconfig_path: PathBuf,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, then the API server, and waits until the API server is
    /// ready and the `default` namespace exists.
    pub async fn start(binaries: &Binaries) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("roster-controlplane-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("/tmp"), e))?;
        let root = dir.path().to_owned();
        match Self::start_in(binaries, &root).await {
            Ok((apiserver, etcd, kubeconfig, kubeconfig_path)) => Ok(Self {
                apiserver,
                etcd,
                kubeconfig,
                kubeconfig_path,
                dir,
            }),
            Err(error) => {
                // Keep the logs the error points at.
                let _ = dir.keep();
                Err(error)
            }
        }
    }

    async fn start_in(
        binaries: &Binaries,
        root: &Path,
    ) -> Result<(Process, Process, Kubeconfig, PathBuf), Error> {
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = root.join(name);
            std::fs::write(&path, contents).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        };

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_log = root.join("etcd.log");
        let mut etcd = Process::spawn(
            "etcd",
            &binaries.etcd,
            &[
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &etcd_log,
        )?;
        wait_for_etcd(&mut etcd, &etcd_url, &etcd_log).await?;

        let pki = certs::generate()?;
        let serving_cert = write("apiserver.crt", &pki.serving_cert)?;
        let serving_key = write("apiserver.key", &pki.serving_key)?;
        let client_ca = write("client-ca.crt", &pki.client_ca)?;
        let sa_key = write("service-account.key", &pki.service_account_key)?;
        let sa_public_key = write("service-account.pub", &pki.service_account_public_key)?;
        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let apiserver_log = root.join("kube-apiserver.log");
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--cert-dir={}", root.join("certs").display()),
                format!("--tls-cert-file={}", serving_cert.display()),
                format!("--tls-private-key-file={}", serving_key.display()),
                format!("--client-ca-file={}", client_ca.display()),
                "--authorization-mode=RBAC".to_owned(),
                "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
                "--allow-privileged=true".to_owned(),
                "--disable-admission-plugins=ServiceAccount".to_owned(),
                format!("--service-account-issuer={server}/"),
                format!("--service-account-key-file={}", sa_public_key.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
            ],
            &apiserver_log,
        )?;

        let kubeconfig = admin_kubeconfig(&server, &pki);
        let kubeconfig_yaml =
            serde_saphyr::to_string(&kubeconfig).expect("a kubeconfig serialises to YAML");
        let kubeconfig_path = write("kubeconfig", &kubeconfig_yaml)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await?;
        wait_for_apiserver(&mut apiserver, config, &apiserver_log).await?;
        Ok((apiserver, etcd, kubeconfig, kubeconfig_path))
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// The admin kubeconfig, as a file that kubectl can use.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Directory holding the certificates, etcd's data and both logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client configuration for the admin user.
    pub async fn config(&self) -> Result<kube::Config, Error> {
        Ok(kube::Config::from_custom_kubeconfig(
            self.kubeconfig.clone(),
            &KubeConfigOptions::default(),
        )
        .await?)
    }

    /// Stops both processes. Dropping does the same.
    pub fn stop(mut self) {
        self.apiserver.stop();
        self.etcd.stop();
    }
}

/// Asks the kernel for a free loopback port. Another process could take it
/// before we bind it; the window is tiny and a clash fails loudly at start.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
        .port();
    Ok(port)
}

fn admin_kubeconfig(server: &str, pki: &certs::Pki) -> Kubeconfig {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let name = "roster-local".to_owned();
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: name.clone(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                certificate_authority_data: Some(b64(&pki.serving_ca)),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "admin".to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(b64(&pki.admin_cert)),
                client_key_data: Some(b64(&pki.admin_key).into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Some(Context {
                cluster: name.clone(),
                user: Some("admin".to_owned()),
                namespace: Some("default".to_owned()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(name),
        ..Default::default()
    }
}

async fn wait_for_etcd(etcd: &mut Process, url: &str, log: &Path) -> Result<(), Error> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a plain HTTP client builds");
    let health = format!("{url}/health");
    poll_until_ready(etcd, log, || async {
        matches!(http.get(&health).send().await, Ok(r) if r.status().is_success())
    })
    .await
}

async fn wait_for_apiserver(
    apiserver: &mut Process,
    config: kube::Config,
    log: &Path,
) -> Result<(), Error> {
    let client = kube::Client::try_from(config)?;
    tracing::info!("waiting for kube-apiserver to become ready");
    poll_until_ready(apiserver, log, || async {
        // `send`, not `request_text`: a starting API server answers /readyz
        // with 500 and a text body, which kube's error handling would log
        // as an error on every poll.
        let request = http::Request::get("/readyz")
            .body(kube::client::Body::empty())
            .unwrap();
        let ready = client
            .send(request)
            .await
            .is_ok_and(|response| response.status() == http::StatusCode::OK);
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(client.clone());
        ready && matches!(namespaces.get_opt("default").await, Ok(Some(_)))
    })
    .await
}

async fn poll_until_ready<F, Fut>(
    process: &mut Process,
    log: &Path,
    mut ready: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(Error::Exited {
                process: process.name(),
                status,
                log: log.to_owned(),
            });
        }
        if ready().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NotReady {
                process: process.name(),
                timeout: START_TIMEOUT,
                log: log.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
