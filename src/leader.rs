//! Leader election: every replica serves HTTP, only the holder of a Lease
//! runs the controllers. Built on kube-lease-manager.

use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
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
    /// Whether this replica leads: the lease manager says so, and the Lease
    /// as last read is still valid (see [`confirm`]).
    pub leading: tokio::sync::watch::Receiver<bool>,
    confirming: tokio::task::JoinHandle<()>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Gives the Lease up, so a standby takes over at once rather than
    /// after the Lease expires.
    pub async fn release(self) {
        drop(self.leading);
        // Its copy of the manager's channel must go too, or the manager
        // would keep the Lease.
        self.confirming.abort();
        let _ = self.confirming.await;
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
    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(identity.clone())
        .with_duration(args.lease_duration_seconds)
        .with_grace(args.lease_grace_seconds)
        .with_field_manager("roster-leader")
        .build()
        .await?;
    let (manager_says, task) = manager.watch().await;
    let (leading, confirmed) = tokio::sync::watch::channel(false);
    let leases: Api<Lease> = Api::namespaced(client, &args.lease_namespace);
    let confirming = tokio::spawn(confirm(
        leases,
        args.lease_name.clone(),
        identity,
        Duration::from_secs(args.lease_grace_seconds.max(1)) / 2,
        manager_says,
        leading,
    ));
    Ok(Election {
        leading: confirmed,
        confirming,
        task,
    })
}

/// How long one read of the Lease may take.
const LEASE_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A leader stops leading when it cannot show that its Lease is still
/// valid: the lease manager keeps saying "leading" while its renewal hangs
/// (an API server that stopped answering, a partition), and another
/// replica takes the Lease once it expires. So while the manager says we
/// lead, the Lease is read every `margin / 2`, each read bounded, and we
/// lead only until `margin` before the expiry that read showed; a renewal
/// (due `grace` before expiry, twice the margin) is read before then.
async fn confirm(
    leases: Api<Lease>,
    name: String,
    identity: String,
    margin: Duration,
    mut manager_says: tokio::sync::watch::Receiver<bool>,
    leading: tokio::sync::watch::Sender<bool>,
) {
    let every = (margin / 2).max(Duration::from_millis(100));
    let mut valid_until: Option<Instant> = None;
    loop {
        let says = *manager_says.borrow_and_update();
        if says {
            let sent = Instant::now();
            // Unanswered: what the last read showed still holds.
            if let Ok(Ok(lease)) =
                tokio::time::timeout(LEASE_READ_TIMEOUT, leases.get_opt(&name)).await
            {
                let spec = lease.and_then(|l| l.spec).unwrap_or_default();
                let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
                valid_until = valid_until_of(
                    spec.holder_identity.as_deref() == Some(identity.as_str()),
                    renewed,
                    spec.lease_duration_seconds,
                    Timestamp::now(),
                    sent,
                    margin,
                );
            }
        } else {
            valid_until = None;
        }
        let leads = says && valid_until.is_some_and(|until| Instant::now() < until);
        if *leading.borrow() != leads {
            if says && !leads {
                tracing::warn!(
                    lease = name,
                    "cannot confirm the Lease is still ours before it expires: not leading"
                );
            }
            leading.send_replace(leads);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = manager_says.changed() => if changed.is_err() { return },
        }
    }
}

/// Until when (on the local monotonic clock) a Lease read at `sent` lets
/// us lead: `margin` before its expiry, if we hold it. Pure.
fn valid_until_of(
    ours: bool,
    renewed: Option<Timestamp>,
    duration_seconds: Option<i32>,
    now: Timestamp,
    sent: Instant,
    margin: Duration,
) -> Option<Instant> {
    let (true, Some(renewed), Some(seconds)) = (ours, renewed, duration_seconds) else {
        return None;
    };
    let expiry = renewed + SignedDuration::from_secs(i64::from(seconds));
    let left = now.duration_until(expiry);
    let left = Duration::try_from(left).unwrap_or_default();
    Some(sent + left.saturating_sub(margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_until_a_margin_before_its_expiry_and_only_if_ours() {
        let now = Timestamp::from_second(1_000).unwrap();
        let sent = Instant::now();
        let margin = Duration::from_millis(2500);
        let renewed = Some(Timestamp::from_second(995).unwrap());
        assert_eq!(
            valid_until_of(true, renewed, Some(15), now, sent, margin),
            Some(sent + Duration::from_millis(7500))
        );
        assert_eq!(
            valid_until_of(false, renewed, Some(15), now, sent, margin),
            None,
            "someone else's"
        );
        let stale = Some(Timestamp::from_second(980).unwrap());
        assert_eq!(
            valid_until_of(true, stale, Some(15), now, sent, margin),
            Some(sent),
            "already expired: not even now"
        );
        assert_eq!(
            valid_until_of(true, None, Some(15), now, sent, margin),
            None
        );
    }
}
