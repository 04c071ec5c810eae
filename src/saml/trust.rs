//! A policy's SAML trust resolved into what the service provider needs: the
//! IdP's entity ID, SSO URL and signing certificates, and this SP's URLs.
//!
//! samael checks no signature at all when it knows no IdP signing
//! certificate, so a trust without one is refused here: such a policy serves
//! no login.

use std::time::Duration;

use samael::metadata::EntityDescriptor;

use crate::api::{AccessSpec, AttributeMapping, JitOptions, Mode, ProvisioningPolicy, SamlTrust};

const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

/// Why a policy's SAML trust cannot serve logins.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the policy has no spec.saml")]
    NoSaml,
    #[error("the policy's SAML trust has no IdP signing certificate")]
    NoSigningCertificate,
    #[error("an IdP certificate is not a PEM X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("the policy's SAML trust names no IdP entity ID")]
    NoEntityId,
    #[error("the IdP metadata does not parse: {0}")]
    BadMetadata(String),
}

/// Everything a login of one policy is checked against.
#[derive(Clone, Debug)]
pub struct Trust {
    pub namespace: String,
    pub policy: String,
    pub mode: Mode,
    pub idp_entity_id: String,
    pub idp_sso_url: Option<String>,
    /// DER certificates whose keys may sign. Never empty.
    pub idp_certificates: Vec<Vec<u8>>,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub login_url: String,
    pub skew: Duration,
    pub allow_idp_initiated: bool,
    pub allowed_redirect_urls: Vec<String>,
    pub session_lifetime: Duration,
    pub mapping: AttributeMapping,
    pub jit: JitOptions,
    /// The SSO gate's rules (defaults when the policy sets none).
    pub access: AccessSpec,
}

/// How old an IssueInstant may be (before the skew is added): an IdP posts
/// the response within seconds of issuing it.
pub const MAX_ISSUE_AGE: Duration = Duration::from_secs(90);

/// This service provider's own identity for a policy, which needs no IdP
/// trust (the metadata an administrator gives the IdP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpUrls {
    pub entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub login_url: String,
}

impl SpUrls {
    pub fn of(policy: &ProvisioningPolicy, origin: &str) -> Self {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let base = format!("{}/saml/{namespace}/{name}", origin.trim_end_matches('/'));
        let metadata_url = format!("{base}/metadata");
        Self {
            entity_id: policy
                .spec
                .saml
                .as_ref()
                .and_then(|s| s.sp_entity_id.clone())
                .unwrap_or_else(|| metadata_url.clone()),
            acs_url: format!("{base}/acs"),
            login_url: format!("{base}/login"),
            metadata_url,
        }
    }
}

impl Trust {
    /// Resolves `policy`'s trust; `origin` is where this server is reached,
    /// e.g. `https://roster.example.com`.
    pub fn resolve(policy: &ProvisioningPolicy, origin: &str) -> Result<Self, TrustError> {
        let inline = policy
            .spec
            .saml
            .as_ref()
            .and_then(|s| s.idp_metadata.as_deref());
        Self::resolve_with(policy, origin, inline)
    }

    /// [`Trust::resolve`] with the IdP's `metadata` as read from the
    /// policy's source (inline, URL or ConfigMap; see `idp_metadata`).
    pub fn resolve_with(
        policy: &ProvisioningPolicy,
        origin: &str,
        metadata: Option<&str>,
    ) -> Result<Self, TrustError> {
        let saml = policy.spec.saml.as_ref().ok_or(TrustError::NoSaml)?;
        let urls = SpUrls::of(policy, origin);
        let from_metadata = match metadata {
            Some(xml) => Some(read_metadata(xml)?),
            None => None,
        };
        let idp_entity_id = saml
            .idp_entity_id
            .clone()
            .or_else(|| from_metadata.as_ref().and_then(|m| m.entity_id.clone()))
            .ok_or(TrustError::NoEntityId)?;
        let idp_sso_url = saml
            .idp_sso_url
            .clone()
            .or_else(|| from_metadata.as_ref().and_then(|m| m.sso_url.clone()));
        let idp_certificates = if saml.idp_certificates.is_empty() {
            from_metadata.map(|m| m.certificates).unwrap_or_default()
        } else {
            saml.idp_certificates
                .iter()
                .map(|pem| pem_to_der(pem))
                .collect::<Result<_, _>>()?
        };
        if idp_certificates.is_empty() {
            return Err(TrustError::NoSigningCertificate);
        }
        Ok(Self {
            namespace: policy.metadata.namespace.clone().unwrap_or_default(),
            policy: policy.metadata.name.clone().unwrap_or_default(),
            mode: policy.spec.mode,
            idp_entity_id,
            idp_sso_url,
            idp_certificates,
            sp_entity_id: urls.entity_id,
            acs_url: urls.acs_url,
            login_url: urls.login_url,
            metadata_url: urls.metadata_url,
            skew: Duration::from_secs(saml.clock_skew_seconds.clamp(0, 600) as u64),
            allow_idp_initiated: saml.allow_idp_initiated,
            allowed_redirect_urls: saml.allowed_redirect_urls.clone(),
            session_lifetime: session_lifetime(saml),
            mapping: saml.attribute_mapping.clone(),
            jit: policy.spec.jit.clone().unwrap_or_default(),
            access: policy.spec.access.clone().unwrap_or_default(),
        })
    }
}

/// The lifetime of the policy's sessions, within its bounds.
pub fn session_lifetime(saml: &SamlTrust) -> Duration {
    Duration::from_secs(saml.session_lifetime_seconds.clamp(60, 86400) as u64)
}

struct IdpMetadata {
    entity_id: Option<String>,
    sso_url: Option<String>,
    certificates: Vec<Vec<u8>>,
}

/// Reads the IdP's entity ID, redirect-binding SSO URL and signing
/// certificates (keys marked `signing`, or with no use; never encryption-only
/// keys) from its metadata.
fn read_metadata(xml: &str) -> Result<IdpMetadata, TrustError> {
    let descriptor = xml
        .parse::<EntityDescriptor>()
        .map_err(|e| TrustError::BadMetadata(e.to_string()))?;
    let idps = descriptor.idp_sso_descriptors.unwrap_or_default();
    let sso_url = idps
        .iter()
        .flat_map(|d| &d.single_sign_on_services)
        .find(|s| s.binding == REDIRECT_BINDING)
        .map(|s| s.location.clone());
    let mut certificates = Vec::new();
    for key in idps.iter().flat_map(|d| &d.key_descriptors) {
        if !matches!(key.key_use.as_deref(), None | Some("") | Some("signing")) {
            continue;
        }
        for cert in key
            .key_info
            .x509_data
            .iter()
            .flat_map(|data| &data.certificates)
        {
            let der = samael::crypto::decode_x509_cert(cert)
                .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
            certificates.push(der.der_data().to_vec());
        }
    }
    Ok(IdpMetadata {
        entity_id: descriptor.entity_id,
        sso_url,
        certificates,
    })
}

/// The DER bytes of one PEM certificate, checked to be a certificate.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, TrustError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
    if parsed.label != "CERTIFICATE" {
        return Err(TrustError::BadCertificate(format!(
            "a PEM {} block",
            parsed.label
        )));
    }
    parsed
        .parse_x509()
        .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
    Ok(parsed.contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;

    fn policy(saml: SamlTrust) -> ProvisioningPolicy {
        let mut policy = ProvisioningPolicy::new(
            "crm",
            ProvisioningPolicySpec {
                mode: Mode::Jit,
                application: ApplicationSpec {
                    kind: ApplicationKind::Webhook,
                    scim: None,
                    webhook: None,
                    postgres: None,
                    argocd_rbac: None,
                    deprovision: DeprovisionAction::Disable,
                    delete_after_seconds: 86_400,
                    dry_run: false,
                },
                scim: None,
                saml: Some(saml),
                jit: None,
                access: None,
                kubernetes: None,
                circuit_breaker: Default::default(),
            },
        );
        policy.metadata.namespace = Some("team".into());
        policy
    }

    fn trust(certificates: Vec<String>) -> SamlTrust {
        SamlTrust {
            idp_metadata: None,
            idp_metadata_url: None,
            idp_metadata_config_map_ref: None,
            idp_entity_id: Some("idp".into()),
            idp_sso_url: Some("https://idp.example.com/sso".into()),
            idp_certificates: certificates,
            sp_entity_id: None,
            attribute_mapping: AttributeMapping::default(),
            clock_skew_seconds: 30,
            allow_idp_initiated: false,
            allowed_redirect_urls: vec![],
            session_lifetime_seconds: 3600,
        }
    }

    fn pem() -> String {
        rcgen::generate_simple_self_signed(vec!["idp".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn a_trust_resolves_with_urls_under_the_policy() {
        let resolved =
            Trust::resolve(&policy(trust(vec![pem()])), "https://r.example.com/").unwrap();
        assert_eq!(resolved.acs_url, "https://r.example.com/saml/team/crm/acs");
        assert_eq!(
            resolved.sp_entity_id,
            "https://r.example.com/saml/team/crm/metadata"
        );
        assert_eq!(resolved.idp_certificates.len(), 1);
        assert_eq!(resolved.skew, Duration::from_secs(30));
    }

    #[test]
    fn a_trust_without_a_signing_certificate_serves_no_login() {
        let error = Trust::resolve(&policy(trust(vec![])), "https://r").unwrap_err();
        assert_eq!(error, TrustError::NoSigningCertificate);
    }

    #[test]
    fn metadata_with_only_an_encryption_key_serves_no_login() {
        let cert = pem();
        let body: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        let metadata = |usage: &str| {
            format!(
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="{REDIRECT_BINDING}" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
            )
        };
        let mut saml = trust(vec![]);
        saml.idp_entity_id = None;
        saml.idp_sso_url = None;
        saml.idp_metadata = Some(metadata("encryption"));
        assert_eq!(
            Trust::resolve(&policy(saml.clone()), "https://r").unwrap_err(),
            TrustError::NoSigningCertificate
        );
        saml.idp_metadata = Some(metadata("signing"));
        let resolved = Trust::resolve(&policy(saml), "https://r").unwrap();
        assert_eq!(resolved.idp_entity_id, "https://idp.example.com");
        assert_eq!(
            resolved.idp_sso_url.as_deref(),
            Some("https://idp.example.com/sso")
        );
        assert_eq!(resolved.idp_certificates.len(), 1);
    }

    #[test]
    fn a_key_that_is_not_a_certificate_is_refused() {
        let error = Trust::resolve(&policy(trust(vec!["nonsense".into()])), "https://r");
        assert!(matches!(error, Err(TrustError::BadCertificate(_))));
    }
}
