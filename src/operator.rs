//! `roster run`: the operator process. Every replica serves HTTP (SCIM,
//! health); the controllers plug in here as they land.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::scim::membership::MembershipIndex;
use crate::server::{self, Readiness, ServerArgs};
use crate::{api, cluster};

/// Options of `roster run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs the operator against `client` until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("listening on {}", args.server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving HTTP");
    let readiness = Readiness::default();
    let index = MembershipIndex::default();
    let watches = tokio::spawn(index.clone().run(client.clone()));
    let router = server::router(client.clone(), index, &args.server, readiness.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http = tokio::spawn(server::serve(router, listener, async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    tokio::pin!(shutdown);
    tokio::select! {
        () = wait_for_crds(&client) => {
            readiness.set_ready();
            tracing::info!("roster is ready");
            tokio::select! {
                () = &mut shutdown => {}
                result = &mut http => return Ok(result??),
            }
        }
        () = &mut shutdown => {}
        result = &mut http => return Ok(result??),
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    http.await??;
    watches.abort();
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
            Err(error) => tracing::warn!(
                %error,
                "Roster's CRDs are not served yet; install them with `roster crds | kubectl apply --server-side -f -`"
            ),
        }
    }
}
