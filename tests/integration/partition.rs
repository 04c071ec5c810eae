//! A leader cut off from the API server (its connections open, nothing
//! answered, as in a partition) stops leading before its Lease can expire
//! for the others; after the cut heals exactly one replica leads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use roster::leader::{self, LeaderArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::controller::eventually;
use crate::support::env;

/// A TCP proxy to the API server that can stop passing bytes (both ways)
/// while keeping every connection open.
struct Cut {
    frozen: Arc<AtomicBool>,
    port: u16,
}

impl Cut {
    async fn to(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass(client_read, server_write, flag.clone()));
                tokio::spawn(pass(server_read, client_write, flag.clone()));
            }
        });
        Self { frozen, port }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// Copies bytes, holding each read while frozen.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() {
    let env = env().await;
    let direct = crate::support::config();
    let authority = direct.cluster_url.authority().unwrap().to_string();
    let cut = Cut::to(authority).await;
    let mut through_cut = direct.clone();
    through_cut.cluster_url = format!("https://127.0.0.1:{}", cut.port).parse().unwrap();
    let args = LeaderArgs {
        lease_name: "partition".into(),
        lease_namespace: env.namespace.clone(),
        lease_duration_seconds: 8,
        lease_grace_seconds: 3,
        ..LeaderArgs::default()
    };
    let cut_off = kube::Client::try_from(through_cut).unwrap();
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
