//! Where the control plane's binaries come from, by envtest's conventions.

use std::path::{Path, PathBuf};

use super::Error;

/// The binaries a local control plane runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    /// Optional: only printed for people to use.
    pub kubectl: Option<PathBuf>,
}

impl Binaries {
    /// `TEST_ASSET_KUBE_APISERVER`, `TEST_ASSET_ETCD` and `TEST_ASSET_KUBECTL` name one
    /// binary each and win; otherwise `KUBEBUILDER_ASSETS` names a directory holding
    /// all three (`make controlplane` prints such a directory).
    pub fn from_env() -> Result<Self, Error> {
        let assets = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
        let find = |var: &str, name: &str| -> Option<PathBuf> {
            std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| assets.as_ref().map(|dir| dir.join(name)))
        };
        let required = |var: &'static str, name: &'static str| -> Result<PathBuf, Error> {
            let path = find(var, name).ok_or(Error::BinaryNotConfigured { var })?;
            check_executable(&path)?;
            Ok(path)
        };
        Ok(Self {
            kube_apiserver: required("TEST_ASSET_KUBE_APISERVER", "kube-apiserver")?,
            etcd: required("TEST_ASSET_ETCD", "etcd")?,
            kubectl: find("TEST_ASSET_KUBECTL", "kubectl").filter(|p| p.is_file()),
        })
    }
}

fn check_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        _ => Err(Error::BinaryMissing(path.to_owned())),
    }
}
