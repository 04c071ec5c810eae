//! Leader election: every replica serves HTTP, only the holder of a Lease
//! runs the controllers. Built on kube-lease-manager.

use clap::Args;
use kube_lease_manager::LeaseManagerBuilder;

/// Options of leader election.
#[derive(Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Run the controllers only while holding the Lease. Disable only when
    /// exactly one replica runs.
    #[arg(long, env = "ROSTER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "ROSTER_LEASE_NAME", default_value = "roster-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (the chart sets the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a Lease stays valid without renewal: how long a standby waits
    /// after the leader dies.
    #[arg(long, env = "ROSTER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds before expiry the holder renews (also the clock skew tolerated).
    #[arg(long, env = "ROSTER_LEASE_GRACE_SECONDS", default_value_t = 5)]
    pub lease_grace_seconds: u64,
}

impl Default for LeaderArgs {
    fn default() -> Self {
        Self {
            leader_election: true,
            lease_name: "roster-controller".into(),
            lease_namespace: "default".into(),
            lease_duration_seconds: 15,
            lease_grace_seconds: 5,
        }
    }
}

/// The Lease as this replica sees it.
pub struct Election {
    /// Whether this replica leads.
    pub leading: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Gives the Lease up, so a standby takes over at once rather than
    /// after the Lease expires.
    pub async fn release(self) {
        drop(self.leading);
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the lease"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the lease"),
            Ok(Err(error)) => tracing::warn!(%error, "leader election task failed"),
            Err(_) => tracing::warn!("releasing the lease timed out"),
        }
    }
}

/// Starts taking part in the election for the Lease.
pub async fn elect(
    client: kube::Client,
    args: &LeaderArgs,
    identity: String,
) -> Result<Election, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(identity)
        .with_duration(args.lease_duration_seconds)
        .with_grace(args.lease_grace_seconds)
        .with_field_manager("roster-leader")
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    Ok(Election { leading, task })
}
