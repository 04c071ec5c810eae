//! A SAML identity provider for tests: an RSA key and certificate made with
//! `openssl`, responses built here and signed at test time by `xmlsec1` or,
//! independently, by Python's `signxml`; and a browser-like client for
//! Roster's SAML endpoints.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{Duration, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use roster::api::{
    ConsumedAssertion, Group, GroupMemberSlice, ProvisioningPolicy, User, UserNameClaim,
};
use roster::server::{self, Readiness, ServerArgs};

use super::TestEnv;

/// The bearer token of the Scim policies [`serve`] creates.
pub const SCIM_TOKEN: &str = "saml-test-scim-token-0123456789";

/// The origin every test replica advertises, as behind one load balancer.
pub const PUBLIC_URL: &str = "https://roster.test";

/// An identity provider: its entity ID and signing key.
pub struct Idp {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    pub cert_pem: String,
    pub entity_id: String,
}

impl Idp {
    /// A fresh RSA-2048 key and self-signed certificate.
    pub fn new(entity_id: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_owned();
        let key = path.join("idp.key");
        let cert = path.join("idp.crt");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=test-idp"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(status.status.success(), "openssl: {status:?}");
        let cert_pem = std::fs::read_to_string(&cert).unwrap();
        Self {
            _dir: dir,
            dir: path,
            key,
            cert,
            cert_pem,
            entity_id: entity_id.to_owned(),
        }
    }

    /// A policy's SAML trust in this IdP: its entity ID and certificate,
    /// the default attribute mapping, 60 s of skew, SP-initiated logins only,
    /// no redirect target.
    pub fn trust(&self) -> roster::api::SamlTrust {
        roster::api::SamlTrust {
            idp_metadata: None,
            idp_metadata_url: None,
            idp_metadata_config_map_ref: None,
            idp_entity_id: Some(self.entity_id.clone()),
            idp_sso_url: Some("https://idp.example.com/sso/saml".into()),
            idp_certificates: vec![self.cert_pem.clone()],
            sp_entity_id: None,
            attribute_mapping: Default::default(),
            clock_skew_seconds: 60,
            allow_idp_initiated: false,
            allowed_redirect_urls: Vec::new(),
            session_lifetime_seconds: 900,
        }
    }

    /// This IdP's SAML metadata: its entity ID, its signing certificate and
    /// its SSO URL, as an IdP publishes them.
    pub fn metadata(&self) -> String {
        let body: String = self
            .cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso/saml"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
            self.entity_id
        )
    }

    /// An Okta-like IdP.
    pub fn okta() -> Self {
        Self::new("http://www.okta.com/exk1roster")
    }

    /// An Entra-like IdP.
    pub fn entra() -> Self {
        Self::new("https://sts.windows.net/8c2b4f9e-tenant/")
    }
}

/// Which parts are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    /// Response and Assertion (Okta's default).
    Both,
    /// The Assertion only (Entra ID's default).
    Assertion,
    /// The Response only.
    Response,
    /// Nothing.
    Nothing,
}

/// Who signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    Xmlsec1,
    Signxml,
}

/// Everything a test may vary in a response. Times are offsets from now.
#[derive(Clone, Debug)]
pub struct Response {
    pub issuer: String,
    pub audience: String,
    pub recipient: String,
    pub destination: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub in_response_to: Option<String>,
    pub assertion_id: String,
    pub issued: i64,
    pub not_before: i64,
    pub not_on_or_after: i64,
    pub conditions: bool,
    pub audience_restriction: bool,
    pub attributes: Vec<(String, Vec<String>)>,
    pub signed: Signed,
    pub signer: Signer,
    pub sha1: bool,
}

impl Response {
    /// A response of `idp` for the SP at `server`, for `name_id`.
    pub fn new(idp: &Idp, server: &SamlServer, name_id: &str) -> Self {
        Self {
            issuer: idp.entity_id.clone(),
            audience: server.entity_id(),
            recipient: server.acs_url(),
            destination: Some(server.acs_url()),
            name_id: name_id.to_owned(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
            in_response_to: None,
            assertion_id: format!("_a{:032x}", rand::random::<u128>()),
            issued: 0,
            not_before: -60,
            not_on_or_after: 300,
            conditions: true,
            audience_restriction: true,
            attributes: Vec::new(),
            signed: Signed::Both,
            signer: Signer::Xmlsec1,
            sha1: false,
        }
    }

    pub fn attribute(mut self, name: &str, values: &[&str]) -> Self {
        self.attributes.push((
            name.to_owned(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }

    pub fn answering(mut self, request_id: &str) -> Self {
        self.in_response_to = Some(request_id.to_owned());
        self
    }

    /// The Okta-style profile: email NameID, short attribute names.
    pub fn okta(idp: &Idp, server: &SamlServer, email: &str, first: &str, last: &str) -> Self {
        Self::new(idp, server, email)
            .attribute("email", &[email])
            .attribute("firstName", &[first])
            .attribute("lastName", &[last])
    }

    /// The Entra-style profile: UPN NameID, claim URIs, assertion-only signature.
    pub fn entra(idp: &Idp, server: &SamlServer, upn: &str, object_id: &str) -> Self {
        let mut r = Self::new(idp, server, upn)
            .attribute(OBJECT_ID, &[object_id])
            .attribute(
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                &[upn],
            )
            .attribute(
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
                &["Bob"],
            )
            .attribute(
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
                &["Builder"],
            )
            .attribute(
                "http://schemas.microsoft.com/identity/claims/displayname",
                &["Bob Builder"],
            );
        r.name_id_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into();
        r.signed = Signed::Assertion;
        r
    }

    fn times(&self) -> (String, String, String) {
        let now = Utc::now();
        let at = |offset: i64| {
            (now + Duration::seconds(offset)).to_rfc3339_opts(SecondsFormat::Secs, true)
        };
        (
            at(self.issued),
            at(self.not_before),
            at(self.not_on_or_after),
        )
    }

    fn signature_template(&self, id: &str) -> String {
        let (method, digest) = if self.sha1 {
            (
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
        } else {
            (
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmlenc#sha256",
            )
        };
        match self.signer {
            Signer::Signxml => {
                r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="placeholder"></ds:Signature>"#.to_owned()
            }
            Signer::Xmlsec1 => format!(
                r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{method}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##
            ),
        }
    }

    /// The Assertion, unsigned, with a signature template if it is to be signed.
    pub fn assertion_xml(&self) -> String {
        let (issued, not_before, not_on_or_after) = self.times();
        let template = if matches!(self.signed, Signed::Both | Signed::Assertion) {
            self.signature_template(&self.assertion_id)
        } else {
            String::new()
        };
        let in_response_to = self
            .in_response_to
            .as_ref()
            .map(|id| format!(r#" InResponseTo="{id}""#))
            .unwrap_or_default();
        let audience = if self.audience_restriction {
            format!(
                "<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
                self.audience
            )
        } else {
            String::new()
        };
        let conditions = if self.conditions {
            format!(
                r#"<saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_on_or_after}">{audience}</saml:Conditions>"#
            )
        } else {
            String::new()
        };
        let attributes: String = self
            .attributes
            .iter()
            .map(|(name, values)| {
                let values: String = values
                    .iter()
                    .map(|v| format!(r#"<saml:AttributeValue xsi:type="xs:string">{v}</saml:AttributeValue>"#))
                    .collect();
                format!(
                    r#"<saml:Attribute Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified">{values}</saml:Attribute>"#
                )
            })
            .collect();
        let statement = if attributes.is_empty() {
            String::new()
        } else {
            format!("<saml:AttributeStatement>{attributes}</saml:AttributeStatement>")
        };
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer>{template}<saml:Subject><saml:NameID Format="{format}">{name_id}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData{in_response_to} NotOnOrAfter="{not_on_or_after}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject>{conditions}<saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>{statement}</saml:Assertion>"#,
            id = self.assertion_id,
            issuer = self.issuer,
            format = self.name_id_format,
            name_id = self.name_id,
            recipient = self.recipient,
        )
    }

    /// The Response around `assertion` (already signed if it is to be).
    pub fn response_xml(&self, assertion: &str, response_id: &str) -> String {
        let (issued, _, _) = self.times();
        let template = if matches!(self.signed, Signed::Both | Signed::Response) {
            self.signature_template(response_id)
        } else {
            String::new()
        };
        let destination = self
            .destination
            .as_ref()
            .map(|d| format!(r#" Destination="{d}""#))
            .unwrap_or_default();
        let in_response_to = self
            .in_response_to
            .as_ref()
            .map(|id| format!(r#" InResponseTo="{id}""#))
            .unwrap_or_default();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{response_id}" Version="2.0" IssueInstant="{issued}"{destination}{in_response_to}><saml:Issuer>{issuer}</saml:Issuer>{template}<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{assertion}</samlp:Response>"#,
            issuer = self.issuer,
        )
    }

    /// The signed response XML.
    pub fn sign(&self, idp: &Idp) -> String {
        let mut assertion = self.assertion_xml();
        if matches!(self.signed, Signed::Both | Signed::Assertion) {
            assertion = strip_declaration(&sign(idp, self.signer, &assertion, ASSERTION_ID_ATTR));
        }
        let response_id = format!("_r{:032x}", rand::random::<u128>());
        let response = self.response_xml(&assertion, &response_id);
        if matches!(self.signed, Signed::Both | Signed::Response) {
            sign(idp, self.signer, &response, RESPONSE_ID_ATTR)
        } else {
            response
        }
    }
}

pub const OBJECT_ID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
const ASSERTION_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";
const RESPONSE_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:protocol:Response";

fn strip_declaration(xml: &str) -> String {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").unwrap() + 2..].trim().to_owned(),
        None => xml.to_owned(),
    }
}

/// Signs the first signature template of `xml` (the root's).
fn sign(idp: &Idp, signer: Signer, xml: &str, id_attr: &str) -> String {
    let input = idp.dir.join(format!("in-{:x}.xml", rand::random::<u64>()));
    let output = idp.dir.join(format!("out-{:x}.xml", rand::random::<u64>()));
    std::fs::write(&input, xml).unwrap();
    let result = match signer {
        Signer::Xmlsec1 => Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!("{},{}", idp.key.display(), idp.cert.display()))
            .arg("--id-attr:ID")
            .arg(id_attr)
            .arg("--output")
            .arg(&output)
            .arg(&input)
            .output()
            .expect("xmlsec1 runs"),
        Signer::Signxml => Command::new(python())
            .arg("-c")
            .arg(SIGNXML)
            .args([&input, &output, &idp.key, &idp.cert])
            .output()
            .expect("python runs"),
    };
    assert!(
        result.status.success(),
        "{signer:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read_to_string(&output).unwrap()
}

fn python() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/roster/venv/bin/python"))
        .filter(|p| p.exists());
    venv.unwrap_or_else(|| PathBuf::from("python3"))
}

/// signxml signs the root element at its placeholder, RSA-SHA256, exclusive c14n.
const SIGNXML: &str = r##"
import sys
from lxml import etree
from signxml import XMLSigner, methods
src, dst, key, cert = sys.argv[1:5]
root = etree.parse(src).getroot()
signer = XMLSigner(method=methods.enveloped, signature_algorithm="rsa-sha256",
                   digest_algorithm="sha256", c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
signed = signer.sign(root, key=open(key, "rb").read(), cert=open(cert).read(),
                     reference_uri="#" + root.get("ID"))
open(dst, "wb").write(etree.tostring(signed))
"##;

/// A Roster replica serving the SAML routes, and a browser without a cookie jar.
pub struct SamlServer {
    pub origin: String,
    pub namespace: String,
    pub policy: String,
    http: reqwest::Client,
}

/// A reply: status, headers, body text.
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The session cookie set, whatever its policy (`roster_session.<ns>.<policy>`).
    pub fn session_cookie(&self) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with("roster_session."))
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }
}

/// A started SP-initiated login: what the browser holds.
pub struct Started {
    pub request_id: String,
    pub relay_state: String,
    pub cookie: String,
    pub location: String,
}

/// Serves Roster's router on a free port, advertising [`PUBLIC_URL`].
pub async fn start(env: &TestEnv, policy: &str) -> SamlServer {
    start_with(env.client.clone(), env, policy).await
}

/// [`start`], talking to the API server with `client`; no policy cache
/// runs, so every login reads its policy from the API.
pub async fn start_with(client: kube::Client, env: &TestEnv, policy: &str) -> SamlServer {
    let args = ServerArgs {
        public_url: Some(PUBLIC_URL.to_owned()),
        ..ServerArgs::default()
    };
    start_with_args(client, env, policy, args).await
}

/// [`start`] with the server's options `args` (which must keep
/// [`PUBLIC_URL`] as the public URL).
pub async fn start_with_args(
    client: kube::Client,
    env: &TestEnv,
    policy: &str,
    args: ServerArgs,
) -> SamlServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let readiness = Readiness::default();
    readiness.set_ready();
    let index = roster::directory::membership::MembershipIndex::default();
    let router = server::router(client, index, &args, readiness);
    tokio::spawn(server::serve(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    SamlServer::at(&origin, &env.namespace, policy)
}

/// Creates `policy` (and the Secret a Scim policy names) and serves it.
pub async fn serve(env: &TestEnv, policy: ProvisioningPolicy) -> SamlServer {
    create_policy(env, &policy).await;
    start(env, &policy.name_any()).await
}

/// Creates `policy`, and the Secret with [`SCIM_TOKEN`] a Scim policy names.
pub async fn create_policy(env: &TestEnv, policy: &ProvisioningPolicy) {
    if let Some(scim) = &policy.spec.scim {
        let mut secret = Secret::default();
        secret.metadata.name = Some(scim.token_secret_ref.name.clone());
        secret.string_data = Some([("token-1".to_owned(), SCIM_TOKEN.to_owned())].into());
        env.api::<Secret>()
            .create(&Default::default(), &secret)
            .await
            .unwrap();
    }
    env.api::<ProvisioningPolicy>()
        .create(&Default::default(), policy)
        .await
        .expect("creating the policy");
}

impl SamlServer {
    /// The SAML endpoints of `namespace/policy` on a server at `origin`.
    pub fn at(origin: &str, namespace: &str, policy: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn path(&self, last: &str) -> String {
        format!("/saml/{}/{}/{last}", self.namespace, self.policy)
    }

    pub fn acs_url(&self) -> String {
        format!("{PUBLIC_URL}{}", self.path("acs"))
    }

    pub fn entity_id(&self) -> String {
        format!("{PUBLIC_URL}{}", self.path("metadata"))
    }

    pub async fn get(&self, last: &str) -> Reply {
        let response = self
            .http
            .get(format!("{}{}", self.origin, self.path(last)))
            .send()
            .await
            .expect("the server answers");
        reply(response).await
    }

    /// GET /login: the AuthnRequest's ID and RelayState, read from the
    /// browser's request cookie (its claims are readable, only signed).
    pub async fn login(&self, redirect: Option<&str>) -> Started {
        let mut request = self
            .http
            .get(format!("{}{}", self.origin, self.path("login")));
        if let Some(redirect) = redirect {
            request = request.query(&[("redirect", redirect)]);
        }
        let reply = reply(request.send().await.unwrap()).await;
        assert_eq!(reply.status, 303, "login: {}", reply.body);
        let set = reply
            .cookie("roster_saml_request")
            .expect("a request cookie");
        let cookie = set.split(';').next().unwrap().to_owned();
        let token = cookie.split_once('=').unwrap().1;
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split_once('.').unwrap().0)
                .unwrap(),
        )
        .unwrap();
        Started {
            request_id: claims["id"].as_str().unwrap().to_owned(),
            relay_state: claims["relay"].as_str().unwrap().to_owned(),
            cookie,
            location: reply.location().unwrap().to_owned(),
        }
    }

    /// POSTs `xml` to the ACS as the browser would.
    pub async fn post(&self, xml: &str, relay_state: Option<&str>, cookie: Option<&str>) -> Reply {
        self.post_raw(&STANDARD.encode(xml), relay_state, cookie)
            .await
    }

    pub async fn post_raw(
        &self,
        encoded: &str,
        relay_state: Option<&str>,
        cookie: Option<&str>,
    ) -> Reply {
        let mut form = vec![("SAMLResponse", encoded.to_owned())];
        if let Some(relay) = relay_state {
            form.push(("RelayState", relay.to_owned()));
        }
        let mut request = self
            .http
            .post(format!("{}{}", self.origin, self.path("acs")))
            .form(&form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        reply(request.send().await.expect("the server answers")).await
    }

    /// An SP-initiated login answered by `response`: login, sign, post.
    pub async fn sp_login(&self, idp: &Idp, response: Response) -> Reply {
        let started = self.login(None).await;
        let xml = response.answering(&started.request_id).sign(idp);
        self.post(&xml, Some(&started.relay_state), Some(&started.cookie))
            .await
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    Reply {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Every object a login could write in the namespace, with its
/// resourceVersion: equal snapshots mean nothing was written.
pub async fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = Vec::new();
    let lp = ListParams::default();
    for u in env.api::<User>().list(&lp).await.unwrap() {
        out.push(format!(
            "User/{}@{}",
            u.name_any(),
            u.resource_version().unwrap()
        ));
    }
    for c in env.api::<UserNameClaim>().list(&lp).await.unwrap() {
        out.push(format!(
            "Claim/{}@{}",
            c.name_any(),
            c.resource_version().unwrap()
        ));
    }
    for c in env.api::<ConsumedAssertion>().list(&lp).await.unwrap() {
        out.push(format!(
            "Consumed/{}@{}",
            c.name_any(),
            c.resource_version().unwrap()
        ));
    }
    for g in env.api::<Group>().list(&lp).await.unwrap() {
        out.push(format!(
            "Group/{}@{}",
            g.name_any(),
            g.resource_version().unwrap()
        ));
    }
    for s in env.api::<GroupMemberSlice>().list(&lp).await.unwrap() {
        out.push(format!(
            "Slice/{}@{}",
            s.name_any(),
            s.resource_version().unwrap()
        ));
    }
    out.sort();
    out
}

/// The users of the namespace.
pub async fn users(env: &TestEnv) -> Vec<User> {
    let api: Api<User> = env.api();
    api.list(&ListParams::default()).await.unwrap().items
}
