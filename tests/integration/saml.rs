//! SAML login against the real API server, with responses signed at test
//! time by xmlsec1 and by Python's signxml: Okta-style (Response and
//! Assertion signed) and Entra-style (Assertion only) logins in Jit and Scim
//! mode, and a corpus of malicious and malformed responses, each refused with
//! nothing written.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use roster::api::*;
use serde_json::json;

use crate::controller::event;
use crate::support::fixtures::{jit_policy, scim_policy, user};
use crate::support::saml::{
    Idp, OBJECT_ID, Response, SamlServer, Signed, Signer, serve, snapshot, start, users,
};
use crate::support::{TestEnv, env};

const APP: &str = "https://app.example.com/";

fn trust(idp: &Idp) -> SamlTrust {
    SamlTrust {
        allowed_redirect_urls: vec![APP.into()],
        ..idp.trust()
    }
}

fn jit(idp: &Idp) -> ProvisioningPolicy {
    let mut policy = jit_policy("crm");
    policy.spec.saml = Some(trust(idp));
    policy
}

fn scim(idp: &Idp) -> ProvisioningPolicy {
    let mut policy = scim_policy("crm");
    policy.spec.saml = Some(trust(idp));
    policy
}

fn entra_mapping(policy: &mut ProvisioningPolicy) {
    let saml = policy.spec.saml.as_mut().unwrap();
    saml.attribute_mapping.subject = Some(OBJECT_ID.into());
    if let Some(jit) = policy.spec.jit.as_mut() {
        jit.allowed_email_domains = vec!["contoso.com".into()];
    }
}

async fn only_user(env: &TestEnv) -> User {
    let all = users(env).await;
    assert_eq!(all.len(), 1, "users: {all:?}");
    all.into_iter().next().unwrap()
}

// ----- Jit mode --------------------------------------------------------------------

#[tokio::test]
async fn an_okta_login_of_an_unknown_subject_creates_a_jit_user() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let response = Response::okta(&idp, &server, "alice@example.com", "Alice", "Liddell");
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let session = reply.session_cookie().expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=900",
        "Path=/",
    ] {
        assert!(session.contains(attribute), "{session}");
    }
    let user = only_user(&env).await;
    assert_eq!(user.spec.policy, "crm");
    assert_eq!(user.spec.user_name, "alice@example.com");
    assert_eq!(user.spec.subject.as_deref(), Some("alice@example.com"));
    assert_eq!(user.spec.active, None, "a login never sets active");
    let name = user.spec.name.clone().unwrap();
    assert_eq!(name.given_name.as_deref(), Some("Alice"));
    assert_eq!(name.family_name.as_deref(), Some("Liddell"));
    assert_eq!(user.spec.emails[0].value, "alice@example.com");
    assert_eq!(
        user.labels().get("roster.dev/source").map(String::as_str),
        Some("jit")
    );
    let status = user.status.clone().unwrap();
    assert_eq!(status.source, Some(Source::Jit));
    assert!(status.last_login.is_some());
    let managers: Vec<_> = user
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.iter().all(|m| m == "roster-jit"), "{managers:?}");
    let claim = env
        .api::<UserNameClaim>()
        .get(&claim_name("crm", "alice@example.com"))
        .await
        .expect("the JIT user holds its userName claim");
    assert_eq!(claim.spec.user, user.name_any());
}

#[tokio::test]
async fn a_known_jit_users_mapped_attributes_are_updated_at_each_login() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let first = Response::okta(&idp, &server, "alice@example.com", "Alice", "Liddell");
    assert_eq!(server.sp_login(&idp, first).await.status, 200);
    let before = only_user(&env).await;

    let second = Response::okta(&idp, &server, "alice@example.com", "Alice", "Hargreaves");
    assert_eq!(server.sp_login(&idp, second).await.status, 200);
    let after = only_user(&env).await;
    assert_eq!(
        after.name_any(),
        before.name_any(),
        "the same user, keyed on subject"
    );
    assert_eq!(
        after.spec.name.unwrap().family_name.as_deref(),
        Some("Hargreaves")
    );
}

#[tokio::test]
async fn a_deactivated_jit_user_is_refused_and_not_reactivated() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let login = || Response::okta(&idp, &server, "alice@example.com", "Alice", "Liddell");
    assert_eq!(server.sp_login(&idp, login()).await.status, 200);
    let user = only_user(&env).await;
    env.api::<User>()
        .patch(
            &user.name_any(),
            &PatchParams::apply("someone").force(),
            &Patch::Apply(json!({
                "apiVersion": "roster.dev/v1alpha1", "kind": "User",
                "spec": { "policy": "crm", "userName": "alice@example.com", "active": false },
            })),
        )
        .await
        .unwrap();
    let before = snapshot(&env).await;

    let reply = server.sp_login(&idp, login()).await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("deactivated"), "{}", reply.body);
    assert!(reply.session_cookie().is_none());
    assert_eq!(snapshot(&env).await, before, "nothing written");
    assert_eq!(only_user(&env).await.spec.active, Some(false));
}

#[tokio::test]
async fn a_login_never_links_an_existing_account_by_email() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    // An existing account with the same userName and email, keyed on another subject.
    let mut existing = user("existing", "crm", "alice@example.com");
    existing.spec.subject = Some("someone-else".into());
    env.api::<User>()
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    roster::directory::UserNames::new(env.client.clone(), &env.namespace, "crm")
        .claim(
            "alice@example.com",
            "existing",
            roster::deadline::Deadline::from_now().wall,
        )
        .await
        .unwrap();
    let before = snapshot(&env).await;

    let response = Response::okta(&idp, &server, "alice@example.com", "Alice", "Liddell");
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(snapshot(&env).await, before, "nothing written");
}

#[tokio::test]
async fn an_entra_login_signed_by_signxml_keys_the_user_on_the_object_id() {
    let env = env().await;
    let idp = Idp::entra();
    let mut policy = jit(&idp);
    entra_mapping(&mut policy);
    let server = serve(&env, policy).await;
    let mut response = Response::entra(&idp, &server, "bob@contoso.com", "6f1c0a52-oid");
    response.signer = Signer::Signxml;
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let user = only_user(&env).await;
    assert_eq!(user.spec.subject.as_deref(), Some("6f1c0a52-oid"));
    assert_eq!(user.spec.user_name, "bob@contoso.com");
    assert_eq!(user.spec.display_name.as_deref(), Some("Bob Builder"));

    // The UPN changes; the object id does not: the same user is renamed.
    let mut renamed = Response::entra(&idp, &server, "robert@contoso.com", "6f1c0a52-oid");
    renamed.signer = Signer::Signxml;
    assert_eq!(server.sp_login(&idp, renamed).await.status, 200);
    let after = only_user(&env).await;
    assert_eq!(after.name_any(), user.name_any());
    assert_eq!(after.spec.user_name, "robert@contoso.com");
}

#[tokio::test]
async fn an_okta_login_signed_by_signxml_is_accepted() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let mut response = Response::okta(&idp, &server, "carol@example.com", "Carol", "Danvers");
    response.signer = Signer::Signxml;
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(only_user(&env).await.spec.user_name, "carol@example.com");
}

#[tokio::test]
async fn an_entra_login_signed_by_xmlsec1_is_accepted() {
    let env = env().await;
    let idp = Idp::entra();
    let mut policy = jit(&idp);
    entra_mapping(&mut policy);
    let server = serve(&env, policy).await;
    let response = Response::entra(&idp, &server, "bob@contoso.com", "9a9a-oid");
    assert_eq!(response.signed, Signed::Assertion);
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        only_user(&env).await.spec.subject.as_deref(),
        Some("9a9a-oid")
    );
}

// ----- Jit mode: group memberships ------------------------------------------------

/// The Jit policy of the group tests: `everyone` joined at creation, two
/// Okta groups allowlisted under other names, overage as given.
fn jit_with_groups(idp: &Idp, overage: GroupsOverage) -> ProvisioningPolicy {
    let mut policy = jit(idp);
    let options = policy.spec.jit.as_mut().unwrap();
    options.default_groups = vec!["everyone".into()];
    options.allowed_groups = vec![
        AllowedGroup {
            value: "okta-eng".into(),
            group: Some("engineering".into()),
        },
        AllowedGroup {
            value: "okta-sec".into(),
            group: Some("security".into()),
        },
    ];
    options.groups_overage = overage;
    policy
}

/// The display names of the groups whose slices hold `user`.
async fn groups_of(env: &TestEnv, user: &str) -> Vec<String> {
    let groups = env.api::<Group>().list(&Default::default()).await.unwrap();
    let slices = env
        .api::<GroupMemberSlice>()
        .list(&Default::default())
        .await
        .unwrap();
    let mut names: Vec<String> = groups
        .items
        .iter()
        .filter(|g| {
            slices
                .items
                .iter()
                .any(|s| s.spec.group == g.name_any() && s.spec.members.contains_key(user))
        })
        .map(|g| g.spec.display_name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn login_group_values_become_memberships_through_the_allowlist() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit_with_groups(&idp, GroupsOverage::Keep)).await;
    // `security` is declared in git, with a member of its own.
    let mut declared = Group::new(
        "security-from-git",
        GroupSpec {
            policy: "crm".into(),
            display_name: "security".into(),
            external_id: None,
            members: vec![GroupMember {
                value: "someone-in-git".into(),
                user_name: None,
                kind: MemberKind::User,
                display: None,
            }],
        },
    );
    declared = env
        .api::<Group>()
        .create(&PostParams::default(), &declared)
        .await
        .unwrap();
    let login = |groups: &[&str]| {
        Response::okta(&idp, &server, "alice@example.com", "Alice", "Liddell")
            .attribute("groups", groups)
    };

    // First login: allowlisted and unknown values; `everyone` by default.
    let reply = server
        .sp_login(&idp, login(&["okta-eng", "Domain Users"]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let user = only_user(&env).await.name_any();
    assert_eq!(groups_of(&env, &user).await, ["engineering", "everyone"]);
    let groups = env.api::<Group>().list(&Default::default()).await.unwrap();
    let mut names: Vec<_> = groups.iter().map(|g| g.spec.display_name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        ["engineering", "everyone", "security"],
        "no Group for the unknown value"
    );
    let engineering = groups
        .iter()
        .find(|g| g.spec.display_name == "engineering")
        .unwrap();
    assert_eq!(
        engineering
            .labels()
            .get("roster.dev/source")
            .map(String::as_str),
        Some("jit")
    );
    assert!(
        engineering
            .managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() == Some("roster-jit"))
    );

    // Second login: now in security, no longer in engineering; `everyone`
    // is not allowlisted, so the login never removes it.
    let reply = server.sp_login(&idp, login(&["okta-sec"])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(groups_of(&env, &user).await, ["everyone", "security"]);
    let security = env.api::<Group>().get(&declared.name_any()).await.unwrap();
    assert_eq!(
        security.spec, declared.spec,
        "the declared Group's spec is untouched"
    );

    // Third login with the same groups: nothing to write.
    let before = snapshot(&env).await;
    let reply = server.sp_login(&idp, login(&["okta-sec"])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let changed: Vec<_> = snapshot(&env)
        .await
        .into_iter()
        .filter(|s| !before.contains(s))
        .filter(|s| !s.starts_with("Consumed/") && !s.starts_with("User/"))
        .collect();
    assert!(
        changed.is_empty(),
        "only the login itself is recorded: {changed:?}"
    );

    // Events say what the logins did, naming the assertion.
    let created = event(&env, Some("JitCreated"), Some(&user)).await;
    let note = created.note.unwrap();
    assert!(note.starts_with("SAML login, assertion _a"), "{note}");
    assert!(note.contains("joined engineering, everyone"), "{note}");
    let left = event(
        &env,
        Some("JitMembersChanged"),
        Some(&engineering.name_any()),
    )
    .await;
    assert!(left.note.unwrap().contains("alice@example.com"));
}

#[tokio::test]
async fn an_overage_claim_keeps_memberships_or_is_refused_as_the_policy_says() {
    let overage = "http://schemas.microsoft.com/claims/groups.link";
    let idp = Idp::okta();

    // Keep: memberships stay as they are, nothing is removed.
    let keeping = env().await;
    let server = serve(&keeping, jit_with_groups(&idp, GroupsOverage::Keep)).await;
    let login = || Response::okta(&idp, &server, "erin@example.com", "Erin", "Hannon");
    let first = login().attribute("groups", &["okta-eng", "okta-sec"]);
    assert_eq!(server.sp_login(&idp, first).await.status, 200);
    let user = only_user(&keeping).await.name_any();
    let before = groups_of(&keeping, &user).await;
    assert_eq!(before, ["engineering", "everyone", "security"]);
    let over = login().attribute(
        overage,
        &["https://graph.microsoft.com/v1.0/users/x/getMemberObjects"],
    );
    let reply = server.sp_login(&idp, over).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        groups_of(&keeping, &user).await,
        before,
        "never a silent wipe"
    );

    // Refuse: the login is refused and nothing is written.
    let env = env().await;
    let server = serve(&env, jit_with_groups(&idp, GroupsOverage::Refuse)).await;
    let before = snapshot(&env).await;
    let over = Response::okta(&idp, &server, "erin@example.com", "Erin", "Hannon").attribute(
        overage,
        &["https://graph.microsoft.com/v1.0/users/x/getMemberObjects"],
    );
    let reply = server.sp_login(&idp, over).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.session_cookie().is_none());
    assert_eq!(snapshot(&env).await, before, "nothing written");
}

// ----- Mode: the same login under Jit and under Scim --------------------------------

#[tokio::test]
async fn the_same_login_of_an_unknown_subject_creates_under_jit_and_is_refused_under_scim() {
    let idp = Idp::okta();
    for (policy, creates) in [(jit(&idp), true), (scim(&idp), false)] {
        let env = env().await;
        let server = serve(&env, policy).await;
        let before = snapshot(&env).await;
        let response = Response::okta(&idp, &server, "dave@example.com", "Dave", "Lister");
        let reply = server.sp_login(&idp, response).await;
        if creates {
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(only_user(&env).await.spec.user_name, "dave@example.com");
        } else {
            assert_eq!(reply.status, 403, "{}", reply.body);
            assert!(reply.body.contains("no account"), "{}", reply.body);
            assert!(reply.session_cookie().is_none());
            assert_eq!(snapshot(&env).await, before, "nothing written under Scim");
        }
    }
}

async fn scim_user(env: &TestEnv, user_name: &str, active: bool) -> User {
    let mut u = user("u-1", "crm", user_name);
    u.spec.active = Some(active);
    u.spec.display_name = Some("From SCIM".into());
    u.metadata.labels = Some([("roster.dev/source".to_owned(), "scim".to_owned())].into());
    let created = env
        .api::<User>()
        .create(&PostParams::default(), &u)
        .await
        .unwrap();
    roster::directory::UserNames::new(env.client.clone(), &env.namespace, "crm")
        .claim(
            user_name,
            "u-1",
            roster::deadline::Deadline::from_now().wall,
        )
        .await
        .unwrap();
    created
}

#[tokio::test]
async fn under_scim_a_known_active_user_signs_in_and_only_last_login_changes() {
    let idp = Idp::okta();
    for style in [Signed::Both, Signed::Assertion] {
        let env = env().await;
        let server = serve(&env, scim(&idp)).await;
        let before = scim_user(&env, "erin@example.com", true).await;
        let mut response = Response::okta(&idp, &server, "Erin@Example.com", "Other", "Name");
        response.signed = style;
        let reply = server.sp_login(&idp, response).await;
        assert_eq!(reply.status, 200, "{style:?}: {}", reply.body);
        assert!(reply.session_cookie().is_some());
        let after = only_user(&env).await;
        assert_eq!(after.spec, before.spec, "the spec is untouched");
        assert_eq!(after.metadata.generation, before.metadata.generation);
        assert_eq!(after.metadata.labels, before.metadata.labels);
        assert!(after.status.unwrap().last_login.is_some());
    }
}

#[tokio::test]
async fn under_scim_an_inactive_user_is_refused_and_nothing_is_written() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, scim(&idp)).await;
    scim_user(&env, "frank@example.com", false).await;
    let before = snapshot(&env).await;
    let response = Response::okta(&idp, &server, "frank@example.com", "Frank", "Poole");
    let reply = server.sp_login(&idp, response).await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("deactivated"), "{}", reply.body);
    assert_eq!(snapshot(&env).await, before);
}

// ----- Login, RelayState, cookies ---------------------------------------------------

#[tokio::test]
async fn an_sp_initiated_login_redirects_to_an_allowed_url_and_nowhere_else() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;

    let started = server
        .login(Some("https://app.example.com/dashboard"))
        .await;
    assert!(
        started
            .location
            .starts_with("https://idp.example.com/sso/saml?SAMLRequest=")
    );
    assert!(
        started
            .location
            .contains(&format!("RelayState={}", started.relay_state))
    );
    assert!(
        !started.location.contains("dashboard"),
        "RelayState is opaque"
    );
    let xml = Response::okta(&idp, &server, "gina@example.com", "Gina", "Linetti")
        .answering(&started.request_id)
        .sign(&idp);
    let reply = server
        .post(&xml, Some(&started.relay_state), Some(&started.cookie))
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.location(), Some("https://app.example.com/dashboard"));
    let request_cookie = reply.cookie("roster_saml_request").unwrap();
    assert!(
        request_cookie.contains("Max-Age=0"),
        "the request cookie is cleared"
    );

    let refused = server
        .get("login?redirect=https%3A%2F%2Fevil.example.com%2F")
        .await;
    assert_eq!(refused.status, 400);
}

#[tokio::test]
async fn the_request_id_is_bound_to_the_browser_and_consumed_once() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let started = server.login(None).await;
    let response = || {
        Response::okta(&idp, &server, "hank@example.com", "Hank", "Hill")
            .answering(&started.request_id)
    };
    // Another browser (no cookie) cannot use this request.
    let stolen = server
        .post(&response().sign(&idp), Some(&started.relay_state), None)
        .await;
    assert_eq!(stolen.status, 403);
    // A RelayState that is not the browser's own is not this request.
    let other_relay = server
        .post(
            &response().sign(&idp),
            Some("forged"),
            Some(&started.cookie),
        )
        .await;
    assert_eq!(other_relay.status, 403);
    assert!(users(&env).await.is_empty());

    let ok = server
        .post(
            &response().sign(&idp),
            Some(&started.relay_state),
            Some(&started.cookie),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let before = snapshot(&env).await;
    // A second assertion answering the same request (fresh assertion ID).
    let again = server
        .post(
            &response().sign(&idp),
            Some(&started.relay_state),
            Some(&started.cookie),
        )
        .await;
    assert_eq!(again.status, 403);
    assert_eq!(snapshot(&env).await, before);
}

#[tokio::test]
async fn idp_initiated_logins_only_when_the_policy_allows_them() {
    let env = env().await;
    let idp = Idp::okta();
    let mut policy = jit(&idp);
    policy.spec.saml.as_mut().unwrap().allow_idp_initiated = true;
    let server = serve(&env, policy).await;
    let xml = Response::okta(&idp, &server, "ivy@example.com", "Ivy", "Green").sign(&idp);
    let reply = server
        .post(&xml, Some("https://evil.example.com/"), None)
        .await;
    assert_eq!(
        reply.status, 200,
        "a RelayState not allowed is not followed: {}",
        reply.body
    );
    let xml = Response::okta(&idp, &server, "ivy@example.com", "Ivy", "Green").sign(&idp);
    let reply = server
        .post(&xml, Some("https://app.example.com/x"), None)
        .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.location(), Some("https://app.example.com/x"));
}

#[tokio::test]
async fn a_replay_is_refused_also_on_another_replica() {
    let env = env().await;
    let idp = Idp::okta();
    let mut policy = jit(&idp);
    policy.spec.saml.as_mut().unwrap().allow_idp_initiated = true;
    let first = serve(&env, policy).await;
    let second = start(&env, "crm").await;
    let xml = Response::okta(&idp, &first, "jack@example.com", "Jack", "Sparrow").sign(&idp);
    assert_eq!(first.post(&xml, None, None).await.status, 200);
    let before = snapshot(&env).await;
    assert_eq!(
        first.post(&xml, None, None).await.status,
        403,
        "same replica"
    );
    assert_eq!(
        second.post(&xml, None, None).await.status,
        403,
        "other replica"
    );
    assert_eq!(snapshot(&env).await, before);
}

#[tokio::test]
async fn a_policy_without_an_idp_signing_certificate_serves_no_login() {
    let env = env().await;
    let idp = Idp::okta();
    let body: String = idp
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut policy = jit(&idp);
    let saml = policy.spec.saml.as_mut().unwrap();
    saml.idp_certificates = vec![];
    saml.idp_metadata = Some(format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"#,
        idp.entity_id
    ));
    saml.allow_idp_initiated = true;
    let server = serve(&env, policy).await;
    assert_eq!(server.get("login").await.status, 403);
    let before = snapshot(&env).await;
    let mut unsigned = Response::okta(&idp, &server, "kim@example.com", "Kim", "Possible");
    unsigned.signed = Signed::Nothing;
    let reply = server.post(&unsigned.sign(&idp), None, None).await;
    assert_eq!(reply.status, 403);
    assert_eq!(snapshot(&env).await, before);
}

#[tokio::test]
async fn the_sp_metadata_names_the_entity_and_the_acs() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let reply = server.get("metadata").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .body
            .contains(&format!(r#"entityID="{}""#, server.entity_id()))
    );
    assert!(
        reply
            .body
            .contains(&format!(r#"Location="{}""#, server.acs_url()))
    );
}

#[tokio::test]
async fn expired_ids_are_swept_and_live_ones_kept() {
    let env = env().await;
    let consumed =
        roster::directory::consumed::Consumed::new(env.client.clone(), &env.namespace, "crm");
    let now = k8s_openapi::jiff::Timestamp::now();
    for (id, offset) in [("_gone", -120), ("_live", 600)] {
        consumed
            .consume(
                "https://idp.example.com",
                ConsumedKind::Assertion,
                id,
                now + k8s_openapi::jiff::SignedDuration::from_secs(offset),
            )
            .await
            .unwrap();
    }
    let api: Api<ConsumedAssertion> = env.api();
    let swept = roster::directory::consumed::sweep_expired(&api, now).await;
    assert_eq!(swept, 1);
    let left: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    let live = consumed_name(
        "crm",
        "https://idp.example.com",
        ConsumedKind::Assertion,
        "_live",
    );
    assert_eq!(left, [live]);
}

// ----- The malicious and malformed corpus -------------------------------------------

/// Builds a case's response from a valid one answering the request.
type Build = Box<dyn Fn(&Idp, &SamlServer, Response) -> String>;
/// A named case of the corpus.
type Case = (&'static str, Build);

fn tamper(xml: String, from: &str, to: &str) -> String {
    assert!(xml.contains(from), "{from} not in the signed response");
    xml.replacen(from, to, 1)
}

fn corpus() -> Vec<Case> {
    let with = |f: fn(&mut Response)| -> Build {
        Box::new(move |idp, _, mut r| {
            f(&mut r);
            r.sign(idp)
        })
    };
    vec![
        ("unsigned", with(|r| r.signed = Signed::Nothing)),
        (
            "tampered after signing",
            Box::new(|idp, _, r| tamper(r.sign(idp), "lucy@example.com<", "admin@example.com<")),
        ),
        (
            "tampered after signing (assertion-only)",
            Box::new(|idp, _, mut r| {
                r.signed = Signed::Assertion;
                tamper(r.sign(idp), "Lucy<", "Mallory<")
            }),
        ),
        (
            "signed with a foreign key",
            Box::new(|_, _, r| r.sign(&Idp::okta())),
        ),
        (
            "XSW: an evil assertion beside the signed one",
            Box::new(|idp, server, mut r| {
                r.signed = Signed::Assertion;
                let evil = Response::new(idp, server, "admin@example.com");
                let evil = evil.assertion_xml().replace(&evil.assertion_id, "_evil");
                tamper(
                    r.sign(idp),
                    "</samlp:Response>",
                    &format!("{evil}</samlp:Response>"),
                )
            }),
        ),
        (
            "XSW: the signed assertion hidden in Extensions, an evil one in its place",
            Box::new(|idp, server, mut r| {
                r.signed = Signed::Assertion;
                let signed = r.sign(idp);
                let start = signed.find("<saml:Assertion").unwrap();
                let end = signed.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
                let original = &signed[start..end];
                let mut evil = Response::new(idp, server, "admin@example.com");
                evil.signed = Signed::Nothing;
                evil.assertion_id = r.assertion_id.clone();
                format!(
                    "{}<samlp:Extensions>{original}</samlp:Extensions>{}{}",
                    &signed[..start],
                    evil.assertion_xml(),
                    &signed[end..]
                )
            }),
        ),
        (
            "XSW: the whole signed response wrapped in an evil one",
            Box::new(|idp, server, r| {
                let signed = strip_decl(&r.sign(idp));
                let mut evil = Response::new(idp, server, "admin@example.com");
                evil.signed = Signed::Nothing;
                let outer = evil.response_xml(&evil.assertion_xml(), "_evil");
                tamper(
                    outer,
                    "</samlp:Response>",
                    &format!("<samlp:Extensions>{signed}</samlp:Extensions></samlp:Response>"),
                )
            }),
        ),
        (
            "comment injected into the signed NameID",
            Box::new(|idp, server, r| {
                let mut r2 =
                    Response::okta(idp, server, "lucy@example.com.evil.com", "Lucy", "Van Pelt");
                r2.in_response_to = r.in_response_to.clone();
                tamper(
                    r2.sign(idp),
                    "lucy@example.com.evil.com<",
                    "lucy@example.com<!---->.evil.com<",
                )
            }),
        ),
        (
            "DOCTYPE",
            Box::new(|idp, _, r| doctype(&r.sign(idp), "<!DOCTYPE samlp:Response>")),
        ),
        (
            "external entity",
            Box::new(|idp, _, r| {
                let xml = doctype(
                    &r.sign(idp),
                    r#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#,
                );
                tamper(xml, "Lucy<", "&xxe;<")
            }),
        ),
        (
            "entity expansion",
            Box::new(|idp, _, r| {
                let xml = doctype(
                    &r.sign(idp),
                    r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>"#,
                );
                tamper(xml, "Lucy<", "&c;<")
            }),
        ),
        (
            "malformed: unclosed root",
            Box::new(|idp, _, r| tamper(r.sign(idp), "</samlp:Response>", "")),
        ),
        (
            "malformed: a second root appended",
            Box::new(|idp, _, r| format!("{}<samlp:Response/>", r.sign(idp).trim_end())),
        ),
        (
            "oversized",
            Box::new(|idp, _, r| {
                let pad = "x".repeat(300 * 1024);
                tamper(r.sign(idp), "Lucy<", &format!("{pad}<"))
            }),
        ),
        (
            "expired",
            with(|r| {
                r.issued = -3600;
                r.not_before = -3660;
                r.not_on_or_after = -3000;
            }),
        ),
        (
            "not yet valid",
            with(|r| {
                r.not_before = 900;
                r.not_on_or_after = 1200;
            }),
        ),
        ("IssueInstant in the future", with(|r| r.issued = 900)),
        (
            "wrong audience",
            with(|r| r.audience = "https://other-sp.example.com".into()),
        ),
        (
            "wrong recipient",
            with(|r| r.recipient = "https://evil.example.com/acs".into()),
        ),
        (
            "wrong destination",
            with(|r| r.destination = Some("https://evil.example.com/acs".into())),
        ),
        (
            "wrong issuer",
            with(|r| r.issuer = "http://www.okta.com/exkEVIL".into()),
        ),
        ("conditions missing", with(|r| r.conditions = false)),
        (
            "audience restriction missing",
            with(|r| r.audience_restriction = false),
        ),
        (
            "unknown InResponseTo",
            with(|r| r.in_response_to = Some("_not-a-request-of-ours".into())),
        ),
        (
            "unsolicited when not allowed",
            with(|r| r.in_response_to = None),
        ),
        ("SHA-1", with(|r| r.sha1 = true)),
    ]
}

fn strip_decl(xml: &str) -> String {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").unwrap() + 2..].to_owned(),
        None => xml.to_owned(),
    }
}

fn doctype(xml: &str, doctype: &str) -> String {
    format!("<?xml version=\"1.0\"?>{doctype}{}", strip_decl(xml))
}

#[tokio::test]
async fn every_malicious_or_malformed_response_is_refused_and_nothing_is_written() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let before = snapshot(&env).await;
    let mut accepted = Vec::new();
    for (name, build) in corpus() {
        let started = server.login(None).await;
        let valid = Response::okta(&idp, &server, "lucy@example.com", "Lucy", "Van Pelt")
            .answering(&started.request_id);
        let xml = build(&idp, &server, valid);
        let reply = server
            .post(&xml, Some(&started.relay_state), Some(&started.cookie))
            .await;
        if !matches!(reply.status.as_u16(), 400 | 403 | 413) {
            accepted.push(format!("{name}: {}", reply.status));
        }
        assert!(reply.session_cookie().is_none(), "{name}");
        assert!(
            !reply.body.contains("lucy"),
            "{name}: the page echoes nothing"
        );
        assert_eq!(snapshot(&env).await, before, "{name}: nothing written");
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");

    // The control: the same valid login is accepted, so the refusals above
    // are the checks', not a broken setup.
    let valid = Response::okta(&idp, &server, "lucy@example.com", "Lucy", "Van Pelt");
    let reply = server.sp_login(&idp, valid).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_replayed_response_is_refused_with_nothing_written() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let started = server.login(None).await;
    let xml = Response::okta(&idp, &server, "mia@example.com", "Mia", "Wallace")
        .answering(&started.request_id)
        .sign(&idp);
    let ok = server
        .post(&xml, Some(&started.relay_state), Some(&started.cookie))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let before = snapshot(&env).await;
    let replay = server
        .post(&xml, Some(&started.relay_state), Some(&started.cookie))
        .await;
    assert_eq!(replay.status, 403);
    assert_eq!(snapshot(&env).await, before);
}
