//! The Helm chart `charts/roster`: rendered with `helm template` and applied
//! to the real API server with `kubectl apply --dry-run=server`, in a
//! namespace that enforces the `restricted` Pod Security Standard, so what
//! `helm install` would create is accepted as it is, without a warning. The
//! rendered objects are also checked for what the API server accepts but we
//! promise: two replicas, a strict security context, RBAC without wildcards.
//!
//! helm comes from `HELM` (the Makefile sets it from `tools/helm/build.sh`),
//! kubectl from `TEST_ASSET_KUBECTL` or `KUBEBUILDER_ASSETS`, as the API server.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Probe};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::{TestEnv, env, kubeconfig_path};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE: &str = "roster";
const RELEASE_NAMESPACE: &str = "roster-system";

fn chart() -> PathBuf {
    Path::new(ROOT).join("charts/roster")
}

fn all_features_values() -> String {
    format!("{ROOT}/charts/roster/ci/all-features-values.yaml")
}

#[tokio::test]
async fn chart_with_default_values_is_accepted_by_the_api_server() {
    let env = restricted_env().await;
    let rendered = render(&env.namespace, &server_version(&env).await, &[]);
    apply_dry_run(&rendered);
}

#[tokio::test]
async fn chart_with_every_optional_feature_is_accepted_by_the_api_server() {
    let env = restricted_env().await;
    let values = all_features_values();
    // The namespaced Roles go to a namespace that exists: the test's own.
    let watched = format!("watchNamespaces={{{}}}", env.namespace);
    let rendered = render(
        &env.namespace,
        &server_version(&env).await,
        &[
            "--values",
            &values,
            "--set",
            "rbac.scope=namespaced",
            "--set",
            &watched,
        ],
    );
    let kinds: Vec<String> = parse_objects(&rendered)
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in [
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "ConfigMap",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} rendered: {kinds:?}"
        );
    }
    apply_dry_run(&rendered);
}

#[test]
fn deployment_runs_two_non_root_replicas_on_a_read_only_filesystem() {
    let deployment: Deployment = one(&parse_objects(&render_here(&[])), "Deployment");
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));

    let pod = spec.template.spec.unwrap();
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );

    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.unwrap().drop,
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");

    assert_eq!(container.args.as_deref().unwrap()[0], "run");
    assert_eq!(
        http_path(container.liveness_probe.as_ref()),
        Some("/healthz")
    );
    assert_eq!(
        http_path(container.readiness_probe.as_ref()),
        Some("/readyz")
    );
}

#[test]
fn every_replica_shares_one_session_key_generated_at_install_or_named() {
    use k8s_openapi::api::core::v1::Secret;
    let mount = |deployment: &Deployment| -> String {
        let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "session")
            .expect("a session key volume");
        volume.secret.unwrap().secret_name.unwrap()
    };
    // Defaults: a generated Secret, kept on uninstall, mounted by every replica.
    let objects = parse_objects(&render_here(&[]));
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_SESSION_KEY_FILE").as_deref(),
        Some("/etc/roster/session/session-key")
    );
    let secret: Secret = one(&objects, "Secret");
    let name = secret.metadata.name.clone().unwrap();
    assert_eq!(mount(&deployment), name);
    assert_eq!(
        secret.metadata.annotations.unwrap()["helm.sh/resource-policy"],
        "keep"
    );
    let key = &secret.data.unwrap()["session-key"];
    assert!(key.0.len() >= 32, "a key of {} bytes", key.0.len());
    // A named Secret: mounted, and none generated.
    let objects = parse_objects(&render_here(&["--set", "sessionKey.secretName=my-key"]));
    assert!(all::<Secret>(&objects, "Secret").is_empty());
    assert_eq!(mount(&one(&objects, "Deployment")), "my-key");
}

#[test]
fn probes_and_metrics_have_their_own_plain_http_port_even_with_tls() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let objects = parse_objects(&render_here(&[
        "--set",
        "tls.secretName=roster-tls",
        "--set",
        "serviceMonitor.enabled=true",
    ]));
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_METRICS_LISTEN").as_deref(),
        Some("0.0.0.0:9090")
    );
    assert!(env_var(&deployment, "ROSTER_TLS_CERT_FILE").is_some());
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    let ports: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [("http".to_owned(), 8080), ("metrics".to_owned(), 9090)]
    );
    for probe in [&container.liveness_probe, &container.readiness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.port, IntOrString::String("metrics".into()));
        assert!(get.scheme.is_none(), "plain HTTP");
    }
    let service: Service = one(&objects, "Service");
    let targets: Vec<IntOrString> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .filter_map(|p| p.target_port)
        .collect();
    assert!(targets.contains(&IntOrString::String("metrics".into())));
    let monitor = objects
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["scheme"], "http");
}

#[test]
fn a_pod_leaves_the_endpoints_before_it_stops_accepting() {
    let deployment: Deployment = one(&parse_objects(&render_here(&[])), "Deployment");
    let delay: i64 = env_var(&deployment, "ROSTER_SHUTDOWN_DELAY_SECONDS")
        .unwrap()
        .parse()
        .unwrap();
    let grace = deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds
        .unwrap();
    assert!(
        delay > 0 && grace > delay,
        "delay {delay} s, grace {grace} s"
    );
    let output = helm_template(
        RELEASE_NAMESPACE,
        &kube_version(),
        &["--set", "shutdownDelaySeconds=30"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("must exceed shutdownDelaySeconds"),
        "{stderr}"
    );
}

/// The `steady state` RSS in BENCHMARKS.md's memory section (MiB).
fn benchmarked_steady_rss_mib() -> f64 {
    let text = std::fs::read_to_string(Path::new(ROOT).join("BENCHMARKS.md"))
        .expect("BENCHMARKS.md is readable");
    let row = text
        .lines()
        .find(|l| l.starts_with("| steady state"))
        .expect("a steady state row in the memory section");
    row.split('|').nth(2).unwrap().trim().parse().unwrap()
}

fn mebibytes(quantity: &str) -> f64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| c.is_alphabetic()).unwrap());
    let number: f64 = number.parse().unwrap();
    match unit {
        "Mi" => number,
        "Gi" => number * 1024.0,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_default_memory_holds_the_benchmarked_directory_with_headroom() {
    let deployment: Deployment = one(&parse_objects(&render_here(&[])), "Deployment");
    let resources = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let limit = mebibytes(&resources.limits.unwrap()["memory"].0);
    let request = mebibytes(&resources.requests.unwrap()["memory"].0);
    // 100,000 Users and 10,000 Groups, every object reconciled (make bench).
    let measured = benchmarked_steady_rss_mib();
    assert!(
        request >= measured,
        "request {request} MiB < {measured} MiB measured"
    );
    assert!(
        limit >= 1.5 * measured,
        "limit {limit} MiB < 1.5 x {measured} MiB measured"
    );
}

#[test]
fn kubernetes_without_crd_field_selectors_is_refused() {
    let old = helm_template(RELEASE_NAMESPACE, "v1.30.9", &[]);
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(
        !old.status.success() && stderr.contains("kubeVersion"),
        "1.30 was not refused: {stderr}"
    );
    assert!(
        helm_template(RELEASE_NAMESPACE, "v1.31.0", &[])
            .status
            .success()
    );
}

#[test]
fn the_prometheus_rule_carries_the_tested_alerts_with_runbook_links() {
    let alerts =
        std::fs::read_to_string(Path::new(ROOT).join("charts/roster/files/alerts.yaml")).unwrap();
    let tested: Value = serde_saphyr::from_str(&alerts).unwrap();
    let rule = |args: &[&str]| -> Value {
        let mut all = vec!["--set", "prometheusRule.enabled=true"];
        all.extend_from_slice(args);
        parse_objects(&render_here(&all))
            .into_iter()
            .find(|o| o["kind"] == "PrometheusRule")
            .expect("a PrometheusRule")
    };
    let linked = rule(&[
        "--set",
        "prometheusRule.runbookBaseUrl=https://docs.example.com/roster",
    ]);
    let rules = |object: &Value| {
        object["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .clone()
    };
    let expected = tested["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules(&linked).len(), expected.len());
    for (shipped, tested) in rules(&linked).iter().zip(expected) {
        assert_eq!(shipped["alert"], tested["alert"]);
        assert_eq!(
            shipped["expr"], tested["expr"],
            "the expression promtool tested"
        );
        let anchor = tested["alert"].as_str().unwrap().to_lowercase();
        assert_eq!(
            shipped["annotations"]["runbook_url"],
            format!("https://docs.example.com/roster#{anchor}")
        );
    }
    let unlinked = rule(&[]);
    assert!(
        rules(&unlinked)
            .iter()
            .all(|r| r["annotations"].get("runbook_url").is_none())
    );
}

#[test]
fn the_dashboard_configmap_carries_the_dashboard_for_the_grafana_sidecar() {
    let objects = parse_objects(&render_here(&["--set", "grafanaDashboard.enabled=true"]));
    let map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(map["data"]["roster.json"].as_str().unwrap()).unwrap();
    let file = std::fs::read_to_string(Path::new(ROOT).join("charts/roster/files/dashboard.json"))
        .unwrap();
    assert_eq!(shipped, serde_json::from_str::<Value>(&file).unwrap());
    assert!(!shipped["panels"].as_array().unwrap().is_empty());
}

#[test]
fn pods_know_their_name_and_namespace_for_leader_election() {
    let deployment: Deployment = one(&parse_objects(&render_here(&[])), "Deployment");
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    let env = container.env.clone().unwrap_or_default();
    for (name, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let var = env
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} is not set"));
        let from = var.value_from.as_ref().and_then(|f| f.field_ref.as_ref());
        assert_eq!(from.map(|f| f.field_path.as_str()), Some(field), "{name}");
    }
}

#[test]
fn rbac_rules_name_every_resource_and_verb_and_say_why() {
    let values = all_features_values();
    for rendered in [
        render_here(&[]),
        render_here(&[
            "--values",
            &values,
            "--set",
            "rbac.scope=namespaced",
            "--set",
            "watchNamespaces={team-a}",
        ]),
    ] {
        let objects = parse_objects(&rendered);
        let mut rules: Vec<PolicyRule> = all::<ClusterRole>(&objects, "ClusterRole")
            .into_iter()
            .flat_map(|r| r.rules.unwrap_or_default())
            .collect();
        rules.extend(
            all::<Role>(&objects, "Role")
                .into_iter()
                .flat_map(|r| r.rules.unwrap_or_default()),
        );
        assert!(!rules.is_empty());
        for rule in &rules {
            let wildcard =
                |list: &Option<Vec<String>>| list.iter().flatten().any(|s| s.contains('*'));
            assert!(
                !rule.verbs.iter().any(|v| v.contains('*'))
                    && !wildcard(&rule.resources)
                    && !wildcard(&rule.api_groups)
                    && !wildcard(&rule.resource_names),
                "a wildcard in {rule:?}"
            );
            assert!(
                rule.resources.as_ref().is_some_and(|r| !r.is_empty()),
                "a rule without resources: {rule:?}"
            );
            assert_eq!(rule.non_resource_urls, None, "{rule:?}");
        }
        // Every rule carries a comment saying why it is needed.
        let lines: Vec<&str> = rendered.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "the RBAC rule at line {} of the rendered chart has no comment above it:\n{}",
                    i + 1,
                    line
                );
            }
        }
    }
}

#[test]
fn leases_are_granted_only_in_the_release_namespace_and_only_the_releases_own() {
    let objects = parse_objects(&render_here(&[]));
    let cluster_role: ClusterRole = one(&objects, "ClusterRole");
    assert!(
        !cluster_role.rules.unwrap_or_default().iter().any(|r| r
            .api_groups
            .iter()
            .flatten()
            .any(|g| g == "coordination.k8s.io")),
        "leases must not be granted cluster-wide"
    );
    let role: Role = one(&objects, "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some(RELEASE_NAMESPACE));
    assert_eq!(
        grants(&role.rules.unwrap()),
        BTreeMap::from([
            // kube-lease-manager reads and patches the Lease, never updates it.
            (
                (
                    "coordination.k8s.io".into(),
                    "leases".into(),
                    vec![RELEASE.into()]
                ),
                vec!["get".into(), "patch".into()],
            ),
            (
                ("coordination.k8s.io".into(), "leases".into(), vec![]),
                vec!["create".into()],
            ),
        ])
    );
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_LEASE_NAME").as_deref(),
        Some(RELEASE)
    );

    let without = parse_objects(&render_here(&["--set", "leaderElection.enabled=false"]));
    assert!(
        all::<Role>(&without, "Role").is_empty(),
        "no Lease, no Role"
    );
}

/// What Roster's code does with each namespaced resource (see the comment on
/// each rule in templates/_rbac.tpl for where).
fn namespaced_grants() -> BTreeMap<Grant, Vec<String>> {
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut expected = BTreeMap::new();
    let mut grant = |group: &str, resource: &str, v: &[&str]| {
        expected.insert((group.into(), resource.into(), vec![]), verbs(v));
    };
    grant(
        "roster.dev",
        "provisioningpolicies",
        &["get", "list", "watch"],
    );
    for resource in ["users", "groups"] {
        grant(
            "roster.dev",
            resource,
            &["create", "delete", "get", "list", "patch", "watch"],
        );
    }
    grant(
        "roster.dev",
        "groupmemberslices",
        &["create", "deletecollection", "list", "patch", "watch"],
    );
    grant(
        "roster.dev",
        "usernameclaims",
        &["create", "delete", "get", "patch"],
    );
    grant(
        "roster.dev",
        "consumedassertions",
        &["create", "delete", "list"],
    );
    for status in [
        "provisioningpolicies/status",
        "users/status",
        "groups/status",
        "groupmemberslices/status",
    ] {
        grant("roster.dev", status, &["patch"]);
    }
    // By name only: never list or watch, so no pod can dump every Secret.
    grant("", "secrets", &["get"]);
    // IdP metadata in a ConfigMap the policy names.
    grant("", "configmaps", &["get"]);
    // Created once each; never patched, and never through the core API.
    grant("events.k8s.io", "events", &["create"]);
    expected
}

/// Reading Roster's own CRDs, by name: the one cluster-scoped grant.
fn crd_grant() -> (Grant, Vec<String>) {
    let names = checked_in_crd_names();
    assert_eq!(names.len(), 7);
    (
        (
            "apiextensions.k8s.io".into(),
            "customresourcedefinitions".into(),
            names,
        ),
        vec!["get".into()],
    )
}

#[test]
fn the_cluster_role_grants_exactly_what_the_code_uses() {
    let objects = parse_objects(&render_here(&[]));
    let cluster_role: ClusterRole = one(&objects, "ClusterRole");
    let mut expected = namespaced_grants();
    expected.extend([crd_grant()]);
    assert_eq!(grants(&cluster_role.rules.unwrap()), expected);
    // Spelt out, over every Role too: what a compromised pod must not get.
    let every: Vec<PolicyRule> = all::<Role>(&objects, "Role")
        .into_iter()
        .flat_map(|r| r.rules.unwrap_or_default())
        .chain(grants_of_cluster_roles(&objects))
        .collect();
    for ((group, resource, _), verbs) in grants(&every) {
        assert_ne!(resource, "namespaces");
        assert!(!resource.ends_with("/finalizers"), "{resource}");
        assert!(
            !verbs.contains(&"update".to_owned()),
            "{resource}: {verbs:?}"
        );
        match resource.as_str() {
            "secrets" => assert_eq!(verbs, ["get"]),
            "events" => assert_eq!(
                (group.as_str(), &verbs[..]),
                ("events.k8s.io", &["create".to_owned()][..])
            ),
            _ => {}
        }
    }
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(env_var(&deployment, "ROSTER_WATCH_NAMESPACE"), None);
}

#[test]
fn the_namespaced_scope_grants_the_same_rules_only_in_the_watched_namespaces() {
    let objects = parse_objects(&render_here(&[
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ]));
    let cluster_role: ClusterRole = one(&objects, "ClusterRole");
    assert_eq!(
        grants(&cluster_role.rules.unwrap()),
        BTreeMap::from([crd_grant()]),
        "nothing cluster-wide but reading Roster's CRDs"
    );
    for namespace in ["team-a", "team-b"] {
        let in_namespace: Vec<Value> = objects
            .iter()
            .filter(|o| o["metadata"]["namespace"] == namespace)
            .cloned()
            .collect();
        let role: Role = one(&in_namespace, "Role");
        assert_eq!(grants(&role.rules.unwrap()), namespaced_grants());
        let binding: RoleBinding = one(&in_namespace, "RoleBinding");
        assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.namespace.as_deref(), Some(RELEASE_NAMESPACE));
    }
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_WATCH_NAMESPACE").as_deref(),
        Some("team-a,team-b")
    );
}

#[test]
fn argocd_rbac_config_maps_get_a_role_for_exactly_get_and_patch_of_that_config_map() {
    let plain = parse_objects(&render_here(&[]));
    assert!(
        all::<Role>(&plain, "Role").iter().all(|role| !role
            .metadata
            .name
            .as_deref()
            .unwrap()
            .contains("argocd")),
        "none by default"
    );
    let objects = parse_objects(&render_here(&[
        "--set",
        "argocdRbac.configMaps[0].namespace=argocd",
        "--set",
        "argocdRbac.configMaps[0].name=argocd-rbac-cm",
    ]));
    let roles: Vec<Role> = all::<Role>(&objects, "Role")
        .into_iter()
        .filter(|role| role.metadata.namespace.as_deref() == Some("argocd"))
        .collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        grants(roles[0].rules.as_deref().unwrap()),
        BTreeMap::from([(
            (
                "".to_owned(),
                "configmaps".to_owned(),
                vec!["argocd-rbac-cm".to_owned()]
            ),
            vec!["get".to_owned(), "patch".to_owned()]
        )])
    );
    let bindings: Vec<RoleBinding> = all::<RoleBinding>(&objects, "RoleBinding")
        .into_iter()
        .filter(|binding| binding.metadata.namespace.as_deref() == Some("argocd"))
        .collect();
    assert_eq!(bindings.len(), 1);
    assert_eq!(
        bindings[0].role_ref.name,
        roles[0].metadata.name.clone().unwrap()
    );
    let subject = &bindings[0].subjects.as_deref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.namespace.as_deref()),
        ("ServiceAccount", Some(RELEASE_NAMESPACE))
    );
    // The schema refuses an entry without a namespace.
    let refused = helm_template(
        RELEASE_NAMESPACE,
        &kube_version(),
        &["--set", "argocdRbac.configMaps[0].name=argocd-rbac-cm"],
    );
    assert!(!refused.status.success());
}

#[test]
fn access_grants_add_rolebindings_and_bind_on_exactly_the_allowed_cluster_roles() {
    let plain = parse_objects(&render_here(&[]));
    let plain_role: ClusterRole = one(&plain, "ClusterRole");
    let plain_grants = grants(&plain_role.rules.unwrap());
    assert!(
        plain_grants
            .keys()
            .all(|(_, resource, _)| resource != "rolebindings" && resource != "accessgrants"),
        "off by default"
    );
    let objects = parse_objects(&render_here(&[
        "--set",
        "accessGrants.enabled=true",
        "--set",
        "accessGrants.bindableClusterRoles={view,edit}",
    ]));
    let cluster_role: ClusterRole = one(&objects, "ClusterRole");
    let granted = grants(&cluster_role.rules.unwrap());
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rbac = "rbac.authorization.k8s.io".to_owned();
    assert_eq!(
        granted[&(
            rbac.clone(),
            "clusterroles".into(),
            verbs(&["edit", "view"])
        )],
        verbs(&["bind"])
    );
    assert!(
        !granted.contains_key(&(rbac.clone(), "clusterroles".into(), vec![])),
        "bind only by name"
    );
    assert_eq!(
        granted[&(rbac.clone(), "rolebindings".into(), vec![])],
        verbs(&["create", "delete", "list", "patch", "watch"])
    );
    assert_eq!(
        granted[&("".into(), "namespaces".into(), vec![])],
        verbs(&["list", "watch"])
    );
    assert_eq!(
        granted[&("roster.dev".into(), "accessgrants".into(), vec![])],
        verbs(&["get", "list", "patch", "watch"])
    );
    assert_eq!(
        granted[&("roster.dev".into(), "accessgrants/status".into(), vec![])],
        verbs(&["patch"])
    );
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_ACCESS_GRANTS").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_var(&deployment, "ROSTER_BINDABLE_CLUSTER_ROLES").as_deref(),
        Some("view,edit")
    );
    assert!(
        !granted
            .keys()
            .any(|(_, resource, _)| resource == "clusterrolebindings"),
        "no ClusterRoleBinding rights without clusterWideRoles"
    );
    assert_eq!(env_var(&deployment, "ROSTER_CLUSTER_WIDE_ROLES"), None);

    // Cluster-wide roles: ClusterRoleBinding rights, and `bind` on those too.
    let objects = parse_objects(&render_here(&[
        "--set",
        "accessGrants.enabled=true",
        "--set",
        "accessGrants.bindableClusterRoles={view}",
        "--set",
        "accessGrants.clusterWideRoles={view,cluster-reader}",
    ]));
    let cluster_role: ClusterRole = one(&objects, "ClusterRole");
    let granted = grants(&cluster_role.rules.unwrap());
    assert_eq!(
        granted[&(
            rbac.clone(),
            "clusterroles".into(),
            verbs(&["cluster-reader", "view"])
        )],
        verbs(&["bind"])
    );
    assert_eq!(
        granted[&(rbac, "clusterrolebindings".into(), vec![])],
        verbs(&["create", "delete", "list", "patch", "watch"])
    );
    let deployment: Deployment = one(&objects, "Deployment");
    assert_eq!(
        env_var(&deployment, "ROSTER_CLUSTER_WIDE_ROLES").as_deref(),
        Some("view,cluster-reader")
    );
}

fn grants_of_cluster_roles(objects: &[Value]) -> Vec<PolicyRule> {
    all::<ClusterRole>(objects, "ClusterRole")
        .into_iter()
        .flat_map(|r| r.rules.unwrap_or_default())
        .collect()
}

/// (API group, resource, resourceNames): one grant of a rule.
type Grant = (String, String, Vec<String>);

/// Every (group, resource, names) the rules grant, with its sorted verbs.
fn grants(rules: &[PolicyRule]) -> BTreeMap<Grant, Vec<String>> {
    let mut out: BTreeMap<Grant, Vec<String>> = BTreeMap::new();
    for rule in rules {
        let mut names = rule.resource_names.clone().unwrap_or_default();
        names.sort();
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let verbs = out
                    .entry((group.clone(), resource.clone(), names.clone()))
                    .or_default();
                verbs.extend(rule.verbs.iter().cloned());
                verbs.sort();
                verbs.dedup();
            }
        }
    }
    out
}

fn env_var(deployment: &Deployment, name: &str) -> Option<String> {
    let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|v| v.name == name)?
        .value
        .clone()
}

fn checked_in_crd_names() -> Vec<String> {
    let mut names: Vec<String> = crate::support::checked_in_crds()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    names.sort();
    names
}

#[test]
fn chart_crds_are_the_checked_in_crds_upgraded_with_the_release_and_kept() {
    let crds_of = |args: &[&str]| -> Vec<Value> {
        parse_objects(&render_here(args))
            .into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .collect()
    };
    let text = std::fs::read_to_string(Path::new(ROOT).join("crds/roster.dev.yaml"))
        .expect("crds/roster.dev.yaml is readable");
    let checked_in: Vec<Value> =
        serde_saphyr::from_multiple(&text).expect("crds/roster.dev.yaml parses");
    // Templates, not crds/: `helm upgrade` applies them like any object.
    let rendered = crds_of(&[]);
    assert_eq!(rendered.len(), checked_in.len());
    for (mut crd, generated) in rendered.into_iter().zip(&checked_in) {
        let metadata = crd["metadata"].as_object_mut().unwrap();
        let annotations = metadata.remove("annotations").unwrap();
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
        let labels = metadata.remove("labels").unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(&crd, generated, "as generated from the Rust types");
    }
    let unkept = crds_of(&["--set", "crds.keep=false"]);
    assert!(
        unkept
            .iter()
            .all(|c| c["metadata"].get("annotations").is_none())
    );
    assert!(crds_of(&["--set", "crds.enabled=false"]).is_empty());
}

#[test]
fn values_outside_the_schema_are_refused() {
    for (set, expected) in [
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("log.format=xml", "/log/format"),
        ("ingress.enabled=true", "/ingress/host"),
        ("rbac.scope=namespaced", "watchNamespaces"),
        (
            "rbac.secretsNamespaces={a}",
            "additional properties 'secretsNamespaces' not allowed",
        ),
    ] {
        let output = helm_template(RELEASE_NAMESPACE, &kube_version(), &["--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "--set {set} was not refused with {expected:?}: {stderr}"
        );
    }
}

/// A test namespace that enforces (and warns about) the `restricted` Pod
/// Security Standard: a Deployment whose pods would break it draws a warning,
/// which `apply_dry_run` turns into an error.
async fn restricted_env() -> TestEnv {
    let env = env().await;
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }}});
    Api::<Namespace>::all(env.client.clone())
        .patch(
            &env.namespace,
            &PatchParams::default(),
            &Patch::Merge(&labels),
        )
        .await
        .expect("labelling the test namespace");
    env
}

async fn server_version(env: &TestEnv) -> String {
    env.client
        .apiserver_version()
        .await
        .expect("the API server's version")
        .git_version
}

/// The control plane's Kubernetes version, for renders that need no server.
pub(crate) fn kube_version() -> String {
    let go_mod =
        std::fs::read_to_string(Path::new(ROOT).join("tools/controlplane/kubernetes/go.mod"))
            .expect("tools/controlplane/kubernetes/go.mod is readable");
    go_mod
        .lines()
        .find_map(|l| l.strip_prefix("require k8s.io/kubernetes "))
        .expect("a `require k8s.io/kubernetes` line")
        .trim()
        .to_owned()
}

/// `kubectl apply --dry-run=server` of rendered objects: the API server runs
/// validation and admission (Pod Security included) but stores nothing.
/// Warnings count as errors.
fn apply_dry_run(rendered: &str) {
    let mut command = Command::new(kubectl());
    command.arg("--kubeconfig").arg(kubeconfig_path()).args([
        "--warnings-as-errors",
        "apply",
        "--dry-run=server",
        "-f",
        "-",
    ]);
    let output = run(command, Some(rendered));
    // kubectl's own note that the CRDs, which the test harness installed with
    // server-side apply, lack its last-applied annotation: not the server's.
    let stderr: Vec<_> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.contains("missing the kubectl.kubernetes.io/last-applied-configuration"))
        .map(str::to_owned)
        .collect();
    assert!(
        output.status.success(),
        "kubectl apply --dry-run=server refused the chart:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        stderr.join("\n")
    );
}

/// Renders the chart into `namespace` for `kube_version`; panics if helm fails.
fn render(namespace: &str, kube_version: &str, args: &[&str]) -> String {
    render_release(RELEASE, namespace, kube_version, args)
}

/// Renders the chart as release `release`; panics if helm fails.
pub(crate) fn render_release(
    release: &str,
    namespace: &str,
    kube_version: &str,
    args: &[&str],
) -> String {
    let output = helm_template_release(release, namespace, kube_version, args);
    assert!(
        output.status.success(),
        "helm template {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

/// Renders the chart without a server, for checks of the objects themselves.
fn render_here(args: &[&str]) -> String {
    render(RELEASE_NAMESPACE, &kube_version(), args)
}

fn helm_template(namespace: &str, kube_version: &str, args: &[&str]) -> Output {
    helm_template_release(RELEASE, namespace, kube_version, args)
}

fn helm_template_release(
    release: &str,
    namespace: &str,
    kube_version: &str,
    args: &[&str],
) -> Output {
    let mut command = Command::new(helm());
    command
        .args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace, "--kube-version", kube_version])
        .args(args);
    run(command, None)
}

/// Runs `command`, feeding it `stdin`, and collects its output.
fn run(mut command: Command, stdin: Option<&str>) -> Output {
    let program = command.get_program().to_owned();
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.to_string_lossy()));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_owned();
        // A thread, so a child that writes while it reads cannot deadlock us.
        std::thread::spawn(move || pipe.write_all(input.as_bytes()))
    });
    let output = child.wait_with_output().expect("waiting for the command");
    if let Some(writer) = writer {
        writer.join().unwrap().expect("writing the command's input");
    }
    output
}

/// The path an HTTP probe requests.
fn http_path(probe: Option<&Probe>) -> Option<&str> {
    probe?.http_get.as_ref()?.path.as_deref()
}

/// The rendered objects, as JSON values.
pub(crate) fn parse_objects(rendered: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(rendered).expect("the rendered chart is YAML")
}

/// Every rendered object of `kind`, typed.
pub(crate) fn all<K: DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<K> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| {
            serde_json::from_value(o.clone())
                .unwrap_or_else(|e| panic!("a rendered {kind} does not parse: {e}"))
        })
        .collect()
}

/// The one rendered object of `kind`.
fn one<K: DeserializeOwned>(objects: &[Value], kind: &str) -> K {
    let mut found = all::<K>(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found.remove(0)
}

/// helm: `HELM`, else the binary `tools/helm/build.sh` caches.
fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM") {
        return PathBuf::from(path);
    }
    let go_mod = std::fs::read_to_string(Path::new(ROOT).join("tools/helm/go.mod"))
        .expect("tools/helm/go.mod is readable");
    let version = go_mod
        .lines()
        .find_map(|l| l.strip_prefix("require helm.sh/helm/v3 "))
        .expect("a `require helm.sh/helm/v3` line")
        .trim();
    let cache = std::env::var_os("ROSTER_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| Path::new(&d).join("roster")))
        .or_else(|| std::env::var_os("HOME").map(|d| Path::new(&d).join(".cache/roster")))
        .expect("HOME is set");
    let path = cache.join("helm").join(version).join("helm");
    assert!(
        path.is_file(),
        "HELM is unset and {} does not exist: run `make chart`, or set HELM=$(tools/helm/build.sh)",
        path.display()
    );
    path
}

/// kubectl of the control plane's version: `TEST_ASSET_KUBECTL`, else
/// `$KUBEBUILDER_ASSETS/kubectl`, else the one on PATH (for
/// `USE_EXISTING_CLUSTER=true`).
fn kubectl() -> PathBuf {
    std::env::var_os("TEST_ASSET_KUBECTL")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("KUBEBUILDER_ASSETS").map(|d| Path::new(&d).join("kubectl")))
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}
