//! Signature and protocol verification by samael, then the checks samael
//! leaves open. Blocking (libxml, xmlsec): call it from `spawn_blocking`.

use base64::Engine;
use chrono::{DateTime, Utc};
use quick_xml::escape::escape;
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};

use super::checks::{self, Checked, Rejection};
use super::trust::{MAX_ISSUE_AGE, Trust};

/// SHA-2 only: SHA-1 signatures and digests are refused (and DSA, HMAC).
const ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// samael's view of the policy: its IdP metadata is generated from the
/// resolved trust, so every key in it is a signing key.
pub fn service_provider(trust: &Trust) -> Result<ServiceProvider, Rejection> {
    let keys: String = trust
        .idp_certificates
        .iter()
        .map(|der| {
            format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        })
        .collect();
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}</md:IDPSSODescriptor></md:EntityDescriptor>"#,
        escape(trust.idp_entity_id.as_str())
    );
    let idp_metadata: EntityDescriptor = metadata
        .parse()
        .map_err(|e: _| Rejection::Verification(format!("IdP metadata: {e}")))?;
    let skew = chrono::Duration::from_std(trust.skew).unwrap_or_default();
    let max_age = chrono::Duration::from_std(MAX_ISSUE_AGE).unwrap_or_default();
    ServiceProviderBuilder::default()
        .entity_id(Some(trust.sp_entity_id.clone()))
        .metadata_url(Some(trust.metadata_url.clone()))
        .acs_url(Some(trust.acs_url.clone()))
        .slo_url(None::<String>)
        .idp_metadata(idp_metadata)
        // InResponseTo is checked below against the request bound to the
        // browser; samael checks it only when IdP-initiated logins are off.
        .allow_idp_initiated(trust.allow_idp_initiated)
        .max_issue_delay(max_age + skew)
        .max_clock_skew(skew)
        .allowed_signature_algorithms(Some(ALGORITHMS.to_vec()))
        .build()
        .map_err(|e| Rejection::Verification(format!("service provider: {e}")))
}

/// Parses `xml` with libxml strictly (no recovery, no network, no DTD): the
/// precheck's streaming parser accepts some documents libxml calls
/// malformed, and samael parses in recover mode, so without this the two
/// could read different documents.
pub fn well_formed(xml: &str) -> Result<(), Rejection> {
    let options = libxml::parser::ParserOptions {
        recover: false,
        no_net: true,
        no_def_dtd: true,
        no_error: true,
        no_warning: true,
        ..Default::default()
    };
    libxml::parser::Parser::default()
        .parse_string_with_options(xml, options)
        .map(drop)
        .map_err(|error| Rejection::Malformed(format!("libxml: {error}")))
}

/// Verifies `xml` (already prechecked) for `trust`: signatures against the
/// IdP's certificates, issuer, destination, recipient, audience and time
/// window by samael; then [`checks::check_assertion`].
pub fn verify(
    trust: &Trust,
    xml: &str,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Assertion, Checked), Rejection> {
    well_formed(xml)?;
    let sp = service_provider(trust)?;
    let possible: Vec<&str> = request_id.into_iter().collect();
    let possible = (!possible.is_empty()).then_some(possible.as_slice());
    let assertion = sp
        .parse_xml_response(xml, possible)
        .map_err(|e| Rejection::Verification(e.to_string()))?;
    let checked = checks::check_assertion(
        &assertion,
        &trust.sp_entity_id,
        request_id,
        trust.allow_idp_initiated,
        now,
        trust.skew,
        MAX_ISSUE_AGE,
    )?;
    Ok((assertion, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_streaming_precheck_lets_through_libxml_refuses() {
        // Found by the precheck's property tests: quick-xml accepts these.
        for xml in [r#"<r a="1"b="2"/>"#, r#"<r a="x<y"/>"#, "<r>a]]>b</r>"] {
            assert!(
                matches!(well_formed(xml), Err(Rejection::Malformed(_))),
                "{xml}"
            );
        }
        assert_eq!(well_formed(r#"<r a="1" b="2">x</r>"#), Ok(()));
    }
}
