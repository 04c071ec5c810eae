//! Builders for the objects tests write.

use roster::api::*;

pub fn scim_policy(name: &str) -> ProvisioningPolicy {
    ProvisioningPolicy::new(
        name,
        ProvisioningPolicySpec {
            mode: Mode::Scim,
            application: scim_application(),
            scim: Some(ScimService {
                token_secret_ref: SecretRef {
                    name: format!("{name}-scim-tokens"),
                },
                rate_limit: RateLimit::default(),
            }),
            saml: None,
            jit: None,
            access: None,
            kubernetes: None,
            circuit_breaker: Default::default(),
        },
    )
}

pub fn jit_policy(name: &str) -> ProvisioningPolicy {
    ProvisioningPolicy::new(
        name,
        ProvisioningPolicySpec {
            mode: Mode::Jit,
            application: ApplicationSpec {
                kind: ApplicationKind::Webhook,
                scim: None,
                webhook: Some(WebhookConnector {
                    url: "https://hooks.example.com/roster".into(),
                    signing_secret_ref: SecretKeyRef {
                        name: format!("{name}-webhook"),
                        key: "signing-key".into(),
                    },
                    signature_scheme: Default::default(),
                }),
                postgres: None,
                argocd_rbac: None,
                deprovision: DeprovisionAction::Delete,
                delete_after_seconds: 0,
                dry_run: false,
            },
            scim: None,
            saml: Some(saml_trust()),
            jit: Some(JitOptions {
                default_groups: vec!["everyone".into()],
                allowed_email_domains: vec!["example.com".into()],
                deprovision_after_days: Some(90),
                allowed_groups: Vec::new(),
                groups_overage: Default::default(),
            }),
            access: None,
            kubernetes: None,
            circuit_breaker: Default::default(),
        },
    )
}

pub fn scim_application() -> ApplicationSpec {
    ApplicationSpec {
        kind: ApplicationKind::Scim,
        scim: Some(ScimConnector {
            base_url: "https://app.example.com/scim/v2".into(),
            token_secret_ref: SecretKeyRef {
                name: "app-token".into(),
                key: "token".into(),
            },
        }),
        webhook: None,
        postgres: None,
        argocd_rbac: None,
        deprovision: DeprovisionAction::Disable,
        delete_after_seconds: 86_400,
        dry_run: false,
    }
}

pub fn saml_trust() -> SamlTrust {
    let cert = rcgen::generate_simple_self_signed(vec!["idp.example.com".to_owned()])
        .expect("a self-signed certificate");
    SamlTrust {
        idp_metadata: None,
        idp_metadata_url: None,
        idp_metadata_config_map_ref: None,
        idp_entity_id: Some("http://www.okta.com/exk1example".into()),
        idp_sso_url: Some("https://example.okta.com/app/sso/saml".into()),
        idp_certificates: vec![cert.cert.pem()],
        sp_entity_id: None,
        attribute_mapping: AttributeMapping::default(),
        clock_skew_seconds: 120,
        allow_idp_initiated: false,
        allowed_redirect_urls: Vec::new(),
        session_lifetime_seconds: 3600,
    }
}

pub fn user(name: &str, policy: &str, user_name: &str) -> User {
    User::new(
        name,
        UserSpec {
            policy: policy.into(),
            user_name: user_name.into(),
            active: Some(true),
            ..Default::default()
        },
    )
}

pub fn group(name: &str, policy: &str, display_name: &str) -> Group {
    Group::new(
        name,
        GroupSpec {
            policy: policy.into(),
            display_name: display_name.into(),
            ..Default::default()
        },
    )
}

/// Creates Users `ids` of `policy` straight through the API, 16 at a time:
/// group members must be Users of the group's policy.
pub async fn create_users(env: &super::TestEnv, policy: &str, ids: &[String]) {
    use futures::StreamExt;
    let users: kube::Api<User> = env.api();
    futures::stream::iter(ids)
        .map(|id| {
            let users = users.clone();
            async move {
                users
                    .create(
                        &Default::default(),
                        &user(id, policy, &format!("{id}@example.com")),
                    )
                    .await
                    .expect("creating a member User")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}
