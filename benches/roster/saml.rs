//! SAML ACS throughput: IdP-initiated logins to a Jit policy, each with its
//! own assertion (they are single-use), all signed by `xmlsec1` before the
//! clock starts, as tests/integration/support/saml.rs signs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use roster::api::{
    AttributeMapping, ConsumedAssertion, ConsumedAssertionSpec, ConsumedKind, JitOptions, Mode,
    ProvisioningPolicy, ProvisioningPolicySpec, SamlTrust,
};
use serde_json::{Value, json};

use crate::common::{Roster, Sample, namespace, nowhere, round, row, run};

const POLICY: &str = "sso";
const ISSUER: &str = "http://www.okta.com/exkbench";

/// An IdP key and certificate in a temporary directory.
pub struct Idp {
    dir: tempfile::TempDir,
    key: PathBuf,
    pub cert: PathBuf,
}

impl Idp {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("idp.key");
        let cert = dir.path().join("idp.crt");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bench-idp",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl: {out:?}");
        Self { dir, key, cert }
    }

    /// `xml` with its root's signature template signed.
    async fn sign(&self, xml: String, n: usize) -> String {
        let input = self.dir.path().join(format!("in-{n}.xml"));
        let output = self.dir.path().join(format!("out-{n}.xml"));
        tokio::fs::write(&input, xml).await.unwrap();
        let result = tokio::process::Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!("{},{}", self.key.display(), self.cert.display()))
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                "--output",
            ])
            .arg(&output)
            .arg(&input)
            .output()
            .await
            .expect("xmlsec1 runs");
        assert!(
            result.status.success(),
            "xmlsec1: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let signed = tokio::fs::read_to_string(&output).await.unwrap();
        let _ = tokio::fs::remove_file(&input).await;
        let _ = tokio::fs::remove_file(&output).await;
        strip_declaration(&signed)
    }
}

fn strip_declaration(xml: &str) -> String {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").unwrap() + 2..].trim().to_owned(),
        None => xml.to_owned(),
    }
}

/// An unsigned assertion for `email` with a signature template, valid for
/// ten minutes (Entra ID's shape: the assertion is signed, the response not).
fn assertion(acs: &str, audience: &str, email: &str, n: usize) -> String {
    let now = chrono::Utc::now();
    let at = |s: i64| {
        (now + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (issued, before, after) = (at(0), at(-60), at(600));
    let id = format!("_bench{n:08}{:016x}", rand::random::<u64>());
    let signature = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##
    );
    let attribute = |name: &str, value: &str| {
        format!(
            r#"<saml:Attribute Name="{name}"><saml:AttributeValue xsi:type="xs:string">{value}</saml:AttributeValue></saml:Attribute>"#
        )
    };
    let attributes = [
        attribute("email", email),
        attribute("firstName", "Bench"),
        attribute("lastName", "User"),
    ]
    .concat();
    format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{ISSUER}</saml:Issuer>{signature}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{email}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{after}" Recipient="{acs}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{before}" NotOnOrAfter="{after}"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"#
    )
}

fn response(acs: &str, signed_assertion: &str) -> String {
    let issued = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let id = format!("_r{:032x}", rand::random::<u128>());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{acs}"><saml:Issuer>{ISSUER}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{signed_assertion}</samlp:Response>"#
    )
}

async fn jit_policy(client: &kube::Client, ns: &str, cert: &Path) {
    namespace(client, ns).await;
    let policy = ProvisioningPolicy::new(
        POLICY,
        ProvisioningPolicySpec {
            mode: Mode::Jit,
            application: nowhere(POLICY),
            scim: None,
            saml: Some(SamlTrust {
                idp_metadata: None,
                idp_metadata_url: None,
                idp_metadata_config_map_ref: None,
                idp_entity_id: Some(ISSUER.into()),
                idp_sso_url: Some("https://example.okta.com/app/sso/saml".into()),
                idp_certificates: vec![std::fs::read_to_string(cert).unwrap()],
                sp_entity_id: None,
                attribute_mapping: AttributeMapping::default(),
                clock_skew_seconds: 120,
                allow_idp_initiated: true,
                allowed_redirect_urls: Vec::new(),
                session_lifetime_seconds: 3600,
            }),
            jit: Some(JitOptions::default()),
            access: None,
            kubernetes: None,
            circuit_breaker: Default::default(),
        },
    );
    Api::<ProvisioningPolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating the SAML bench policy");
}

/// Signs one response per login: `people` first logins, then `logins` of
/// those people again.
async fn sign_all(
    idp: &Idp,
    acs: &str,
    audience: &str,
    people: usize,
    logins: usize,
) -> Vec<String> {
    futures::stream::iter(0..people + logins)
        .map(|n| {
            let email = format!("person{}@example.com", n % people);
            async move {
                let signed = idp.sign(assertion(acs, audience, &email, n), n).await;
                STANDARD.encode(response(acs, &signed))
            }
        })
        .buffered(2)
        .collect()
        .await
}

/// `runs` repetitions of [`acs_once`], each in its own namespace with its
/// own IdP key. A p99 of 1000 logins on a shared two-core machine moves by
/// several milliseconds from run to run: the rows are the run whose
/// known-user p99 is the median, and every run's figures are kept.
pub async fn acs(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    people: usize,
    logins: usize,
    concurrency: usize,
    runs: usize,
) -> Value {
    let mut all = Vec::new();
    for run in 0..runs.max(1) {
        let ns = format!("bench-saml-r{run}");
        all.push(acs_once(client, roster, http, &ns, people, logins, concurrency).await);
    }
    let p99 = |r: &Value| r["known_users"]["p99_ms"].as_f64().unwrap_or(f64::MAX);
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|a, b| p99(&all[*a]).total_cmp(&p99(&all[*b])));
    let mut median = all[order[order.len() / 2]].clone();
    median["runs"] = json!(all.len());
    median["known_p99_ms_by_run"] = json!(all.iter().map(p99).collect::<Vec<_>>());
    median["bare_write_p99_ms_by_run"] = json!(
        all.iter()
            .map(|r| r["one_api_write"]["p99_ms"].clone())
            .collect::<Vec<_>>()
    );
    median["cpu_ms_per_known_login_by_run"] = json!(
        all.iter()
            .map(|r| r["cpu_ms_per_known_login"].clone())
            .collect::<Vec<_>>()
    );
    median
}

async fn acs_once(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    ns: &str,
    people: usize,
    logins: usize,
    concurrency: usize,
) -> Value {
    let idp = Idp::new();
    jit_policy(client, ns, &idp.cert).await;
    let acs = format!("{}/saml/{ns}/{POLICY}/acs", roster.base);
    let audience = format!("{}/saml/{ns}/{POLICY}/metadata", roster.base);
    let signed = sign_all(&idp, &acs, &audience, people, logins).await;
    let (first, again) = signed.split_at(people);
    let post = |encoded: &String| {
        let form = [("SAMLResponse", encoded.clone())];
        let request = http.post(&acs).form(&form);
        async move {
            let reply = request.send().await.expect("the ACS answers");
            let status = reply.status();
            assert!(
                status == 200 || status == 303,
                "ACS: {status} {}",
                reply.text().await.unwrap_or_default()
            );
        }
    };
    let pid = roster.pid();
    let first_logins: Sample = run(first.len(), concurrency, |i| post(&first[i])).await;
    let before = crate::common::cpu_seconds(pid);
    let known: Sample = run(again.len(), concurrency, |i| post(&again[i])).await;
    let cpu_ms = (crate::common::cpu_seconds(pid) - before) / again.len().max(1) as f64 * 1000.0;
    // The floor: a login consumes its assertion id with one API write (what
    // makes a replay fail on every replica). The same writes, bare, at the
    // same concurrency.
    let consumed: Api<ConsumedAssertion> = Api::namespaced(client.clone(), ns);
    let writes: Sample = run(again.len(), concurrency, |i| {
        let api = consumed.clone();
        async move {
            let object = ConsumedAssertion::new(
                &format!("bench-floor-{i}"),
                ConsumedAssertionSpec {
                    policy: POLICY.into(),
                    kind: ConsumedKind::Assertion,
                    expires_at: "2000-01-01T00:00:00Z".into(),
                },
            );
            api.create(&PostParams::default(), &object)
                .await
                .expect("a bare ConsumedAssertion create");
        }
    })
    .await;
    println!(
        "SAML ACS (c={concurrency}): first logins {:.0}/s p99 {:.1} ms; known users {:.0}/s p99 {:.1} ms, {cpu_ms:.2} ms CPU/login; one bare API write {:.0}/s p99 {:.1} ms",
        first_logins.throughput(),
        first_logins.percentile(0.99),
        known.throughput(),
        known.percentile(0.99),
        writes.throughput(),
        writes.percentile(0.99),
    );
    json!({
        "concurrency": concurrency,
        "first_logins": row("ACS first login (JIT create)", &first_logins),
        "known_users": row("ACS login of a known user", &known),
        "cpu_ms_per_known_login": round(cpu_ms, 2),
        "one_api_write": row("bare ConsumedAssertion create", &writes),
        "target_logins_per_s": 200,
        "target_p99_ms": 20,
    })
}
