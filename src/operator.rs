//! `roster run`: the operator process. Every replica serves HTTP (SCIM,
//! health); the replica holding the Lease also runs the controllers.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

use crate::directory::membership::MembershipIndex;
use crate::directory::policies::PolicyCache;
use crate::leader::{self, LeaderArgs};
use crate::server::{self, Readiness, ServerArgs};
use crate::{api, cluster, controller};

/// Options of `roster run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Watch, provision and serve SCIM and SAML for only these namespaces,
    /// comma-separated (default: all namespaces). Requests for a policy
    /// elsewhere find no policy.
    #[arg(long, env = "ROSTER_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Serve SCIM and SAML only, never run the controllers (e.g. a front-end
    /// Deployment beside the one that provisions, or a benchmark of the
    /// service alone).
    #[arg(long, env = "ROSTER_SERVE_ONLY")]
    pub serve_only: bool,
    /// How the caches get their first full list: `stream` (watch-list,
    /// `sendInitialEvents`, served from the API server's watch cache; on by
    /// default from Kubernetes 1.32), `paginate` (500 objects a request), or
    /// `auto`: stream where the API server's version serves it.
    #[arg(long, env = "ROSTER_INITIAL_LISTS", value_enum, default_value_t)]
    pub initial_lists: crate::cluster::InitialLists,
    /// Keep RoleBindings for AccessGrants (the chart's
    /// `accessGrants.enabled`, which also grants the RBAC this needs).
    #[arg(long, env = "ROSTER_ACCESS_GRANTS")]
    pub access_grants: bool,
    /// The ClusterRoles AccessGrants may bind, comma-separated; Roster must
    /// hold `bind` on each (the chart's `accessGrants.bindableClusterRoles`).
    #[arg(long, env = "ROSTER_BINDABLE_CLUSTER_ROLES", value_delimiter = ',')]
    pub bindable_cluster_roles: Vec<String>,
    /// The ClusterRoles AccessGrants may bind cluster-wide (in
    /// ClusterRoleBindings), comma-separated; none by default (the chart's
    /// `accessGrants.clusterWideRoles`, which also grants the RBAC this needs).
    #[arg(long, env = "ROSTER_CLUSTER_WIDE_ROLES", value_delimiter = ',')]
    pub cluster_wide_roles: Vec<String>,
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
    let mut server_args = args.server.clone();
    if let Some(path) = &args.server.session_key_file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = crate::saml::session::SessionKey::new(&bytes)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        server_args.session_key = Some(key);
    }
    // One set of IdP metadata copies for the SAML service and the
    // controllers; an unusable CA file stops the start.
    let refresh = Duration::from_secs(args.server.idp_metadata_refresh_seconds.max(1));
    let metadata = crate::saml::idp_metadata::MetadataSources::new(
        refresh,
        args.server.idp_metadata_ca_file.as_deref(),
    )
    .context("--idp-metadata-ca-file")?;
    server_args.idp_metadata = Some(metadata);
    crate::cluster::choose_initial_lists(&client, args.initial_lists).await;
    let index = MembershipIndex::default();
    // Every replica serves SCIM and SAML, so every replica keeps these
    // caches, of the watched namespaces only: those may be the only ones
    // Roster may read (the chart's rbac.scope=namespaced). The controllers
    // read the same caches when this replica leads.
    let keep = if args.serve_only {
        crate::directory::caches::Keep::Nothing
    } else {
        crate::directory::caches::Keep::Objects
    };
    let (caches, feed) =
        crate::directory::caches::start(&client, &args.watch_namespace, &index, keep);
    let policies = PolicyCache::over(&caches);
    let readiness = Readiness::new(index.clone()).with_policies(policies.clone());
    let watches = tokio::spawn(feed);
    let probe = tokio::spawn(probe_api_server(client.clone(), readiness.clone()));
    let trim = tokio::spawn(crate::allocator::trim_periodically());
    let router = server::router(
        client.clone(),
        index.clone(),
        &server_args,
        readiness.clone(),
    );
    let (stop_http, http_stopped) = watch::channel(false);
    let tls = server::tls(&args.server)
        .await
        .context("loading the TLS certificate")?;
    let reload = tls
        .clone()
        .map(|config| tokio::spawn(server::reload_tls(config, args.server.clone())));
    let probes = match args.server.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address}"))?;
            tracing::info!(address = %listener.local_addr()?, "serving metrics and probes");
            Some(tokio::spawn(server::serve(
                server::probes_router(readiness.clone()),
                listener,
                None,
                stopped(http_stopped.clone()),
            )))
        }
        None => None,
    };
    let mut http = tokio::spawn(server::serve(router, listener, tls, stopped(http_stopped)));
    let drain_delay = Duration::from_secs(args.server.shutdown_delay_seconds);

    let (stop_leading, leading_stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        () = wait_for_crds(&client), if args.serve_only => {
            readiness.set_ready();
            tracing::info!("roster is ready (serving only, no controllers)");
            tokio::select! {
                () = &mut shutdown => {
                    leave_endpoints(&readiness, drain_delay).await;
                    Ok(())
                }
                result = &mut http => return Ok(result??),
            }
        }
        () = wait_for_crds(&client), if !args.serve_only => {
            readiness.set_ready();
            tracing::info!("roster is ready");
            let shared = RunArgs {
                server: server_args.clone(),
                ..args.clone()
            };
            // The controllers start on filled caches: their first round
            // reads the stores, not the API.
            let lead = async {
                readiness.caches_filled().await;
                lead(client.clone(), &shared, index.clone(), caches.clone(), stopped(leading_stopped)).await
            };
            tokio::pin!(lead);
            tokio::select! {
                result = &mut lead => result,
                () = &mut shutdown => {
                    // Stop the controllers and release the Lease while the
                    // endpoints let go of this pod (the timer runs meanwhile).
                    let leaving = leave_endpoints(&readiness, drain_delay);
                    let _ = stop_leading.send(true);
                    let led = lead.await;
                    leaving.await;
                    led
                }
                result = &mut http => return Ok(result??),
            }
        }
        () = &mut shutdown => Ok(()),
        result = &mut http => return Ok(result??),
    };
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_http.send(true);
    http.await??;
    if let Some(probes) = probes {
        probes.await??;
    }
    if let Some(reload) = reload {
        reload.abort();
    }
    watches.abort();
    probe.abort();
    trim.abort();
    tracing::info!("roster stopped");
    outcome
}

/// After SIGTERM: `/readyz` fails from now on, and the server keeps
/// accepting until the returned timer (`delay` from now) ends, so the pod
/// leaves the Service's endpoints (and every proxy's view of them) before
/// it stops taking connections.
fn leave_endpoints(readiness: &Readiness, delay: Duration) -> tokio::time::Sleep {
    readiness.set_draining();
    if !delay.is_zero() {
        tracing::info!(
            seconds = delay.as_secs(),
            "shutting down: not ready, still serving while the endpoints drop this pod"
        );
    }
    tokio::time::sleep(delay)
}

/// Keeps readiness honest: every 5 s, does the API server answer? Three
/// misses in a row make the replica unready, so one slow answer under load
/// doesn't flap it.
async fn probe_api_server(client: kube::Client, readiness: Readiness) {
    let mut misses = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let answered = tokio::time::timeout(Duration::from_secs(3), client.apiserver_version())
            .await
            .is_ok_and(|answer| answer.is_ok());
        misses = if answered { 0 } else { misses + 1 };
        readiness.set_api_reachable(misses < 3);
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The controllers, running until told to stop.
struct Controllers {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Controllers {
    /// Stops at once, in-flight reconciles dropped: the Lease is lost, and
    /// another replica may be writing already. An interrupted downstream
    /// call is safe to repeat (accounts are looked up before creation).
    async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("controllers did not stop within 10s");
        }
    }
}

/// Runs the controllers whenever this replica leads (always, without leader
/// election) until `shutdown`; then stops them and releases the Lease.
async fn lead(
    client: kube::Client,
    args: &RunArgs,
    index: MembershipIndex,
    caches: Vec<crate::directory::caches::ScopeCaches>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let identity = args
        .server
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("roster-{}", uuid::Uuid::new_v4()));
    let start = || {
        let (stop, stopped_rx) = watch::channel(false);
        // One set of controllers per watched namespace, each over that
        // namespace's caches; or one set over all namespaces.
        let access = args.access_grants.then(|| crate::access::Options {
            bindable_cluster_roles: args.bindable_cluster_roles.iter().cloned().collect(),
            cluster_wide_roles: args.cluster_wide_roles.iter().cloned().collect(),
        });
        let mut runs: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
        for scope in &caches {
            if let Some(options) = &access {
                runs.push(Box::pin(crate::access::run(
                    client.clone(),
                    scope.clone(),
                    index.clone(),
                    options.clone(),
                    stopped(stopped_rx.clone()),
                )));
            }
            runs.push(Box::pin(controller::run_with(
                client.clone(),
                scope.clone(),
                index.clone(),
                Some(identity.clone()),
                args.server.public_url.clone(),
                args.server.idp_metadata_sources(),
                stopped(stopped_rx.clone()),
            )));
        }
        let task = tokio::spawn(async move {
            futures::future::join_all(runs).await;
        });
        Controllers { stop, task }
    };
    tokio::pin!(shutdown);
    if !args.leader.leader_election {
        crate::metrics::METRICS.leader.set(1);
        let controllers = start();
        shutdown.await;
        controllers.stop().await;
        return Ok(());
    }
    let mut election = leader::elect(client.clone(), &args.leader, identity.clone())
        .await
        .context("starting leader election")?;
    tracing::info!(identity, lease = args.leader.lease_name, "waiting to lead");
    let mut running: Option<Controllers> = None;
    let outcome = loop {
        let leads = *election.leading.borrow_and_update();
        match (leads, running.is_some()) {
            (true, false) => {
                tracing::info!(identity, "leading: starting the controllers");
                crate::metrics::METRICS.leader.set(1);
                running = Some(start());
            }
            (false, true) => {
                tracing::warn!(identity, "lost the lease: stopping the controllers");
                crate::metrics::METRICS.leader.set(0);
                if let Some(controllers) = running.take() {
                    controllers.abort().await;
                }
            }
            _ => {}
        }
        tokio::select! {
            changed = election.leading.changed() => {
                if changed.is_err() {
                    break Err(anyhow::anyhow!("leader election stopped"));
                }
            }
            () = &mut shutdown => break Ok(()),
        }
    };
    if let Some(controllers) = running.take() {
        controllers.stop().await;
    }
    election.release().await;
    outcome
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
