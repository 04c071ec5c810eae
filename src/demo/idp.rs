//! The demo identity provider `roster dev` serves for the SAML policies of
//! the examples it applied: a page of demo people; choosing one signs a SAML
//! response for them (xmlsec through samael, with an RSA key generated at
//! start, whose certificate `roster dev` writes into the policies' trust)
//! and posts it to the policy's ACS from the browser.
//!
//! A demo: it signs in whoever clicks, and every page says so. It exists
//! only in the `dev` feature and only `roster dev` starts it.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};
use samael::crypto::CryptoProvider as _;
use serde::Deserialize;

/// What every page says first.
const BANNER: &str = "<p style=\"background:#fde68a;padding:.5em\"><strong>Demo identity provider of <code>roster dev</code>.</strong> It signs in whoever clicks, with a key made when <code>roster dev</code> started. Never use it for anything real.</p>";

/// One of the demo people.
#[derive(Debug)]
pub struct Person {
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub email: &'static str,
    /// What the IdP sends in its `groups` attribute (the wiki example maps
    /// `Engineering`, and an Entra-style object id, to its Groups).
    pub groups: &'static [&'static str],
    pub about: &'static str,
}

pub const PEOPLE: &[Person] = &[
    Person {
        given_name: "Ada",
        family_name: "Lovelace",
        email: "ada@example.com",
        groups: &["Engineering"],
        about: "in Engineering",
    },
    Person {
        given_name: "Grace",
        family_name: "Hopper",
        email: "grace@example.com",
        groups: &["Engineering", "3f2a7c1e-5b8d-4e6f-9a0b-1c2d3e4f5a6b"],
        about: "in Engineering and the admins (sent as an Entra ID group object id)",
    },
    Person {
        given_name: "Alan",
        family_name: "Turing",
        email: "alan@example.com",
        groups: &["Research"],
        about: "in Research, a group the policy does not map",
    },
];

/// A policy the demo IdP signs in to: Roster's service provider for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceProvider {
    pub namespace: String,
    pub policy: String,
    pub entity_id: String,
    pub acs_url: String,
    pub login_url: String,
}

/// The demo IdP: its key, its certificate and the policies it serves.
pub struct DemoIdp {
    /// PKCS#1 DER of the RSA key.
    key_der: Vec<u8>,
    certificate_der: Vec<u8>,
    /// Where it is reached, e.g. `http://localhost:8070`.
    pub origin: String,
    pub services: Vec<ServiceProvider>,
    /// The demo application behind the gate, if one runs.
    pub app: Option<String>,
}

impl DemoIdp {
    /// A new RSA-2048 key and a self-signed certificate for it, valid 30 days.
    pub fn generate(origin: &str) -> anyhow::Result<Self> {
        use samael::idp::{CertificateParams, IdentityProvider, KeyType, Rsa};
        let idp = IdentityProvider::generate_new(KeyType::Rsa(Rsa::Rsa2048))
            .map_err(|e| anyhow::anyhow!("generating the demo IdP's key: {e}"))?;
        let certificate = idp
            .create_certificate(&CertificateParams {
                common_name: "Roster demo IdP",
                issuer_name: "Roster demo IdP",
                days_until_expiration: 30,
            })
            .map_err(|e| anyhow::anyhow!("making the demo IdP's certificate: {e}"))?;
        let key_der = idp
            .export_private_key_der()
            .map_err(|e| anyhow::anyhow!("exporting the demo IdP's key: {e}"))?;
        Ok(Self {
            key_der,
            certificate_der: certificate.der_data().to_vec(),
            origin: origin.trim_end_matches('/').to_owned(),
            services: Vec::new(),
            app: None,
        })
    }

    pub fn entity_id(&self) -> String {
        format!("{}/demo-idp", self.origin)
    }

    pub fn sso_url(&self) -> String {
        format!("{}/sso", self.origin)
    }

    /// The certificate as PEM, as `spec.saml.idpCertificates` takes it.
    pub fn certificate_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.certificate_der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// The service provider whose entity id is `entity_id`, if served.
    fn service(&self, entity_id: &str) -> Option<&ServiceProvider> {
        self.services.iter().find(|s| s.entity_id == entity_id)
    }

    /// A Response to `request_id` for `person`, its Assertion signed: the
    /// XML, before the POST binding's base64.
    pub fn signed_response(
        &self,
        person: &Person,
        sp: &ServiceProvider,
        request_id: &str,
        now: Timestamp,
    ) -> anyhow::Result<String> {
        let assertion = assertion_xml(&Assertion {
            id: &random_id(),
            issuer: &self.entity_id(),
            person,
            sp,
            request_id,
            certificate: &base64::engine::general_purpose::STANDARD.encode(&self.certificate_der),
            now,
        });
        let signed = samael::crypto::Crypto::sign_xml(&assertion, &self.key_der)
            .context("signing the demo assertion")?;
        Ok(response_xml(
            &random_id(),
            &self.entity_id(),
            sp,
            request_id,
            now,
            strip_declaration(&signed),
        ))
    }
}

/// An XML ID: 128 random bits (an ID must not start with a digit).
fn random_id() -> String {
    format!("_{:032x}", rand::random::<u128>())
}

fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(xml, |end| rest[end + 2..].trim()),
        None => xml,
    }
}

fn instant(at: Timestamp) -> String {
    at.round(Unit::Second).unwrap_or(at).to_string()
}

/// What one assertion says.
struct Assertion<'a> {
    id: &'a str,
    issuer: &'a str,
    person: &'a Person,
    sp: &'a ServiceProvider,
    request_id: &'a str,
    /// Base64 DER, for KeyInfo.
    certificate: &'a str,
    now: Timestamp,
}

/// The unsigned Assertion with an enveloped signature template (RSA-SHA256,
/// exclusive C14N), as Okta signs them. Valid for five minutes.
fn assertion_xml(a: &Assertion) -> String {
    let issued = instant(a.now);
    let not_before = instant(a.now - SignedDuration::from_secs(60));
    let not_on_or_after = instant(a.now + SignedDuration::from_secs(300));
    let attribute = |name: &str, values: &[&str]| {
        let values: String = values
            .iter()
            .map(|v| {
                format!(r#"<saml:AttributeValue xsi:type="xs:string">{v}</saml:AttributeValue>"#)
            })
            .collect();
        format!(
            r#"<saml:Attribute Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{values}</saml:Attribute>"#
        )
    };
    let p = a.person;
    let attributes = [
        attribute("email", &[p.email]),
        attribute("firstName", &[p.given_name]),
        attribute("lastName", &[p.family_name]),
        attribute(
            "displayName",
            &[&format!("{} {}", p.given_name, p.family_name)],
        ),
        attribute("groups", p.groups),
    ]
    .concat();
    format!(
        r##"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{email}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData InResponseTo="{request_id}" NotOnOrAfter="{not_on_or_after}" Recipient="{acs}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_on_or_after}"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"##,
        id = a.id,
        issuer = a.issuer,
        certificate = a.certificate,
        email = p.email,
        request_id = a.request_id,
        acs = a.sp.acs_url,
        audience = a.sp.entity_id,
    )
}

/// The (unsigned) Response around a signed `assertion`.
fn response_xml(
    id: &str,
    issuer: &str,
    sp: &ServiceProvider,
    request_id: &str,
    now: Timestamp,
    assertion: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{acs}" InResponseTo="{request_id}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{assertion}</samlp:Response>"#,
        issued = instant(now),
        acs = sp.acs_url,
    )
}

/// What the demo IdP needs of an AuthnRequest.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    /// The service provider's entity id.
    pub issuer: String,
}

/// Decodes an HTTP-Redirect binding `SAMLRequest` (base64 of raw DEFLATE).
pub fn read_request(encoded: &str) -> Result<Request, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("not base64: {e}"))?;
    let mut xml = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(
            flate2::read::DeflateDecoder::new(compressed.as_slice()),
            64 * 1024,
        ),
        &mut xml,
    )
    .map_err(|e| format!("not DEFLATE: {e}"))?;
    let request: samael::schema::AuthnRequest = xml
        .parse()
        .map_err(|e| format!("not an AuthnRequest: {e}"))?;
    let issuer = request
        .issuer
        .and_then(|i| i.value)
        .ok_or("the AuthnRequest names no issuer")?;
    Ok(Request {
        id: request.id,
        issuer,
    })
}

/// Values the pages carry in forms: Roster's request ids (`_` and hex) and
/// RelayState tokens (hex). Anything else is refused, so nothing a browser
/// sends is written into a page unchecked.
fn plain_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    super::page(status, "Roster demo IdP", BANNER, title, body)
}

/// The demo IdP's routes: `/` (what it serves), `/sso` (the HTTP-Redirect
/// AuthnRequest: the people to choose from), `/sso/choose` (the signed
/// response, posted to the ACS by the page itself).
pub fn router(idp: Arc<DemoIdp>) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(home))
        .route("/sso", axum::routing::get(sso))
        .route("/sso/choose", axum::routing::post(choose))
        .with_state(idp)
}

async fn home(State(idp): State<Arc<DemoIdp>>) -> Response {
    let mut items = String::new();
    if let Some(app) = &idp.app {
        items.push_str(&format!(
            "<li><a href=\"{app}/\">the demo application behind Roster's SSO gate</a> (it sends you here to sign in)</li>"
        ));
    }
    for sp in &idp.services {
        items.push_str(&format!(
            "<li><a href=\"{}\">sign in to {}/{}</a> (the policy's login URL)</li>",
            sp.login_url, sp.namespace, sp.policy
        ));
    }
    page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<p>Sign-ins start at the application, which sends you here with a SAML request:</p><ul>{items}</ul>"
        ),
    )
}

#[derive(Deserialize)]
struct SsoQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn sso(State(idp): State<Arc<DemoIdp>>, Query(query): Query<SsoQuery>) -> Response {
    let Some(encoded) = query.saml_request else {
        return home(State(idp)).await;
    };
    let request = match read_request(&encoded) {
        Ok(request) => request,
        Err(reason) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &format!(
                    "<p>The SAML request could not be read: {}</p>",
                    super::escape(&reason)
                ),
            );
        }
    };
    let relay = query.relay_state.unwrap_or_default();
    if !plain_token(&request.id) || !(relay.is_empty() || plain_token(&relay)) {
        return page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>The request id or RelayState is not one Roster makes.</p>",
        );
    }
    let Some(sp) = idp.service(&request.issuer) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "<p>This demo IdP signs in only to the policies <code>roster dev</code> set up.</p>",
        );
    };
    let people: String = PEOPLE
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "<form method=\"post\" action=\"/sso/choose\"><input type=\"hidden\" name=\"person\" value=\"{i}\"><input type=\"hidden\" name=\"sp\" value=\"{sp}\"><input type=\"hidden\" name=\"request\" value=\"{request}\"><input type=\"hidden\" name=\"relay\" value=\"{relay}\"><button id=\"person-{i}\">{given} {family}</button> {email}, {about}</form>",
                sp = sp.entity_id,
                request = request.id,
                given = p.given_name,
                family = p.family_name,
                email = p.email,
                about = p.about,
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Who are you?",
        &format!(
            "<p>Signing in to <code>{}/{}</code>. Choose a demo person:</p>{people}",
            sp.namespace, sp.policy
        ),
    )
}

#[derive(Deserialize)]
struct Choice {
    person: usize,
    sp: String,
    request: String,
    relay: String,
}

async fn choose(State(idp): State<Arc<DemoIdp>>, Form(choice): Form<Choice>) -> Response {
    let (Some(person), Some(sp)) = (PEOPLE.get(choice.person), idp.service(&choice.sp)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>No such person or application.</p>",
        );
    };
    if !plain_token(&choice.request) || !(choice.relay.is_empty() || plain_token(&choice.relay)) {
        return page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>Not a request Roster made.</p>",
        );
    }
    let sp = sp.clone();
    let signer = idp.clone();
    let request = choice.request.clone();
    let signed = tokio::task::spawn_blocking(move || {
        signer.signed_response(person, &sp, &request, Timestamp::now())
    })
    .await;
    let xml = match signed {
        Ok(Ok(xml)) => xml,
        Ok(Err(error)) => {
            tracing::warn!(error = format!("{error:#}"), "demo IdP: signing failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Signing failed",
                "<p>See the log of <code>roster dev</code>.</p>",
            );
        }
        Err(error) => {
            tracing::warn!(%error, "demo IdP: the signing task failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Signing failed",
                "<p>See the log of <code>roster dev</code>.</p>",
            );
        }
    };
    let acs = idp
        .service(&choice.sp)
        .map(|s| s.acs_url.clone())
        .unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    page(
        StatusCode::OK,
        &format!("Signing in as {} {}", person.given_name, person.family_name),
        &format!(
            "<p>A SAML response for {email}, signed by this demo IdP, is being posted to Roster's ACS, <code>{acs}</code>.</p><form method=\"post\" action=\"{acs}\"><input type=\"hidden\" name=\"SAMLResponse\" value=\"{encoded}\"><input type=\"hidden\" name=\"RelayState\" value=\"{relay}\"><button id=\"continue\">Continue</button></form><script>setTimeout(function () {{ document.forms[0].submit(); }}, 1500);</script>",
            email = person.email,
            relay = choice.relay,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProvisioningPolicy;
    use crate::saml::trust::Trust;

    const ORIGIN: &str = "http://localhost:8080";

    /// The wiki example, trusting `idp` as `roster dev` makes it.
    fn wiki_trusting(idp: &DemoIdp) -> ProvisioningPolicy {
        let text = include_str!("../../examples/20-jit-policy.yaml");
        let policy = serde_saphyr::from_multiple::<serde_json::Value>(text)
            .unwrap()
            .into_iter()
            .find(|d| d["kind"] == "ProvisioningPolicy")
            .unwrap();
        let mut policy: ProvisioningPolicy = serde_json::from_value(policy).unwrap();
        let saml = policy.spec.saml.as_mut().unwrap();
        saml.idp_entity_id = Some(idp.entity_id());
        saml.idp_sso_url = Some(idp.sso_url());
        saml.idp_certificates = vec![idp.certificate_pem()];
        policy
    }

    #[test]
    fn a_chosen_person_gets_a_response_roster_verifies() {
        let mut idp = DemoIdp::generate("http://localhost:8070").unwrap();
        let policy = wiki_trusting(&idp);
        let trust = Trust::resolve(&policy, ORIGIN).unwrap();
        idp.services.push(ServiceProvider {
            namespace: "roster-demo".into(),
            policy: "wiki".into(),
            entity_id: trust.sp_entity_id.clone(),
            acs_url: trust.acs_url.clone(),
            login_url: trust.login_url.clone(),
        });
        let grace = &PEOPLE[1];
        let xml = idp
            .signed_response(grace, &idp.services[0], "_request1", Timestamp::now())
            .unwrap();
        crate::saml::checks::precheck(&xml, &trust.acs_url).unwrap();
        let (assertion, _) =
            crate::saml::verify::verify(&trust, &xml, Some("_request1"), chrono::Utc::now())
                .unwrap();
        let name_id = assertion.subject.unwrap().name_id.unwrap().value;
        assert_eq!(name_id, "grace@example.com");

        // Another key's response, or an answer to another request, is refused.
        let other = DemoIdp::generate("http://localhost:8070").unwrap();
        let forged = other
            .signed_response(grace, &idp.services[0], "_request1", Timestamp::now())
            .unwrap();
        assert!(
            crate::saml::verify::verify(&trust, &forged, Some("_request1"), chrono::Utc::now())
                .is_err()
        );
        assert!(
            crate::saml::verify::verify(&trust, &xml, Some("_request2"), chrono::Utc::now())
                .is_err()
        );
    }

    #[test]
    fn the_redirect_binding_request_is_read() {
        let xml = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_abc" Version="2.0" IssueInstant="2026-12-02T10:00:00Z"><saml:Issuer>http://localhost:8080/saml/roster-demo/wiki/metadata</saml:Issuer></samlp:AuthnRequest>"#;
        let mut deflated = Vec::new();
        std::io::Write::write_all(
            &mut flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default()),
            xml.as_bytes(),
        )
        .unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&deflated);
        assert_eq!(
            read_request(&encoded),
            Ok(Request {
                id: "_abc".into(),
                issuer: "http://localhost:8080/saml/roster-demo/wiki/metadata".into()
            })
        );
        assert!(read_request("not base64!").is_err());
    }

    #[test]
    fn only_plain_tokens_are_carried_into_pages() {
        assert!(plain_token("_0123abcdef"));
        assert!(!plain_token(""));
        assert!(!plain_token("\"><script>"));
        assert!(!plain_token(&"a".repeat(129)));
    }
}
