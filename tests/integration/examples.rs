//! The manifests in `examples/` (what `make run` applies) are valid.

use roster::api::{Mode, ProvisioningPolicy};

use crate::support::env;

#[tokio::test]
async fn examples_apply_cleanly_and_hold_a_policy_of_each_mode() {
    let env = env().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let applied = roster::dev::apply_examples(&env.client, &dir)
        .await
        .expect("every example is accepted by the API server");
    assert!(
        applied.contains(&"ProvisioningPolicy roster-demo/crm".to_owned()),
        "{applied:?}"
    );

    // Applying twice is a no-op, as `make run` does on every start.
    roster::dev::apply_examples(&env.client, &dir)
        .await
        .expect("re-applying the examples succeeds");

    let policies: kube::Api<ProvisioningPolicy> =
        kube::Api::namespaced(env.client.clone(), "roster-demo");
    assert_eq!(policies.get("crm").await.unwrap().spec.mode, Mode::Scim);
    assert_eq!(policies.get("wiki").await.unwrap().spec.mode, Mode::Jit);
}
