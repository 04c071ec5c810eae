//! Reconciling a ProvisioningPolicy: check what the API server cannot and
//! publish where to point the identity provider, with counts.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use serde_json::json;

use super::breaker::{self, Summary};
use super::conditions::{self, Decided};
use super::{Context, Error};
use crate::api::{
    ApplicationKind, Mode, PolicyCounts, ProvisioningPlan, ProvisioningPolicy,
    ProvisioningPolicyStatus, Quarantine, SamlTrust,
};
use crate::directory::tokens::{self, Refusal};
use crate::saml::idp_metadata::{MetadataError, MetadataSources};

/// Reconciles a policy: gather the facts, plan its status (pure), apply.
pub async fn reconcile(
    policy: Arc<ProvisioningPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let facts = gather(&policy, &ctx).await?;
    let current = policy.status.clone().unwrap_or_default();
    let status = plan(&policy, &facts, &current, &now());
    if status != current {
        if let Some(ready) = newly_failing(&current, &status) {
            ctx.event(policy.as_ref(), true, &ready.reason, ready.message.clone())
                .await;
        }
        ctx.apply_status(policy.as_ref(), json!(status)).await?;
    }
    // An IdP certificate comes closer to its expiry, and metadata at a URL
    // or in a ConfigMap changes, with no change to the policy to wake it:
    // look again, so the SamlTrust condition follows.
    if let Some(saml) = &policy.spec.saml {
        if MetadataSources::has_source(saml) {
            return Ok(Action::requeue(
                ctx.metadata.refresh().min(CERTIFICATE_RECHECK),
            ));
        }
        if !saml.idp_certificates.is_empty() || saml.idp_metadata.is_some() {
            return Ok(Action::requeue(CERTIFICATE_RECHECK));
        }
    }
    Ok(Action::await_change())
}

/// How often a policy with an IdP certificate is looked at again.
const CERTIFICATE_RECHECK: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// What a policy's status is decided from, read from the API and caches.
struct Facts {
    /// The token Secret's name and what it holds (Scim mode only).
    tokens: Option<(String, tokens::Screened)>,
    /// Whether the connector can be built, or why not (reason, message).
    connector: Result<(), (&'static str, String)>,
    /// Other policies provisioning the same application.
    claimants: Vec<String>,
    counts: PolicyCounts,
    public_url: Option<String>,
    /// What the circuit breaker holds, if it tripped.
    quarantine: Option<Summary>,
    /// What a dry-run policy would do.
    plan: Option<ProvisioningPlan>,
    /// The IdP metadata, when the policy has some (inline, or read from its
    /// URL or ConfigMap), or why it could not be read.
    idp_metadata: Option<Result<Arc<str>, MetadataError>>,
}

async fn gather(policy: &ProvisioningPolicy, ctx: &Context) -> Result<Facts, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let tokens = match (&policy.spec.mode, &policy.spec.scim) {
        (Mode::Scim, Some(scim)) => {
            let name = &scim.token_secret_ref.name;
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let secret = secrets.get_opt(name).await.map_err(Error::Kube)?;
            Some((name.clone(), tokens::screen(secret.as_ref())))
        }
        _ => None,
    };
    let connector = match ctx.connector(policy).await {
        Ok(_) => Ok(()),
        Err(error) => Err((error.reason(), error.to_string())),
    };
    let idp_metadata = match &policy.spec.saml {
        Some(saml) => ctx
            .metadata
            .get(&ctx.client, &namespace, saml)
            .await
            .transpose(),
        None => None,
    };
    Ok(Facts {
        idp_metadata,
        tokens,
        connector,
        claimants: claimants(ctx, policy),
        counts: counts(ctx, &namespace, &policy.name_any()),
        public_url: ctx.public_url.clone(),
        // Takes in an approval first: what it releases goes out now.
        quarantine: ctx.settle_quarantine(policy).await,
        plan: if policy.spec.application.dry_run {
            Some(ctx.plans.summary(&namespace, &policy.name_any()))
        } else {
            ctx.plans.forget_policy(&namespace, &policy.name_any());
            None
        },
    })
}

/// The status `facts` call for. Pure.
fn plan(
    policy: &ProvisioningPolicy,
    facts: &Facts,
    current: &ProvisioningPolicyStatus,
    now: &Time,
) -> ProvisioningPolicyStatus {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let mut decided = Vec::new();

    decided.push(match (&policy.spec.mode, &facts.tokens) {
        (Mode::Scim, Some((secret, screened))) => scim_tokens(secret, screened),
        (Mode::Scim, None) => {
            Decided::new("ScimTokens", false, "TokensMissing", "spec.scim is missing")
        }
        (Mode::Jit, _) => Decided::new(
            "ScimTokens",
            true,
            "NotApplicable",
            "the SCIM service refuses requests in Jit mode",
        ),
    });

    decided.push(match &policy.spec.saml {
        Some(_) if facts.public_url.is_none() => Decided::new(
            "SamlTrust",
            false,
            "PublicUrlMissing",
            crate::saml::NO_PUBLIC_URL,
        ),
        Some(saml) => saml_trust(saml, facts.idp_metadata.as_ref(), now.0),
        None if policy.spec.mode == Mode::Jit => Decided::new(
            "SamlTrust",
            false,
            "TrustMissing",
            "a Jit policy needs spec.saml",
        ),
        None => Decided::new(
            "SamlTrust",
            true,
            "NotConfigured",
            "no SAML login for this application",
        ),
    });

    decided.push(match &facts.connector {
        Ok(()) => Decided::new(
            "Application",
            true,
            "Configured",
            "the connector's settings and credentials are complete",
        ),
        Err((reason, message)) => Decided::new("Application", false, *reason, message.clone()),
    });

    decided.push(if facts.claimants.is_empty() {
        Decided::new(
            "Exclusive",
            true,
            "SoleClaimant",
            "no other policy provisions this application",
        )
    } else {
        Decided::new(
            "Exclusive",
            false,
            "ApplicationClaimedTwice",
            format!(
                "policies {} provision the same application; keep one",
                facts.claimants.join(", ")
            ),
        )
    });

    let mut summary = conditions::summary(&decided);
    let quarantined = quarantined(policy, facts.quarantine.as_ref());
    if summary.status && !quarantined.status {
        summary = Decided::new(
            conditions::READY,
            false,
            "Quarantined",
            quarantined.message.clone(),
        );
    }
    if let (true, Some(plan)) = (summary.status, &facts.plan) {
        let planned: i64 = plan.counts.values().sum();
        summary = Decided::new(
            conditions::READY,
            false,
            "DryRun",
            format!(
                "dry run: {planned} change(s) planned, none made; see status.plan, and set \
                 spec.application.dryRun to false to carry them out"
            ),
        );
    }
    decided.insert(0, summary);
    // Positive when True, so it stays out of the summary's "first False".
    decided.push(Decided {
        status: !quarantined.status,
        ..quarantined
    });
    let merged = conditions::merge(
        &current.conditions,
        &decided,
        policy.metadata.generation,
        now,
    );
    let origin = facts.public_url.clone().unwrap_or_default();
    ProvisioningPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: merged,
        scim_base_url: (policy.spec.mode == Mode::Scim)
            .then(|| format!("{origin}/scim/{namespace}/{name}/v2")),
        saml_metadata_url: (policy.spec.saml.is_some() && facts.public_url.is_some())
            .then(|| format!("{origin}/saml/{namespace}/{name}/metadata")),
        counts: Some(facts.counts.clone()),
        quarantine: facts.quarantine.as_ref().map(|q| Quarantine {
            token: q.trip.token.clone(),
            since: Time(q.trip.since),
            reason: q.trip.reason.clone(),
            held_accounts: q.held_accounts as i64,
            held_member_removals: q.held_member_removals as i64,
            held: q.named.clone(),
        }),
        plan: facts.plan.clone(),
    }
}

/// The Quarantined condition, inverted (`status` true when all is well).
fn quarantined(policy: &ProvisioningPolicy, quarantine: Option<&Summary>) -> Decided {
    const TYPE: &str = "Quarantined";
    let breaker = &policy.spec.circuit_breaker;
    match quarantine {
        Some(q) => Decided::new(
            TYPE,
            false,
            "DeprovisioningHeld",
            format!(
                "{}; holding {} account action(s) and {} member removal(s); approve with \
                 `kubectl annotate ppol {} {}={}`, or take them back in the identity provider",
                q.trip.reason,
                q.held_accounts,
                q.held_member_removals,
                policy.name_any(),
                breaker::APPROVAL_ANNOTATION,
                q.trip.token
            ),
        ),
        None if !breaker.enabled => Decided::new(
            TYPE,
            true,
            "BreakerOff",
            "the circuit breaker is off: every deprovisioning goes out at once",
        ),
        None => Decided::new(
            TYPE,
            true,
            "WithinLimits",
            format!(
                "deprovisioning within limits: at most max({}, {}% of active users) per {}s",
                breaker.max_actions, breaker.max_percent, breaker.window_seconds
            ),
        ),
    }
}

/// The Ready condition, when it just turned False: a Warning Event says so
/// once, not at every reconcile.
fn newly_failing<'s>(
    current: &ProvisioningPolicyStatus,
    status: &'s ProvisioningPolicyStatus,
) -> Option<&'s Condition> {
    let was_ready = current
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .filter(|r| r.status == "False" && (was_ready || current.conditions.is_empty()))
}

/// The ScimTokens condition for token Secret `name`, as screened. Keys that
/// were ignored are named, never their values. Some good tokens and some
/// ignored keys is True: the identity provider can authenticate, and
/// flipping Ready for a service that works would alarm for nothing; the
/// reason and message say what to fix.
fn scim_tokens(name: &str, screened: &tokens::Screened) -> Decided {
    const TYPE: &str = "ScimTokens";
    let short = || {
        format!(
            "key(s) {} ignored: empty or shorter than {} bytes",
            screened.too_short.join(", "),
            tokens::MIN_TOKEN_BYTES
        )
    };
    match (
        screened.refusal,
        screened.tokens.len(),
        screened.too_short.is_empty(),
    ) {
        (Some(Refusal::ServiceAccountToken), _, _) => Decided::new(
            TYPE,
            false,
            "ServiceAccountTokenSecret",
            format!(
                "Secret {name} is of type {}: its values are Kubernetes' own (namespace, ca.crt \
                 are public) and are never accepted as bearer tokens; use an Opaque Secret",
                tokens::SERVICE_ACCOUNT_TOKEN_TYPE
            ),
        ),
        (Some(Refusal::Missing), _, _) => Decided::new(
            TYPE,
            false,
            "TokensMissing",
            format!("Secret {name} does not exist"),
        ),
        (None, 0, true) => Decided::new(
            TYPE,
            false,
            "TokensMissing",
            format!("Secret {name} holds no bearer token"),
        ),
        (None, 0, false) => Decided::new(
            TYPE,
            false,
            "TokensTooShort",
            format!("Secret {name} holds no usable bearer token: {}", short()),
        ),
        (None, n, true) => Decided::new(
            TYPE,
            true,
            "TokensPresent",
            format!("{n} bearer token(s) accepted"),
        ),
        (None, n, false) => Decided::new(
            TYPE,
            true,
            "SomeTokensIgnored",
            format!("{n} bearer token(s) accepted; {}", short()),
        ),
    }
}

/// SAML trust needs at least one signing certificate that parses.
fn saml_trust(
    saml: &SamlTrust,
    metadata: Option<&Result<Arc<str>, MetadataError>>,
    now: Timestamp,
) -> Decided {
    let metadata = match metadata {
        Some(Err(error)) => {
            return Decided::new("SamlTrust", false, "MetadataUnavailable", error.to_string());
        }
        Some(Ok(xml)) => Some(xml.as_ref()),
        None => None,
    };
    let mut pems: Vec<&str> = saml.idp_certificates.iter().map(String::as_str).collect();
    if let Some(metadata) = metadata {
        // Certificates in metadata are bare base64 in <ds:X509Certificate>.
        if metadata.contains("X509Certificate") {
            pems.push(metadata);
        }
    }
    if pems.is_empty() {
        return Decided::new(
            "SamlTrust",
            false,
            "NoSigningCertificate",
            "the SAML trust has no signing certificate",
        );
    }
    for pem in &saml.idp_certificates {
        if let Err(error) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|(_, p)| p.parse_x509().map(|_| ()).map_err(|e| e.to_string()))
        {
            return Decided::new(
                "SamlTrust",
                false,
                "CertificateInvalid",
                format!("an IdP certificate does not parse: {error}"),
            );
        }
    }
    let count = pems.len();
    match earliest_certificate_expiry(saml, metadata) {
        Some(expiry) if expiry <= now => Decided::new(
            "SamlTrust",
            true,
            "CertificateExpired",
            format!(
                "{count} signing certificate(s); one expired at {expiry}: logins fail once the IdP stops signing with a certificate Roster trusts, so add the IdP's new one"
            ),
        ),
        Some(expiry) if expiry <= now + CERTIFICATE_WARNING => Decided::new(
            "SamlTrust",
            true,
            "CertificateExpiresSoon",
            format!(
                "{count} signing certificate(s); one expires at {expiry}: add the IdP's next certificate before it rolls over"
            ),
        ),
        Some(expiry) => Decided::new(
            "SamlTrust",
            true,
            "Trusted",
            format!("{count} signing certificate(s); the first to expire does at {expiry}"),
        ),
        None => Decided::new(
            "SamlTrust",
            true,
            "Trusted",
            format!("{count} signing certificate(s)"),
        ),
    }
}

/// How long ahead of an IdP certificate's expiry the SamlTrust condition
/// warns (and the alert fires).
const CERTIFICATE_WARNING: SignedDuration = SignedDuration::from_hours(30 * 24);

/// When the earliest of the trust's IdP signing certificates expires: the
/// PEM certificates, and the base64 ones in the metadata's
/// `<X509Certificate>` elements. Certificates that do not parse are left to
/// the SamlTrust condition.
pub fn earliest_certificate_expiry(saml: &SamlTrust, metadata: Option<&str>) -> Option<Timestamp> {
    use base64::Engine;
    let from_pem = saml.idp_certificates.iter().filter_map(|pem| {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        not_after(&pem.contents)
    });
    let from_metadata = metadata
        .unwrap_or_default()
        .split("X509Certificate>")
        .skip(1)
        .filter_map(|rest| {
            let text = rest.split('<').next()?;
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()?;
            not_after(&der)
        });
    from_pem.chain(from_metadata).min()
}

fn not_after(der: &[u8]) -> Option<Timestamp> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Timestamp::from_second(certificate.validity().not_after.timestamp()).ok()
}

/// Other policies whose application is the same URL.
fn claimants(ctx: &Context, policy: &ProvisioningPolicy) -> Vec<String> {
    let target = application_url(policy);
    let Some(target) = target else {
        return Vec::new();
    };
    ctx.policies
        .state()
        .into_iter()
        .filter(|p| p.uid() != policy.uid())
        .filter(|p| application_url(p).as_deref() == Some(target.as_str()))
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect()
}

fn application_url(policy: &ProvisioningPolicy) -> Option<String> {
    let application = &policy.spec.application;
    let url = match application.kind {
        ApplicationKind::Scim => application.scim.as_ref()?.base_url.clone(),
        ApplicationKind::Webhook => application.webhook.as_ref()?.url.clone(),
        ApplicationKind::Postgres => {
            let postgres = application.postgres.as_ref()?;
            format!("postgres://{}:{}", postgres.host, postgres.port)
        }
        ApplicationKind::ArgoCdRbac => {
            let argocd = application.argocd_rbac.as_ref()?;
            format!(
                "argocd-rbac://{}/{}#{}",
                argocd.namespace, argocd.config_map, argocd.key
            )
        }
    };
    Some(url.trim_end_matches('/').to_ascii_lowercase())
}

fn counts(ctx: &Context, namespace: &str, name: &str) -> PolicyCounts {
    let mut counts = PolicyCounts::default();
    for user in ctx.users.state() {
        if user.namespace().as_deref() == Some(namespace)
            && *user.spec.policy == *name
            && user.metadata.deletion_timestamp.is_none()
        {
            counts.users += 1;
            if user.spec.is_active() {
                counts.active_users += 1;
            }
        }
    }
    counts.groups = ctx
        .groups
        .state()
        .iter()
        .filter(|g| {
            g.namespace().as_deref() == Some(namespace)
                && g.spec.policy == name
                && g.metadata.deletion_timestamp.is_none()
        })
        .count() as i64;
    counts
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screened(tokens: usize, too_short: &[&str], refusal: Option<Refusal>) -> tokens::Screened {
        tokens::Screened {
            tokens: vec![b"a-token-long-enough-to-count".to_vec(); tokens],
            too_short: too_short.iter().map(|k| (*k).to_owned()).collect(),
            refusal,
        }
    }

    fn jit_policy_without_saml() -> ProvisioningPolicy {
        let mut policy = super::super::bare_policy("wiki", Mode::Jit);
        policy.metadata.namespace = Some("team".into());
        policy.metadata.generation = Some(2);
        policy
    }

    fn facts(claimants: Vec<String>) -> Facts {
        Facts {
            tokens: None,
            connector: Ok(()),
            claimants,
            counts: PolicyCounts {
                users: 3,
                active_users: 2,
                groups: 1,
            },
            public_url: Some("https://roster.example.com".into()),
            quarantine: None,
            plan: None,
            idp_metadata: None,
        }
    }

    fn condition<'s>(status: &'s ProvisioningPolicyStatus, type_: &str) -> &'s Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn the_plan_says_what_is_wrong_and_ready_summarises_it() {
        let policy = jit_policy_without_saml();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let status = plan(
            &policy,
            &facts(vec!["team/other".into()]),
            &ProvisioningPolicyStatus::default(),
            &now,
        );
        assert_eq!(condition(&status, "SamlTrust").reason, "TrustMissing");
        assert_eq!(condition(&status, "ScimTokens").reason, "NotApplicable");
        let exclusive = condition(&status, "Exclusive");
        assert_eq!(exclusive.reason, "ApplicationClaimedTwice");
        assert!(exclusive.message.contains("team/other"));
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "TrustMissing")
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.scim_base_url, None);
        assert_eq!(status.counts.as_ref().map(|c| c.users), Some(3));
        // A first status that fails warns once; the same again does not.
        assert!(newly_failing(&ProvisioningPolicyStatus::default(), &status).is_some());
        assert!(newly_failing(&status, &status).is_none());
    }

    #[test]
    fn a_service_account_token_secret_is_refused_whatever_it_holds() {
        let c = scim_tokens("sa", &screened(0, &[], Some(Refusal::ServiceAccountToken)));
        assert!(!c.status);
        assert_eq!(c.reason, "ServiceAccountTokenSecret");
        assert!(c.message.contains("kubernetes.io/service-account-token"));
    }

    #[test]
    fn short_keys_are_named_and_fail_only_when_nothing_else_is_left() {
        let none_left = scim_tokens("t", &screened(0, &["old", "typo"], None));
        assert!(!none_left.status);
        assert_eq!(none_left.reason, "TokensTooShort");
        assert!(
            none_left.message.contains("key(s) old, typo ignored"),
            "{}",
            none_left.message
        );
        let some_left = scim_tokens("t", &screened(1, &["typo"], None));
        assert!(some_left.status);
        assert_eq!(some_left.reason, "SomeTokensIgnored");
        assert!(
            some_left
                .message
                .starts_with("1 bearer token(s) accepted; key(s) typo")
        );
        assert_eq!(
            scim_tokens("t", &screened(2, &[], None)).reason,
            "TokensPresent"
        );
        assert_eq!(
            scim_tokens("t", &screened(0, &[], None)).reason,
            "TokensMissing"
        );
        assert_eq!(
            scim_tokens("t", &screened(0, &[], Some(Refusal::Missing))).reason,
            "TokensMissing"
        );
    }

    /// A self-signed certificate's metadata element, valid until `not_after`.
    fn metadata_with_certificate(not_after: Timestamp) -> String {
        use base64::Engine;
        let mut params = rcgen::CertificateParams::new(vec!["idp.example.com".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2000, 1, 1)
            + std::time::Duration::from_secs(
                (not_after.as_second() - 946_684_800).try_into().unwrap(),
            );
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(certificate.der());
        format!(
            "<md:EntityDescriptor><md:IDPSSODescriptor><md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"
        )
    }

    fn metadata_trust() -> SamlTrust {
        serde_json::from_value(json!({"idpMetadataUrl": "https://idp.example.com/md"})).unwrap()
    }

    #[test]
    fn metadata_that_cannot_be_read_makes_the_trust_false() {
        let error = MetadataError::Url {
            url: "https://idp.example.com/md".into(),
            reason: "timed out after 5s".into(),
        };
        let decided = saml_trust(&metadata_trust(), Some(&Err(error)), Timestamp::now());
        assert!(!decided.status);
        assert_eq!(decided.reason, "MetadataUnavailable");
        assert!(decided.message.contains("timed out"), "{}", decided.message);
    }

    #[test]
    fn the_trust_warns_ahead_of_a_metadata_certificate_expiry() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let expiry = |days: i64| now + SignedDuration::from_hours(24 * days);
        let at = |days: i64| -> Decided {
            let xml: Arc<str> = Arc::from(metadata_with_certificate(expiry(days)));
            saml_trust(&metadata_trust(), Some(&Ok(xml)), now)
        };
        let soon = at(10);
        assert!(soon.status, "logins still work");
        assert_eq!(soon.reason, "CertificateExpiresSoon");
        assert_eq!(at(90).reason, "Trusted");
        assert!(at(90).message.contains("2027-03-02"), "{}", at(90).message);
        assert_eq!(at(-1).reason, "CertificateExpired");
        let xml = metadata_with_certificate(expiry(10));
        assert_eq!(
            earliest_certificate_expiry(&metadata_trust(), Some(&xml)),
            Some(Timestamp::from_second(expiry(10).as_second()).unwrap())
        );
    }
}
