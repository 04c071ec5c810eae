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

/// `make run` as a newcomer sees it: `roster dev --local` starts its own
/// control plane, applies the examples and serves, and nothing it prints
/// while the API server starts reads as a failure (no ERROR line).
#[tokio::test]
async fn roster_dev_starts_a_local_control_plane_without_error_lines() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["dev", "--local", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--leader-election=false")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("roster dev");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && dev.try_wait().unwrap().is_none(),
            "roster dev did not get ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Serving a little while, then Ctrl-C.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = dev.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    dev.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    dev.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(out.contains("SCIM base URL"), "{out}");
    assert!(
        err.contains("waiting for kube-apiserver to become ready"),
        "one line says what it waits for: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
}
