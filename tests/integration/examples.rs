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
/// control plane, applies the examples, runs their demo applications and
/// serves: a SCIM push reaches the demo SCIM application, a User of the
/// webhook-fed policy reaches the demo receiver, and nothing it prints while
/// the API server starts reads as a failure (no ERROR line).
#[tokio::test]
async fn roster_dev_runs_a_local_playground_where_pushes_reach_demo_applications() {
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
    // What it prints, as it prints it.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = dev.stdout.take().unwrap();
    let sink = printed.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
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
    // The playground: a SCIM push reaches the demo application, and a
    // User of the webhook-fed policy reaches the demo receiver, verified.
    let pushed = http
        .post(format!(
            "http://127.0.0.1:{port}/scim/roster-demo/crm/v2/Users"
        ))
        .bearer_auth("demo-scim-token-change-me")
        .json(&serde_json::json!({"userName": "ada@example.com", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    crate::controller::eventually("the user to reach the demo application", || async {
        let users: serde_json::Value = http
            .get("http://127.0.0.1:8090/Users")
            .bearer_auth("demo-application-token")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (users["Resources"][0]["userName"] == "ada@example.com").then_some(())
    })
    .await;
    let kubeconfig = crate::controller::eventually("the printed KUBECONFIG", || async {
        let out = printed.lock().unwrap().clone();
        out.lines().find_map(|l| {
            l.split_once("export KUBECONFIG=")
                .map(|(_, p)| p.trim().to_owned())
        })
    })
    .await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let local = kube::Client::try_from(config).unwrap();
    kube::Api::<roster::api::User>::namespaced(local, "roster-demo")
        .create(
            &Default::default(),
            &crate::support::fixtures::user("u-grace", "wiki", "grace@example.com"),
        )
        .await
        .unwrap();
    crate::controller::eventually("the receiver to verify the event", || async {
        let out = printed.lock().unwrap().clone();
        out.contains("webhook receiver: verified user.created")
            .then_some(())
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = dev.wait().unwrap();
    reader.join().unwrap();
    let out = printed.lock().unwrap().clone();
    let mut err = String::new();
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
