//! The PostgreSQL connector against a real PostgreSQL server (Debian's,
//! started per test on loopback), and through the controllers from User and
//! Group resources on the real API server. Disabling is proven by the
//! server: a login as the role is refused and its open session ended.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use roster::api::{
    ApplicationKind, ApplicationSpec, DeprovisionAction, Group, GroupMember, SecretKeyRef, User,
};
use roster::connectors::postgres::PostgresConnector;
use roster::connectors::{Connector, ConnectorError, DesiredGroup, DesiredUser};
use serde_json::json;

use crate::controller::{
    approve, deactivate_all, eventually, go_live, held_accounts,
    planned_one_adoption_and_one_creation, start_controllers, synced,
};
use crate::support::env;
use crate::support::fixtures::{group, scim_policy, user};
use crate::support::postgres::{Postgres, Release};

const ADMIN_PASSWORD: &str = "admin-password-0123";

fn settings(port: u16) -> roster::api::PostgresConnector {
    roster::api::PostgresConnector {
        host: "127.0.0.1".into(),
        port,
        user: "postgres".into(),
        password_secret_ref: SecretKeyRef {
            name: "crm-postgres".into(),
            key: "password".into(),
        },
        database: "postgres".into(),
        fallback_owner: "postgres".into(),
        databases: vec!["postgres".into(), "app".into()],
        protected_roles: vec!["dba".into()],
        group_roles: vec![],
        tls_mode: roster::api::PostgresTlsMode::VerifyFull,
        ca_secret_ref: Some(SecretKeyRef {
            name: "crm-postgres".into(),
            key: "ca.crt".into(),
        }),
    }
}

fn desired_user(user_name: &str, active: bool) -> DesiredUser {
    DesiredUser {
        id: "u-1".into(),
        uid: "uid-1".into(),
        generation: 1,
        user_name: user_name.into(),
        active,
        resource: json!({}),
    }
}

fn desired_group(display_name: &str) -> DesiredGroup {
    DesiredGroup {
        id: "g-1".into(),
        uid: "uid-g".into(),
        generation: 1,
        display_name: display_name.into(),
        external_id: None,
    }
}

/// Gives `role` a password out of band (the server's own authentication,
/// which Roster leaves alone), so the test can log in as it.
async fn allow_password(admin: &tokio_postgres::Client, role: &str) {
    let statement: String = admin
        .query_one(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, 'pw')",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    admin.batch_execute(&statement).await.unwrap();
}

/// Ada (password `pw`) owns schema `ada` in database `app` and creates
/// `table` in it; returns an admin connection to `app` and Ada's session.
async fn personal_table(
    server: &Postgres,
    table: &str,
) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let app = server
        .connect("postgres", ADMIN_PASSWORD, "app")
        .await
        .unwrap();
    app.batch_execute("CREATE SCHEMA ada AUTHORIZATION \"ada@example.com\"")
        .await
        .unwrap();
    let session = server
        .connect("ada@example.com", "pw", "app")
        .await
        .unwrap();
    session
        .batch_execute(&format!("CREATE TABLE ada.{table} (line text)"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    (app, session)
}

/// Who owns `table` (in the database `app` is connected to).
async fn owner_of(app: &tokio_postgres::Client, table: &str) -> String {
    app.query_one(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
        &[&table],
    )
    .await
    .unwrap()
    .get(0)
}

/// A PostgreSQL server that policy `crm` provisions into (live, the
/// default database only), and an admin connection to it. The server
/// stops when dropped: keep it.
async fn served_by_policy(env: &crate::support::TestEnv) -> (Postgres, tokio_postgres::Client) {
    let server = Postgres::start(ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    let mut postgres = settings(server.port);
    postgres.databases.clear();
    postgres_policy(env, &server, postgres, false).await;
    (server, admin)
}

async fn member_of(admin: &tokio_postgres::Client, member: &str) -> Vec<String> {
    admin
        .query(
            "SELECT g.rolname::text FROM pg_auth_members m \
             JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE u.rolname = $1 ORDER BY 1",
            &[&member],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Policy `crm` provisioning into `server` with `postgres` settings (its
/// password and CA in the Secret `crm-postgres`).
async fn postgres_policy(
    env: &crate::support::TestEnv,
    server: &Postgres,
    postgres: roster::api::PostgresConnector,
    dry_run: bool,
) {
    let mut secret = Secret::default();
    secret.metadata.name = Some("crm-postgres".into());
    secret.string_data = Some(
        [
            ("password".to_owned(), ADMIN_PASSWORD.to_owned()),
            (
                "ca.crt".to_owned(),
                String::from_utf8(server.ca_pem.clone()).unwrap(),
            ),
        ]
        .into(),
    );
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut policy = scim_policy("crm");
    policy.spec.application = ApplicationSpec {
        kind: ApplicationKind::Postgres,
        scim: None,
        webhook: None,
        postgres: Some(postgres),
        argocd_rbac: None,
        deprovision: DeprovisionAction::Disable,
        delete_after_seconds: 0,
        dry_run,
    };
    env.api::<roster::api::ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

#[tokio::test]
async fn roles_are_created_granted_disabled_and_dropped_and_nothing_else_is_touched() {
    roles_are_created_granted_disabled_and_dropped_and_nothing_else_is_touched_on(Release::Debian)
        .await;
}

#[tokio::test]
async fn roles_are_created_granted_disabled_and_dropped_and_nothing_else_is_touched_on_postgres_18()
{
    roles_are_created_granted_disabled_and_dropped_and_nothing_else_is_touched_on(Release::Recent)
        .await;
}

async fn roles_are_created_granted_disabled_and_dropped_and_nothing_else_is_touched_on(
    release: Release,
) {
    let server = Postgres::start_release(release, ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    admin
        .batch_execute("CREATE ROLE dba LOGIN; CREATE ROLE by_hand LOGIN")
        .await
        .unwrap();
    let connector =
        PostgresConnector::new(&settings(server.port), ADMIN_PASSWORD, Some(&server.ca_pem))
            .unwrap();
    // Over TLS, checked: the server refuses plain TCP, and a connector that
    // doesn't trust its CA, or doesn't use TLS, can't reach it.
    assert!(
        server
            .connect_plain("postgres", ADMIN_PASSWORD)
            .await
            .is_err()
    );
    let other_ca = PostgresConnector::new(&settings(server.port), ADMIN_PASSWORD, None);
    if let Ok(other_ca) = other_ca {
        let error = other_ca.find_user("x").await.unwrap_err();
        assert!(error.is_transient(), "{error}");
    }
    let mut plain = settings(server.port);
    plain.tls_mode = roster::api::PostgresTlsMode::Disable;
    let error = PostgresConnector::new(&plain, ADMIN_PASSWORD, None)
        .unwrap()
        .find_user("x")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("postgres"), "{error}");

    // A user: a LOGIN role without a password; created twice, one role.
    let ada = "ada@example.com";
    let id = connector
        .create_user(&desired_user(ada, true))
        .await
        .unwrap();
    assert_eq!(
        connector
            .create_user(&desired_user(ada, true))
            .await
            .unwrap(),
        id,
        "creating again adopts the role Roster made"
    );
    let found = connector.find_user(ada).await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.active), (id.as_str(), Some(true)));
    allow_password(&admin, ada).await;
    let session = server.connect(ada, "pw", "postgres").await.unwrap();

    // A group, a membership granted and revoked idempotently.
    let ops = connector
        .create_group(&desired_group("ops team"))
        .await
        .unwrap();
    let both = [id.clone()];
    let group = desired_group("ops team");
    connector
        .change_members(&ops, &group, &both, &[], "c1")
        .await
        .unwrap();
    connector
        .change_members(&ops, &group, &both, &[], "c1")
        .await
        .unwrap();
    assert_eq!(member_of(&admin, ada).await, vec!["ops team".to_owned()]);
    connector
        .change_members(&ops, &group, &[], &both, "c2")
        .await
        .unwrap();
    assert!(member_of(&admin, ada).await.is_empty());
    connector
        .change_members(&ops, &group, &both, &[], "c3")
        .await
        .unwrap();
    // Renamed: the same role (its OID is the remote id).
    connector
        .update_group(&ops, &desired_group("platform"))
        .await
        .unwrap();
    assert_eq!(member_of(&admin, ada).await, vec!["platform".to_owned()]);

    // Disabled: NOLOGIN, and the open session is ended; a login is refused.
    connector
        .disable_user(&id, &desired_user(ada, false))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if session.simple_query("SELECT 1").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ended.is_ok(), "the disabled role's session was not ended");
    let refused = server.connect(ada, "pw", "postgres").await.unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("not permitted to log in")),
        "{refused:?}"
    );
    assert_eq!(
        connector.find_user(ada).await.unwrap().unwrap().active,
        Some(false)
    );
    // Enabled again.
    connector
        .update_user(&id, &desired_user(ada, true))
        .await
        .unwrap();
    // Ada owns a personal schema and a table in it, in the second database.
    let (app, session) = personal_table(&server, "ada_notes").await;
    drop(session);

    // Deleted: what the role owns goes to the fallback owner in every
    // configured database, then the role; twice counts as done.
    connector
        .delete_user(&id, &desired_user(ada, true))
        .await
        .unwrap();
    connector
        .delete_user(&id, &desired_user(ada, true))
        .await
        .unwrap();
    assert!(connector.find_user(ada).await.unwrap().is_none());
    assert_eq!(owner_of(&app, "ada_notes").await, "postgres");
    connector.delete_group(&ops, &group).await.unwrap();

    // Never touched: a role made by hand, a protected one, the superuser.
    assert!(connector.find_user("by_hand").await.unwrap().is_none());
    for name in ["by_hand", "dba", "postgres", "pg_monitor"] {
        let error = connector
            .create_user(&desired_user(name, true))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Rejected { .. }),
            "{name}: {error}"
        );
    }
    let by_hand: i64 = admin
        .query_one(
            "SELECT oid::int8 FROM pg_roles WHERE rolname = 'by_hand'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let error = connector
        .disable_user(&by_hand.to_string(), &desired_user("by_hand", false))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not managed by Roster"),
        "{error}"
    );
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'by_hand'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can_login);
    // A name PostgreSQL would truncate is refused, not cut.
    let long = format!("{}@example.com", "a".repeat(60));
    assert!(
        connector
            .create_user(&desired_user(&long, true))
            .await
            .is_err()
    );
    // Every call above shared one connection per database.
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roster'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 2, "one connection to postgres, one to app");
}

#[tokio::test]
async fn users_and_groups_reach_postgres_through_the_controllers() {
    let env = env().await;
    let (_server, admin) = served_by_policy(&env).await;
    let _controllers = start_controllers(&env);

    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-grace", "crm", "grace@example.com"),
        )
        .await
        .unwrap();
    let oid = synced(&users, "u-grace").await;
    let groups: Api<Group> = env.api();
    let mut ops = group("g-ops", "crm", "ops");
    ops.spec.members = vec![GroupMember {
        user_name: Some("grace@example.com".into()),
        ..Default::default()
    }];
    groups.create(&PostParams::default(), &ops).await.unwrap();
    eventually("grace granted ops", || async {
        (member_of(&admin, "grace@example.com").await == ["ops"]).then_some(())
    })
    .await;
    let login: (i64, bool) = {
        let row = admin
            .query_one(
                "SELECT oid::int8, rolcanlogin FROM pg_roles WHERE rolname = 'grace@example.com'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(login, (oid.parse().unwrap(), true));

    // The policy's groupRoles map changes, the Group doesn't: the grant
    // follows the map (and the Group's status says what it was given).
    admin
        .batch_execute("CREATE ROLE read_only NOLOGIN")
        .await
        .unwrap();
    let policies: Api<roster::api::ProvisioningPolicy> = env.api();
    let generation = groups.get("g-ops").await.unwrap().metadata.generation;
    let map = json!([{"group": "ops", "roles": ["read_only"]}]);
    for (map, granted) in [(map, vec!["read_only"]), (json!([]), vec![])] {
        policies
            .patch(
                "crm",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"application": {"postgres": {"groupRoles": map}}}})),
            )
            .await
            .unwrap();
        eventually("the map's roles granted to ops, and recorded", || async {
            let mapped = groups.get("g-ops").await.ok()?.status?.mapped_roles;
            (member_of(&admin, "ops").await == granted && mapped == granted).then_some(())
        })
        .await;
    }
    assert_eq!(
        groups.get("g-ops").await.unwrap().metadata.generation,
        generation
    );

    // Deactivated: NOLOGIN.
    users
        .patch(
            "u-grace",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    eventually("grace NOLOGIN", || async {
        let row = admin
            .query_one(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'grace@example.com'",
                &[],
            )
            .await
            .ok()?;
        (!row.get::<_, bool>(0)).then_some(())
    })
    .await;
}

/// The safety rails sit above the connector: a dry run against PostgreSQL
/// plans an adoption (a role Roster made earlier) and a creation, and
/// touches no role until the policy goes live.
#[tokio::test]
async fn a_dry_run_plans_postgres_roles_and_going_live_performs_exactly_them() {
    let env = env().await;
    let server = Postgres::start(ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    let mut postgres = settings(server.port);
    postgres.databases.clear();
    // A role Roster created before (say, by another install): adopted.
    let earlier = PostgresConnector::new(&postgres, ADMIN_PASSWORD, Some(&server.ca_pem))
        .unwrap()
        .create_user(&desired_user("kept@example.com", true))
        .await
        .unwrap();
    postgres_policy(&env, &server, postgres, true).await;
    let policies: Api<roster::api::ProvisioningPolicy> = env.api();
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    for (name, user_name) in [("u-kept", "kept@example.com"), ("u-new", "new@example.com")] {
        users
            .create(&PostParams::default(), &user(name, "crm", user_name))
            .await
            .unwrap();
    }
    planned_one_adoption_and_one_creation(&policies, "crm").await;
    let roles = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        roles("new@example.com").await,
        0,
        "a dry run creates nothing"
    );

    go_live(&policies, "crm").await;
    assert_eq!(
        synced(&users, "u-kept").await,
        earlier,
        "adopted, not re-created"
    );
    synced(&users, "u-new").await;
    assert_eq!(roles("new@example.com").await, 1);
}

/// `groupRoles`: existing roles reach a group's members through the group
/// role, leave with the membership, and go when unmapped; the existing
/// role itself is never altered, and a superuser role is refused.
#[tokio::test]
async fn existing_roles_mapped_to_a_group_reach_its_members_and_leave_with_them() {
    existing_roles_mapped_to_a_group_reach_its_members_and_leave_with_them_on(Release::Debian)
        .await;
}

#[tokio::test]
async fn existing_roles_mapped_to_a_group_reach_its_members_and_leave_with_them_on_postgres_18() {
    existing_roles_mapped_to_a_group_reach_its_members_and_leave_with_them_on(Release::Recent)
        .await;
}

async fn existing_roles_mapped_to_a_group_reach_its_members_and_leave_with_them_on(
    release: Release,
) {
    let server = Postgres::start_release(release, ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE reports (x int); INSERT INTO reports VALUES (1); \
             CREATE ROLE read_only NOLOGIN; GRANT SELECT ON reports TO read_only; \
             CREATE ROLE boss NOLOGIN SUPERUSER;",
        )
        .await
        .unwrap();
    let mut mapped = settings(server.port);
    mapped.databases.clear();
    mapped.group_roles = vec![
        roster::api::PostgresGroupRoles {
            group: "analysts".into(),
            roles: vec!["read_only".into()],
        },
        roster::api::PostgresGroupRoles {
            group: "bosses".into(),
            roles: vec!["boss".into()],
        },
    ];
    let connector = PostgresConnector::new(&mapped, ADMIN_PASSWORD, Some(&server.ca_pem)).unwrap();
    let ada = connector
        .create_user(&desired_user("ada@example.com", true))
        .await
        .unwrap();
    allow_password(&admin, "ada@example.com").await;
    let analysts = desired_group("analysts");
    let group = connector.create_group(&analysts).await.unwrap();
    let as_ada = server
        .connect("ada@example.com", "pw", "postgres")
        .await
        .unwrap();
    let read = || as_ada.query_one("SELECT count(*) FROM reports", &[]);
    assert!(read().await.is_err(), "not a member yet");

    connector
        .change_members(&group, &analysts, std::slice::from_ref(&ada), &[], "c1")
        .await
        .unwrap();
    assert_eq!(read().await.unwrap().get::<_, i64>(0), 1, "inherited");
    connector
        .change_members(&group, &analysts, &[], std::slice::from_ref(&ada), "c2")
        .await
        .unwrap();
    assert!(read().await.is_err(), "left with the membership");

    let refused = connector.create_group(&desired_group("bosses")).await;
    assert!(
        matches!(&refused, Err(ConnectorError::Rejected { detail, .. }) if detail.contains("superuser")),
        "{refused:?}"
    );

    // Unmapped (the policy changed): revoked at the group's next change.
    connector
        .change_members(&group, &analysts, std::slice::from_ref(&ada), &[], "c3")
        .await
        .unwrap();
    assert_eq!(member_of(&admin, "analysts").await, ["read_only"]);
    mapped.group_roles.clear();
    let unmapped = PostgresConnector::new(&mapped, ADMIN_PASSWORD, Some(&server.ca_pem)).unwrap();
    unmapped.update_group(&group, &analysts).await.unwrap();
    assert!(member_of(&admin, "analysts").await.is_empty());
    assert!(read().await.is_err());
    // The existing role itself is untouched.
    let kept = admin
        .query_one(
            "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') IS NULL \
             FROM pg_roles WHERE rolname = 'read_only'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (kept.get::<_, bool>(0), kept.get::<_, bool>(1)),
        (false, true)
    );
}

/// Roster as a CREATEROLE role, not a superuser: what a DBA grants it
/// (CREATEROLE, `pg_signal_backend` to end sessions, the fallback owner
/// to hand objects to) is enough for the whole cycle, and it can't touch
/// a superuser.
#[tokio::test]
async fn a_createrole_only_roster_runs_the_whole_cycle() {
    a_createrole_only_roster_runs_the_whole_cycle_on(Release::Debian).await;
}

#[tokio::test]
async fn a_createrole_only_roster_runs_the_whole_cycle_on_postgres_18() {
    a_createrole_only_roster_runs_the_whole_cycle_on(Release::Recent).await;
}

async fn a_createrole_only_roster_runs_the_whole_cycle_on(release: Release) {
    let server = Postgres::start_release(release, ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE ROLE app_owner NOLOGIN; \
             CREATE ROLE roster LOGIN CREATEROLE PASSWORD 'roster-pw'; \
             GRANT pg_signal_backend TO roster; \
             GRANT app_owner TO roster;",
        )
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    // Reassigning a personal schema needs its new owner to be allowed to
    // create schemas there (a superuser Roster skips that check).
    admin
        .batch_execute("GRANT CREATE ON DATABASE app TO app_owner")
        .await
        .unwrap();
    let mut limited = settings(server.port);
    limited.user = "roster".into();
    limited.fallback_owner = "app_owner".into();
    let connector = PostgresConnector::new(&limited, "roster-pw", Some(&server.ca_pem)).unwrap();
    let ada = "ada@example.com";
    let id = connector
        .create_user(&desired_user(ada, true))
        .await
        .unwrap();
    // PostgreSQL 16 gives a CREATEROLE role ADMIN OPTION on the roles it
    // creates, and nothing more; before 16 CREATEROLE alone sufficed.
    let admin_option = admin
        .query(
            "SELECT m.admin_option FROM pg_auth_members m \
             WHERE m.roleid = $1::text::regrole AND m.member = 'roster'::regrole",
            &[&format!("\"{ada}\"")],
        )
        .await
        .unwrap();
    let expected: &[bool] = if server.version >= 16 { &[true] } else { &[] };
    assert_eq!(
        admin_option.iter().map(|r| r.get(0)).collect::<Vec<bool>>(),
        expected,
        "PostgreSQL {}",
        server.version
    );
    let ops = desired_group("ops");
    let group = connector.create_group(&ops).await.unwrap();
    connector
        .change_members(&group, &ops, std::slice::from_ref(&id), &[], "c1")
        .await
        .unwrap();
    assert_eq!(member_of(&admin, ada).await, ["ops"]);
    allow_password(&admin, ada).await;
    let (app, session) = personal_table(&server, "mine").await;

    connector
        .disable_user(&id, &desired_user(ada, false))
        .await
        .unwrap();
    eventually("the session ended", || async {
        session.is_closed().then_some(())
    })
    .await;
    assert!(server.connect(ada, "pw", "app").await.is_err());

    for _ in 0..2 {
        connector
            .delete_user(&id, &desired_user(ada, false))
            .await
            .unwrap();
    }
    assert_eq!(owner_of(&app, "mine").await, "app_owner");
    assert!(member_of(&admin, "roster").await.iter().all(|r| r != ada));
    let gone = admin
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&ada])
        .await
        .unwrap();
    assert!(gone.is_empty());
    connector.delete_group(&group, &ops).await.unwrap();
}

/// A role an earlier, superuser Roster made (it carries the marker) is
/// adopted by a CREATEROLE-only Roster. From PostgreSQL 16 altering it
/// needs ADMIN OPTION on it: until a superuser grants that, disabling is
/// refused with what to grant (and the role is untouched); then the whole
/// cycle runs. Before 16, CREATEROLE alone suffices.
#[tokio::test]
async fn a_createrole_only_roster_manages_a_role_a_superuser_made_once_granted_admin_option() {
    a_createrole_only_roster_manages_a_role_a_superuser_made_on(Release::Debian).await;
}

#[tokio::test]
async fn a_createrole_only_roster_manages_a_role_a_superuser_made_once_granted_admin_option_on_postgres_18()
 {
    a_createrole_only_roster_manages_a_role_a_superuser_made_on(Release::Recent).await;
}

async fn a_createrole_only_roster_manages_a_role_a_superuser_made_on(release: Release) {
    let server = Postgres::start_release(release, ADMIN_PASSWORD).await;
    let admin = server
        .connect("postgres", ADMIN_PASSWORD, "postgres")
        .await
        .unwrap();
    let grace = "grace@example.com";
    admin
        .batch_execute(&format!(
            "CREATE ROLE app_owner NOLOGIN; \
             CREATE ROLE roster LOGIN CREATEROLE PASSWORD 'roster-pw'; \
             GRANT pg_signal_backend TO roster; \
             GRANT app_owner TO roster; \
             CREATE ROLE \"{grace}\" LOGIN; \
             COMMENT ON ROLE \"{grace}\" IS 'managed by roster';"
        ))
        .await
        .unwrap();
    let mut limited = settings(server.port);
    limited.user = "roster".into();
    limited.fallback_owner = "app_owner".into();
    limited.databases = vec!["postgres".into()];
    let connector = PostgresConnector::new(&limited, "roster-pw", Some(&server.ca_pem)).unwrap();
    let oid: String = admin
        .query_one(
            "SELECT oid::text FROM pg_roles WHERE rolname = $1",
            &[&grace],
        )
        .await
        .unwrap()
        .get(0);
    let id = connector
        .create_user(&desired_user(grace, true))
        .await
        .unwrap();
    assert_eq!(id, oid, "adopted, not created again");
    let can_login = || async {
        admin
            .query_one(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
                &[&grace],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };

    let disabled = connector
        .disable_user(&id, &desired_user(grace, false))
        .await;
    if server.version >= 16 {
        match disabled {
            Err(ConnectorError::Rejected {
                status: 400,
                detail,
            }) => {
                assert!(detail.contains("42501"), "{detail}");
                assert!(
                    detail.contains("WITH ADMIN OPTION"),
                    "says what to grant: {detail}"
                );
            }
            other => panic!("PostgreSQL {}: {other:?}", server.version),
        }
        assert!(can_login().await, "left as it was");
        admin
            .batch_execute(&format!("GRANT \"{grace}\" TO roster WITH ADMIN OPTION"))
            .await
            .unwrap();
        connector
            .disable_user(&id, &desired_user(grace, false))
            .await
            .unwrap();
    } else {
        disabled.unwrap();
    }
    assert!(!can_login().await, "disabled");
    connector
        .delete_user(&id, &desired_user(grace, false))
        .await
        .unwrap();
    let gone = admin
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&grace])
        .await
        .unwrap();
    assert!(gone.is_empty(), "dropped");
}

/// The circuit breaker sits above every connector: a mass deactivation
/// turns PostgreSQL logins off only up to its limit, the rest once an
/// operator approves.
#[tokio::test]
async fn a_mass_deactivation_turns_logins_off_only_up_to_the_breakers_limit() {
    let env = env().await;
    let (_server, admin) = served_by_policy(&env).await;
    let users: Api<User> = env.api();
    for i in 0..30 {
        users
            .create(
                &PostParams::default(),
                &user(&format!("u-{i:02}"), "crm", &format!("p{i:02}@example.com")),
            )
            .await
            .unwrap();
    }
    let _controllers = start_controllers(&env);
    let policies: Api<roster::api::ProvisioningPolicy> = env.api();
    let logins = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'p__@example.com' AND rolcanlogin",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    eventually("30 LOGIN roles and 30 active users counted", || async {
        let counted = policies.get("crm").await.ok()?.status?.counts?.active_users;
        (logins().await == 30 && counted == 30).then_some(())
    })
    .await;

    deactivate_all(&users, (0..30).map(|i| format!("u-{i:02}"))).await;
    // The limit is max(20, 10 % of 30) = 20: ten keep their login, held.
    let token = held_accounts(&policies, "crm", 10).await;
    assert_eq!(logins().await, 10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(logins().await, 10, "nothing else leaves while held");

    approve(&policies, "crm", &token).await;
    eventually("every login off once approved", || async {
        (logins().await == 0).then_some(())
    })
    .await;
}
