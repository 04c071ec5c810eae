//! A leader cut off from the API server (its connections open, nothing
//! answered, as in a partition) stops leading before its Lease can expire
//! for the others; after the cut heals exactly one replica leads, and no
//! account was created twice or left out.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use roster::api::{DeprovisionAction, User};
use roster::leader::{self, LeaderArgs};
use roster::operator::RunArgs;
use roster::server::ServerArgs;

use crate::controller::{eventually, policy_for, synced};
use crate::support::apps::Scim2Server;
use crate::support::cut::Cut;
use crate::support::env;
use crate::support::fixtures::user;

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

/// A replica of `roster run` in this process, talking to the API server
/// with `client`; it stops when the returned sender is dropped.
fn replica(client: kube::Client, name: &str, namespace: &str) -> tokio::sync::oneshot::Sender<()> {
    let args = RunArgs {
        server: ServerArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            pod_name: Some(name.to_owned()),
            ..ServerArgs::default()
        },
        leader: LeaderArgs {
            lease_name: "accounts".into(),
            lease_namespace: namespace.to_owned(),
            lease_duration_seconds: 8,
            lease_grace_seconds: 3,
            ..LeaderArgs::default()
        },
        watch_namespace: vec![namespace.to_owned()],
        ..RunArgs::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = roster::operator::run(client, &args, async {
            let _ = stopped.await;
        })
        .await;
    });
    stop
}

/// Waits until replica `who` holds the `accounts` Lease.
async fn holds_lease(leases: &Api<Lease>, who: &str) {
    eventually(&format!("{who} to hold the Lease"), || async {
        let holder = leases
            .get_opt("accounts")
            .await
            .ok()??
            .spec?
            .holder_identity?;
        (holder == who).then_some(())
    })
    .await;
}

#[tokio::test]
async fn provisioning_across_a_partitioned_leader_neither_duplicates_nor_loses_an_account() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let leases: Api<Lease> = env.api();
    let cut = Cut::to_api_server().await;
    let _a = replica(cut.client(), "a", &env.namespace);
    holds_lease(&leases, "a").await;
    let _b = replica(env.client.clone(), "b", &env.namespace);

    let users: Api<User> = env.api();
    let count = 30;
    for i in 0..count {
        let name = format!("u-{i}");
        users
            .create(
                &PostParams::default(),
                &user(&name, "crm", &format!("person-{i}@example.com")),
            )
            .await
            .unwrap();
    }
    // Partitioned while provisioning: a may have created accounts whose
    // status it could not write.
    eventually("a to provision some users", || async {
        (app.users().await.len() >= 3).then_some(())
    })
    .await;
    cut.freeze(true);
    println!(
        "cut a off with {} accounts created",
        app.users().await.len()
    );
    holds_lease(&leases, "b").await;
    for i in 0..count {
        synced(&users, &format!("u-{i}")).await;
    }
    cut.freeze(false);
    // Whatever a does once it hears from the API server again.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let accounts = app.users().await;
    let mut user_names: Vec<&str> = accounts
        .iter()
        .filter_map(|a| a["userName"].as_str())
        .collect();
    user_names.sort();
    let mut expected: Vec<String> = (0..count)
        .map(|i| format!("person-{i}@example.com"))
        .collect();
    expected.sort();
    assert_eq!(user_names, expected, "one account per user, none lost");
    for i in 0..count {
        let user = users.get(&format!("u-{i}")).await.unwrap();
        let remote = user.status.unwrap().account.unwrap().remote_id.unwrap();
        assert!(
            accounts.iter().any(|a| a["id"] == remote.as_str()),
            "u-{i}'s account {remote} is in the application"
        );
    }
}
