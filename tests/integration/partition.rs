//! A leader cut off from the API server (its connections open, nothing
//! answered, as in a partition) stops leading before its Lease can expire
//! for the others; after the cut heals exactly one replica leads.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use roster::leader::{self, LeaderArgs};

use crate::controller::eventually;
use crate::support::cut::Cut;
use crate::support::env;

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() {
    let env = env().await;
    let cut = Cut::to_api_server().await;
    let args = LeaderArgs {
        lease_name: "partition".into(),
        lease_namespace: env.namespace.clone(),
        lease_duration_seconds: 8,
        lease_grace_seconds: 3,
        ..LeaderArgs::default()
    };
    let cut_off = cut.client();
    let a = leader::elect(cut_off, &args, "a".into()).await.unwrap();
    eventually("a to lead", || {
        let leads = *a.leading.borrow();
        async move { leads.then_some(()) }
    })
    .await;

    cut.freeze(true);
    let leases: Api<Lease> = env.api();
    let expiry = |lease: Lease| {
        let spec = lease.spec?;
        let renewed = spec.renew_time?.0;
        Some(
            renewed
                + k8s_openapi::jiff::SignedDuration::from_secs(spec.lease_duration_seconds?.into()),
        )
    };
    // Stopped leading while its Lease, as the API server holds it, was
    // still valid: no other replica could have taken over yet.
    let stopped = eventually("a to stop leading", || {
        let leads = *a.leading.borrow();
        async move { (!leads).then(k8s_openapi::jiff::Timestamp::now) }
    })
    .await;
    let lease = leases.get("partition").await.unwrap();
    assert_eq!(
        lease.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("a")
    );
    let expires = expiry(lease).unwrap();
    assert!(
        stopped < expires,
        "a stopped at {stopped}, its Lease expired at {expires}"
    );

    // Another replica takes over once the Lease expires.
    let b = leader::elect(env.client.clone(), &args, "b".into())
        .await
        .unwrap();
    eventually("b to lead", || {
        let leads = *b.leading.borrow();
        async move { leads.then_some(()) }
    })
    .await;

    // The cut heals. Whatever a's lease manager does with its stale view,
    // the two never lead at once, and soon exactly one leads, the one the
    // Lease names.
    cut.freeze(false);
    for _ in 0..100 {
        let (a_leads, b_leads) = (*a.leading.borrow(), *b.leading.borrow());
        assert!(!(a_leads && b_leads), "two leaders after the cut healed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = eventually("exactly one leader, named by the Lease", || {
        let (a_leads, b_leads) = (*a.leading.borrow(), *b.leading.borrow());
        let leases = leases.clone();
        async move {
            let holder = leases.get("partition").await.ok()?.spec?.holder_identity?;
            let named = match (a_leads, b_leads) {
                (true, false) => "a",
                (false, true) => "b",
                _ => return None,
            };
            (holder == named).then_some(holder)
        }
    })
    .await;
    assert!(leader == "a" || leader == "b");
}
