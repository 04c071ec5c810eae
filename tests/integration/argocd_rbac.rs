//! The Argo CD RBAC connector through the controllers, against the real
//! API server's ConfigMap: the key Roster owns, and only it, follows the
//! directory; and the lines are judged the way Argo CD judges them, by
//! Casbin with Argo CD's model and built-in policy, after reading them with
//! Argo CD's rules (CSV with leading spaces trimmed, `#` lines skipped,
//! exactly 3 fields on a `g` line and 6 on a `p` line, any bad line
//! refusing the whole policy).

use std::collections::BTreeMap;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use roster::api::{
    ApplicationKind, ApplicationSpec, ArgoCdGroupRoles, ArgoCdRbacConnector, DeprovisionAction,
    Group, GroupMember, User,
};
use serde_json::json;

use crate::controller::{
    approve, deactivate_all, eventually, go_live, held_accounts,
    planned_one_adoption_and_one_creation, start_controllers, synced,
};
use crate::support::fixtures::{group, scim_policy, user};
use crate::support::{TestEnv, env};

/// Argo CD's `assets/model.conf` (the same from v2.13 to v3.5).
const ARGO_MODEL: &str = r#"[request_definition]
r = sub, res, act, obj

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && globOrRegexMatch(r.res, p.res) && globOrRegexMatch(r.act, p.act) && globOrRegexMatch(r.obj, p.obj)
"#;

/// The part of Argo CD's `assets/builtin-policy.csv` these checks reach.
const ARGO_BUILTIN: &str = "\
p, role:readonly, applications, get, */*, allow
p, role:readonly, projects, get, *, allow
p, role:admin, applications, create, */*, allow
p, role:admin, applications, delete, */*, allow
p, role:admin, applications, sync, */*, allow
g, role:admin, role:readonly
";

/// What the platform team keeps in `policy.csv` (another field manager).
const TEAM_POLICY: &str = "p, role:deployer, applications, sync, */*, allow\n";

/// Argo CD's policy from the ConfigMap's data as Argo CD assembles it
/// (`policy.csv`, then every other `policy.*.csv` key in key order), read
/// line by line as Argo CD's `loadPolicyLine` does; `Err` names the first
/// line Argo CD would refuse (and with it the whole policy).
pub(crate) fn argo_policy(data: &BTreeMap<String, String>) -> Result<Vec<Vec<String>>, String> {
    let mut csv = data.get("policy.csv").cloned().unwrap_or_default();
    for (key, value) in data {
        if key.starts_with("policy.") && key.ends_with(".csv") && key != "policy.csv" {
            csv.push('\n');
            csv.push_str(value);
        }
    }
    let mut rules = Vec::new();
    for line in ARGO_BUILTIN.lines().chain(csv.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .from_reader(line.as_bytes())
            .records()
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("unreadable: {line}"))?;
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        match (fields.first().map(String::as_str), fields.len()) {
            (Some("g"), 3) | (Some("p"), 6) => rules.push(fields),
            _ => return Err(format!("invalid RBAC policy: {line}")),
        }
    }
    Ok(rules)
}

/// Casbin with Argo CD's model over `rules`; `globOrRegexMatch` is glob
/// matching, Argo CD's default `policy.matchMode`.
async fn argo_enforcer(rules: Vec<Vec<String>>) -> Enforcer {
    let model = DefaultModel::from_str(ARGO_MODEL).await.unwrap();
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
        .await
        .unwrap();
    enforcer.add_function(
        "globOrRegexMatch",
        casbin::function_map::OperatorFunction::Arg2(|value, pattern| {
            casbin::function_map::glob_match(&value.to_string(), &pattern.to_string()).into()
        }),
    );
    for rule in rules {
        let (kind, rest) = rule.split_first().unwrap();
        if kind == "g" {
            enforcer.add_grouping_policy(rest.to_vec()).await.unwrap();
        } else {
            enforcer.add_policy(rest.to_vec()).await.unwrap();
        }
    }
    enforcer
}

/// Who may do `action` on applications in project `default`.
pub(crate) async fn may(data: &BTreeMap<String, String>, subject: &str, action: &str) -> bool {
    let enforcer = argo_enforcer(argo_policy(data).unwrap()).await;
    enforcer
        .enforce((subject, "applications", action, "default/guestbook"))
        .unwrap()
}

pub(crate) async fn rbac_data(config_maps: &Api<ConfigMap>) -> BTreeMap<String, String> {
    config_maps
        .get("argocd-rbac-cm")
        .await
        .unwrap()
        .data
        .unwrap_or_default()
}

/// The test's Argo CD namespace with its RBAC ConfigMap, as Argo CD's
/// installation leaves it (applied by another field manager).
pub(crate) async fn argocd_namespace(env: &TestEnv) -> (String, Api<ConfigMap>) {
    let namespace = format!("{}-argocd", env.namespace);
    let mut object = Namespace::default();
    object.metadata.name = Some(namespace.clone());
    Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &namespace);
    apply_team_keys(&config_maps, TEAM_POLICY).await;
    (namespace, config_maps)
}

/// The keys the platform team keeps, applied by Argo CD's installation
/// (its own field manager) with `policy_csv` as `policy.csv`.
async fn apply_team_keys(config_maps: &Api<ConfigMap>, policy_csv: &str) {
    config_maps
        .patch(
            "argocd-rbac-cm",
            &PatchParams::apply("argocd-install"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-rbac-cm"},
                "data": {"policy.csv": policy_csv, "policy.default": "", "scopes": "[groups, email]"},
            })),
        )
        .await
        .unwrap();
}

/// Someone edits Roster's key by hand (`kubectl edit`).
pub(crate) async fn edit_by_hand(config_maps: &Api<ConfigMap>, value: &str) {
    config_maps
        .patch(
            "argocd-rbac-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"policy.roster.csv": value}})),
        )
        .await
        .unwrap();
}

/// The connector's settings for the test's ConfigMap, with `group_roles`.
pub(crate) fn connector_settings(
    namespace: &str,
    group_roles: &[(&str, &[&str])],
) -> ArgoCdRbacConnector {
    ArgoCdRbacConnector {
        namespace: namespace.into(),
        config_map: "argocd-rbac-cm".into(),
        key: "policy.roster.csv".into(),
        group_roles: group_roles
            .iter()
            .map(|(group, roles)| ArgoCdGroupRoles {
                group: (*group).into(),
                roles: roles.iter().map(|r| (*r).into()).collect(),
            })
            .collect(),
    }
}

async fn argocd_policy(env: &TestEnv, namespace: &str, dry_run: bool) {
    let mut policy = scim_policy("argo");
    policy.spec.application = ApplicationSpec {
        kind: ApplicationKind::ArgoCdRbac,
        scim: None,
        webhook: None,
        postgres: None,
        argocd_rbac: Some(connector_settings(
            namespace,
            &[
                ("Platform", &["role:admin"]),
                ("Deployers", &["role:deployer", "role:readonly"]),
            ],
        )),
        deprovision: DeprovisionAction::Delete,
        delete_after_seconds: 0,
        dry_run,
    };
    env.api::<roster::api::ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

fn declared(user_names: &[&str]) -> Vec<GroupMember> {
    user_names
        .iter()
        .map(|name| GroupMember {
            user_name: Some((*name).into()),
            ..Default::default()
        })
        .collect()
}

/// Roster's lines, without its record.
pub(crate) fn lines(data: &BTreeMap<String, String>) -> Vec<String> {
    data.get("policy.roster.csv")
        .map(|value| {
            value
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn argo_cd_rbac_follows_the_directory_in_one_key_and_argo_cds_casbin_agrees() {
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    argocd_policy(&env, &namespace, false).await;
    let _controllers = start_controllers(&env);

    let users: Api<User> = env.api();
    // A quote and a comma in a userName: one CSV field all the same.
    let odd = "o\"brien, pat@example.com";
    for (name, user_name) in [
        ("u-ada", "ada@example.com"),
        ("u-grace", "grace@example.com"),
        ("u-pat", odd),
    ] {
        users
            .create(&PostParams::default(), &user(name, "argo", user_name))
            .await
            .unwrap();
    }
    let groups: Api<Group> = env.api();
    let mut platform = group("g-platform", "argo", "Platform");
    platform.spec.members = declared(&["ada@example.com"]);
    let mut deployers = group("g-deployers", "argo", "Deployers");
    deployers.spec.members = declared(&["grace@example.com", odd]);
    let mut unmapped = group("g-other", "argo", "Other");
    unmapped.spec.members = declared(&["grace@example.com"]);
    for g in [&platform, &deployers, &unmapped] {
        groups.create(&PostParams::default(), g).await.unwrap();
    }
    let expected = [
        r#"g,"ada@example.com",role:admin"#,
        r#"g,"grace@example.com",role:deployer"#,
        r#"g,"grace@example.com",role:readonly"#,
        r#"g,"o""brien, pat@example.com",role:deployer"#,
        r#"g,"o""brien, pat@example.com",role:readonly"#,
    ];
    eventually("Roster's lines", || async {
        (lines(&rbac_data(&config_maps).await) == expected).then_some(())
    })
    .await;
    assert_eq!(synced(&users, "u-ada").await, "u-ada");

    let data = rbac_data(&config_maps).await;
    assert_eq!(
        data["policy.csv"], TEAM_POLICY,
        "the team's key is untouched"
    );
    assert_eq!(data["scopes"], "[groups, email]");
    assert!(may(&data, "ada@example.com", "delete").await);
    assert!(may(&data, "grace@example.com", "sync").await);
    assert!(!may(&data, "grace@example.com", "delete").await);
    assert!(may(&data, odd, "get").await);
    assert!(!may(&data, "mallory@example.com", "get").await);

    // Server-side apply: Roster's manager owns its key and nothing else.
    let managed = config_maps
        .get("argocd-rbac-cm")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap();
    let fields_of = |manager: &str| {
        managed
            .iter()
            .filter(|entry| entry.manager.as_deref() == Some(manager))
            .map(|entry| serde_json::to_string(&entry.fields_v1).unwrap())
            .collect::<String>()
    };
    let ours = fields_of("roster-argocd");
    assert!(ours.contains("f:policy.roster.csv"), "{ours}");
    assert!(
        !ours.contains("f:policy.csv") && !ours.contains("f:scopes"),
        "{ours}"
    );
    assert!(fields_of("argocd-install").contains("f:policy.csv"));

    // The policy maps the group Other too; no Group changes, and Grace
    // gets its role all the same.
    let generation = groups.get("g-other").await.unwrap().metadata.generation;
    let mapped = connector_settings(
        &namespace,
        &[
            ("Platform", &["role:admin"]),
            ("Deployers", &["role:deployer", "role:readonly"]),
            ("Other", &["role:auditor"]),
        ],
    );
    env.api::<roster::api::ProvisioningPolicy>()
        .patch(
            "argo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"application": {"argocdRbac": mapped}}})),
        )
        .await
        .unwrap();
    eventually("grace's new role, recorded on the group", || async {
        let data = rbac_data(&config_maps).await;
        let status = groups.get("g-other").await.ok()?.status?;
        (data["policy.roster.csv"].contains(r#"g,"grace@example.com",role:auditor"#)
            && status.mapped_roles == ["role:auditor"])
        .then_some(())
    })
    .await;
    assert_eq!(
        groups.get("g-other").await.unwrap().metadata.generation,
        generation
    );

    // Deactivated: the lines go at once, not at the next login.
    users
        .patch(
            "u-grace",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    eventually("grace's lines gone", || async {
        let data = rbac_data(&config_maps).await;
        (!data["policy.roster.csv"].contains("g,\"grace@example.com\"")).then_some(())
    })
    .await;
    let data = rbac_data(&config_maps).await;
    assert!(!may(&data, "grace@example.com", "get").await);
    assert!(may(&data, odd, "sync").await);

    // A hand edit of Roster's key (someone granting themselves admin)...
    let mut edited = data["policy.roster.csv"].clone();
    edited.push_str("g, mallory@example.com, role:admin\n");
    edit_by_hand(&config_maps, &edited).await;
    assert!(
        may(
            &rbac_data(&config_maps).await,
            "mallory@example.com",
            "delete"
        )
        .await
    );
    // ... is undone by Roster's next write: Pat leaves Deployers.
    groups
        .patch(
            "g-deployers",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"members": declared(&["grace@example.com"])}})),
        )
        .await
        .unwrap();
    eventually("pat's lines gone and the hand edit undone", || async {
        let data = rbac_data(&config_maps).await;
        (lines(&data) == [r#"g,"ada@example.com",role:admin"#]).then_some(())
    })
    .await;
    let data = rbac_data(&config_maps).await;
    assert!(!may(&data, "mallory@example.com", "get").await);
    assert!(!may(&data, odd, "get").await);
    assert_eq!(data["policy.csv"], TEAM_POLICY);

    // Deleted (deprovision: Delete): the record forgets Ada too.
    users.delete("u-ada", &Default::default()).await.unwrap();
    eventually("ada forgotten", || async {
        let data = rbac_data(&config_maps).await;
        (!data["policy.roster.csv"].contains("ada@example.com")).then_some(())
    })
    .await;
    assert!(argo_policy(&rbac_data(&config_maps).await).is_ok());
}

/// The safety rails sit above every connector: a mass deactivation takes
/// Argo CD access away only up to the circuit breaker's limit, and the
/// rest once an operator approves.
#[tokio::test]
async fn a_mass_deactivation_leaves_argo_cd_only_up_to_the_breakers_limit() {
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    argocd_policy(&env, &namespace, false).await;
    let users: Api<User> = env.api();
    let names: Vec<String> = (0..30).map(|i| format!("p{i:02}@example.com")).collect();
    for (i, user_name) in names.iter().enumerate() {
        users
            .create(
                &PostParams::default(),
                &user(&format!("u-{i:02}"), "argo", user_name),
            )
            .await
            .unwrap();
    }
    let mut platform = group("g-platform", "argo", "Platform");
    platform.spec.members = declared(&names.iter().map(String::as_str).collect::<Vec<_>>());
    env.api::<Group>()
        .create(&PostParams::default(), &platform)
        .await
        .unwrap();
    let _controllers = start_controllers(&env);
    let policies: Api<roster::api::ProvisioningPolicy> = env.api();
    eventually("30 lines and 30 active users counted", || async {
        let counted = policies
            .get("argo")
            .await
            .ok()?
            .status?
            .counts?
            .active_users;
        (lines(&rbac_data(&config_maps).await).len() == 30 && counted == 30).then_some(())
    })
    .await;

    deactivate_all(&users, (0..30).map(|i| format!("u-{i:02}"))).await;
    // The limit is max(20, 10 % of 30) = 20: ten keep their line, held.
    let token = held_accounts(&policies, "argo", 10).await;
    assert_eq!(lines(&rbac_data(&config_maps).await).len(), 10);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        lines(&rbac_data(&config_maps).await).len(),
        10,
        "nothing else leaves while held"
    );

    approve(&policies, "argo", &token).await;
    eventually("every line gone once approved", || async {
        lines(&rbac_data(&config_maps).await)
            .is_empty()
            .then_some(())
    })
    .await;
    let data = rbac_data(&config_maps).await;
    assert!(!may(&data, "p00@example.com", "get").await);
    assert_eq!(data["policy.csv"], TEAM_POLICY);
}

/// Connectors are built again whenever their policy changes, and another
/// replica may write while leadership moves: concurrent writers of one
/// key, and someone else changing the ConfigMap meanwhile, lose nothing.
/// The group `Platform` as the controllers hand it to a connector.
fn platform_group() -> roster::connectors::DesiredGroup {
    roster::connectors::DesiredGroup {
        id: "g-platform".into(),
        uid: "uid-g".into(),
        generation: 1,
        display_name: "Platform".into(),
        external_id: None,
    }
}

#[tokio::test]
async fn concurrent_writers_of_the_key_lose_nothing() {
    use roster::connectors::argocd::ArgoCdRbacConnector as Connector_;
    use roster::connectors::{Connector, DesiredUser};
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    let settings = connector_settings(&namespace, &[("Platform", &["role:admin"])]);
    let connectors: Vec<Connector_> = (0..2)
        .map(|_| Connector_::new(env.client.clone(), &settings, "test/argo"))
        .collect();
    let platform = platform_group();
    connectors[0].create_group(&platform).await.unwrap();
    // Someone else keeps changing the team's key meanwhile.
    let other = {
        let config_maps = config_maps.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let policy = format!("{TEAM_POLICY}# edit {i}\n");
                apply_team_keys(&config_maps, &policy).await;
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
        })
    };
    let calls = (0..60).map(|i| {
        let connector = connectors[i % 2].clone();
        let platform = platform.clone();
        async move {
            let user = DesiredUser {
                id: format!("u-{i:02}"),
                uid: format!("uid-{i}"),
                generation: 1,
                user_name: format!("p{i:02}@example.com"),
                active: true,
                resource: json!({}),
            };
            // Transient errors are retried, as the controllers do.
            for _ in 0..5 {
                let done = async {
                    let id = connector.create_user(&user).await?;
                    connector
                        .change_members("g-platform", &platform, &[id], &[], "c")
                        .await
                };
                match done.await {
                    Ok(()) => return,
                    Err(error) if error.is_transient() => continue,
                    Err(error) => panic!("{error}"),
                }
            }
            panic!("still failing after 5 tries");
        }
    });
    futures::future::join_all(calls).await;
    other.await.unwrap();
    let data = rbac_data(&config_maps).await;
    assert_eq!(lines(&data).len(), 60, "every change landed");
    assert!(
        data["policy.csv"].ends_with("# edit 39\n"),
        "and every edit of theirs"
    );
}

/// The key holds at most 768 KiB (a ConfigMap, 1 MiB). Once it is full,
/// new users and members are refused (413, so the controllers report
/// them), but taking access away never is, even in the write that refuses
/// them. The key is filled by hand with the record an earlier Roster would
/// have written (4,240 members), as filling it call by call takes minutes.
#[tokio::test]
async fn a_full_key_refuses_new_members_but_never_a_deactivation() {
    use roster::connectors::argocd::ArgoCdRbacConnector as Connector_;
    use roster::connectors::{Connector, ConnectorError, DesiredUser};
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    let settings = connector_settings(&namespace, &[("Platform", &["role:admin"])]);
    let connector = Connector_::new(env.client.clone(), &settings, "test/argo");
    let platform = platform_group();
    let person = |i: usize, active: bool| DesiredUser {
        id: format!("{i:08}-7f76-453a-919d-413861904646"),
        uid: format!("uid-{i}"),
        generation: 1,
        user_name: format!("person{i:05}@example.com"),
        active,
        resource: json!({}),
    };
    let mut record = String::from("#roster,group,g-platform,\"Platform\"\n");
    for i in 0..4_240 {
        let user = person(i, true);
        record.push_str(&format!(
            "#roster,user,{},\"{}\",active\n#roster,member,g-platform,{}\n",
            user.id, user.user_name, user.id
        ));
    }
    edit_by_hand(&config_maps, &record).await;
    // Any change renders the record's lines (the hand edit has none).
    connector.create_group(&platform).await.unwrap();
    let data = rbac_data(&config_maps).await;
    assert_eq!(lines(&data).len(), 4_240);
    let before = data["policy.roster.csv"].len();

    // Users joining, and a deactivation in the same writes: about 1.8 KB
    // is left, less than the joining users' records alone (84 B each).
    let joins = futures::future::join_all((10_000..10_040).map(|i| {
        let (connector, platform, user) = (&connector, &platform, person(i, true));
        async move {
            let id = connector.create_user(&user).await?;
            connector
                .change_members("g-platform", platform, &[id], &[], "c")
                .await
        }
    }));
    let leaver = person(7, false);
    let (joined, disabled) =
        futures::future::join(joins, connector.disable_user(&leaver.id, &leaver)).await;
    disabled.expect("a deactivation is never refused for size");
    let full = |result: &Result<(), ConnectorError>| {
        matches!(result, Err(ConnectorError::Rejected { status: 413, .. }))
    };
    let landed = joined.iter().filter(|r| r.is_ok()).count();
    let refused = joined.iter().filter(|r| full(r)).count();
    assert_eq!(landed + refused, joined.len(), "{joined:?}");
    assert!(refused > 0, "the key is full, yet all {landed} joined");
    let data = rbac_data(&config_maps).await;
    let value = &data["policy.roster.csv"];
    eprintln!(
        "full key: {before} -> {} bytes; {landed} joined, {refused} refused",
        value.len()
    );
    assert!(value.len() <= 768 * 1024, "{} bytes", value.len());
    let subject = format!("\"{}\"", leaver.user_name);
    assert!(
        !lines(&data).iter().any(|line| line.contains(&subject)),
        "the deactivated member's line is gone"
    );
    assert_eq!(lines(&data).len(), 4_240 - 1 + landed);
}

/// The plan is a safety rail above every connector: a dry run against
/// Argo CD plans an adoption (a subject an earlier install recorded) and a
/// creation and writes nothing; going live performs exactly them.
#[tokio::test]
async fn a_dry_run_plans_argo_cd_subjects_and_going_live_performs_exactly_them() {
    use roster::connectors::{Connector, DesiredUser};
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    let earlier = roster::connectors::argocd::ArgoCdRbacConnector::new(
        env.client.clone(),
        &connector_settings(&namespace, &[]),
        "earlier/install",
    );
    earlier
        .create_user(&DesiredUser {
            id: "u-kept".into(),
            uid: "uid-kept".into(),
            generation: 1,
            user_name: "kept@example.com".into(),
            active: true,
            resource: json!({}),
        })
        .await
        .unwrap();
    let before = rbac_data(&config_maps).await["policy.roster.csv"].clone();
    argocd_policy(&env, &namespace, true).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    for (name, user_name) in [("u-kept", "kept@example.com"), ("u-new", "new@example.com")] {
        users
            .create(&PostParams::default(), &user(name, "argo", user_name))
            .await
            .unwrap();
    }
    let policies: Api<roster::api::ProvisioningPolicy> = env.api();
    planned_one_adoption_and_one_creation(&policies, "argo").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        rbac_data(&config_maps).await["policy.roster.csv"],
        before,
        "a dry run writes nothing"
    );

    go_live(&policies, "argo").await;
    assert_eq!(synced(&users, "u-kept").await, "u-kept", "adopted");
    assert_eq!(synced(&users, "u-new").await, "u-new");
    let record = rbac_data(&config_maps).await["policy.roster.csv"].clone();
    assert!(
        record.contains("#roster,user,u-new,\"new@example.com\",active"),
        "{record}"
    );
    assert_eq!(record.matches("kept@example.com").count(), 1, "{record}");
}
