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

/// `make run` as a newcomer sees it, driven the way its start-up text
/// says: `roster dev --local` starts its own control plane, applies the
/// examples, runs their demo applications and serves. A user and a group
/// pushed over SCIM reach the demo SCIM application, a deactivation reaches
/// it as `active: false`; in a real browser, the demo application behind
/// the gate leads through the demo IdP, whose response creates the User just
/// in time and comes back signed in, the demo receiver verifies the webhook
/// event, and a deactivation refuses the next page. Nothing printed while
/// the API server starts reads as a failure (no ERROR line). Screenshots of
/// each page land in `target/tmp/playground/`.
#[tokio::test]
async fn roster_dev_runs_a_local_playground_where_pushes_reach_demo_applications_and_a_browser_signs_in()
 {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::controller::{eventually, eventually_within};
    use crate::support::browser::{body_text, chrome, wait_until_at};
    use crate::support::free_port;

    let (port, idp_port, app_port) = (free_port(), free_port(), free_port());
    let mut dev = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["dev", "--local", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--demo-idp-listen", &format!("127.0.0.1:{idp_port}")])
        .args(["--demo-app-listen", &format!("127.0.0.1:{app_port}")])
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
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline && dev.try_wait().unwrap().is_none(),
            "roster dev did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SCIM: a user and a group pushed to `crm` reach the demo application.
    let scim = format!("http://127.0.0.1:{port}/scim/roster-demo/crm/v2");
    let token = "demo-scim-token-change-me";
    let pushed = http
        .post(format!("{scim}/Users"))
        .bearer_auth(token)
        .json(&serde_json::json!({"userName": "ada@example.com", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let id = pushed.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = http
        .post(format!("{scim}/Groups"))
        .bearer_auth(token)
        .json(&serde_json::json!({"displayName": "Engineering", "members": [{"value": id}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(group.status(), 201);
    let app_get = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:8090/{path}"))
                .bearer_auth("demo-application-token")
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    // The first push may find the demo application (a Python process
    // `roster dev` starts) not yet listening on a loaded machine; the
    // controllers' retry backoff then takes it past 30 s.
    eventually_within(
        "the user and the group to reach the demo application",
        Duration::from_secs(120),
        || async {
            let users = app_get("Users").await?;
            let groups = app_get("Groups").await?;
            let member = groups["Resources"][0]["members"][0]["value"].as_str()?;
            (users["Resources"][0]["userName"] == "ada@example.com"
                && groups["Resources"][0]["displayName"] == "Engineering"
                && users["Resources"][0]["id"].as_str() == Some(member))
            .then_some(())
        },
    )
    .await;
    let deactivated = http
        .patch(format!("{scim}/Users/{id}"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), 200);
    eventually("the deactivation to reach the demo application", || async {
        let users = app_get("Users").await?;
        (users["Resources"][0]["active"] == false).then_some(())
    })
    .await;

    // A browser: the gated demo application -> Roster's sign-in -> the demo
    // IdP -> the ACS (JIT creates the User) -> back at the application.
    let (mut driver, browser) = chrome().await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground");
    std::fs::create_dir_all(&shots).unwrap();
    let shoot = |name: &'static str| {
        let (browser, path) = (browser.clone(), shots.join(name));
        async move { std::fs::write(path, browser.screenshot().await.unwrap()).unwrap() }
    };
    let app = format!("http://localhost:{app_port}/");
    browser.goto(&app).await.unwrap();
    let at_idp = browser.current_url().await.unwrap();
    assert!(
        at_idp
            .as_str()
            .starts_with(&format!("http://localhost:{idp_port}/sso?SAMLRequest=")),
        "at {at_idp}"
    );
    let text = body_text(&browser).await;
    assert!(text.contains("Demo identity provider"), "{text}");
    assert!(text.contains("Grace Hopper"), "{text}");
    shoot("1-demo-idp.png").await;
    browser
        .find(fantoccini::Locator::Id("person-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = body_text(&browser).await;
    if text.contains("Signing in as Grace Hopper") {
        shoot("2-signing-in.png").await;
    }
    let text = wait_until_at(&browser, &app, "grace@example.com", Duration::from_secs(30)).await;
    assert!(text.contains("x-auth-request-user"), "{text}");
    // The groups the login joined show in the gate's headers once this
    // replica's watch has the memberships.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = body_text(&browser).await;
        if text.contains("admins") && text.contains("engineering") {
            break;
        }
        assert!(Instant::now() < deadline, "groups never shown: {text}");
        browser.refresh().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shoot("3-signed-in-at-the-app.png").await;

    // The login created the User just in time, in the printed cluster, and
    // the demo receiver verified the event that announced it.
    let kubeconfig = eventually("the printed KUBECONFIG", || async {
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
    let users = kube::Api::<roster::api::User>::namespaced(
        kube::Client::try_from(config).unwrap(),
        "roster-demo",
    );
    let grace = users
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|u| u.spec.user_name == "grace@example.com")
        .expect("the login created the User");
    assert_eq!(grace.spec.policy, "wiki");
    eventually("the receiver to verify the event", || async {
        let out = printed.lock().unwrap().clone();
        out.lines()
            .any(|l| {
                l.contains("webhook receiver: verified user.created")
                    && l.contains("grace@example.com")
            })
            .then_some(())
    })
    .await;

    // Deactivated: the next page is refused.
    users
        .patch(
            &kube::ResourceExt::name_any(&grace),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        browser.refresh().await.unwrap();
        let text = body_text(&browser).await;
        if text.contains("No access") {
            assert!(!text.contains("x-auth-request-user"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "still in: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shoot("4-refused-after-deactivation.png").await;
    eprintln!("screenshots in {}", shots.display());
    browser.close().await.unwrap();
    let _ = driver.kill();
    let _ = driver.wait();

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
    for line in [
        "SCIM base URL",
        "push a user:",
        "and a group:",
        "deactivate:",
        "demo identity provider: http://localhost:",
        "demo application behind the SSO gate of roster-demo/wiki",
        "get roster -A",
    ] {
        assert!(out.contains(line), "{line:?} not printed: {out}");
    }
    assert!(
        err.contains("waiting for kube-apiserver to become ready"),
        "one line says what it waits for: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
}
