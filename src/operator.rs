//! `roster run`: the operator process.
//!
//! At this stage it connects, waits for its CRDs to be served and reports
//! ready; the SCIM service, SAML handler and controllers plug in here.

use std::time::Duration;

use clap::Args;

use crate::{api, cluster};

/// Options of `roster run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {}

/// Runs the operator against `client` until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    _args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    tokio::select! {
        () = wait_for_crds(&client) => {}
        () = &mut shutdown => return Ok(()),
    }
    tracing::info!("roster is ready");
    shutdown.await;
    tracing::info!("roster stopped");
    Ok(())
}

/// Waits, however long it takes, until Roster's CRDs are served: an operator
/// deployed before its CRDs should start working when they arrive, not exit.
async fn wait_for_crds(client: &kube::Client) {
    let crds = api::crds();
    loop {
        match cluster::wait_until_served(client, &crds, Duration::from_secs(30)).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "Roster's CRDs are not served yet; install them with `roster crds | kubectl apply -f -`")
            }
        }
    }
}
