//! Throwaway PKI for a local control plane: a serving certificate for the API
//! server, a client CA with an admin certificate, and a service-account key.
//! Keys are PKCS#8, which both the API server and rustls read.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::Error;

/// PEM-encoded material, written to the control plane's directory.
pub(super) struct Pki {
    pub serving_ca: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub client_ca: String,
    pub admin_cert: String,
    pub admin_key: String,
    pub service_account_key: String,
    pub service_account_public_key: String,
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

pub(super) fn generate() -> Result<Pki, Error> {
    let pki = |e: rcgen::Error| Error::Pki(e.to_string());

    let serving_ca_key = KeyPair::generate().map_err(pki)?;
    let serving_ca_params = ca_params("roster-local-serving-ca");
    let serving_ca = serving_ca_params
        .self_signed(&serving_ca_key)
        .map_err(pki)?;
    let serving_issuer = Issuer::new(serving_ca_params, serving_ca_key);

    let serving_key = KeyPair::generate().map_err(pki)?;
    let mut serving = CertificateParams::new(vec!["localhost".to_owned()]).map_err(pki)?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &serving_issuer)
        .map_err(pki)?;

    let client_ca_key = KeyPair::generate().map_err(pki)?;
    let client_ca_params = ca_params("roster-local-client-ca");
    let client_ca = client_ca_params.self_signed(&client_ca_key).map_err(pki)?;
    let client_issuer = Issuer::new(client_ca_params, client_ca_key);

    // system:masters is the group the API server's RBAC always allows.
    let admin_key = KeyPair::generate().map_err(pki)?;
    let mut admin = CertificateParams::default();
    admin.distinguished_name = name("admin", Some("system:masters"));
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &client_issuer).map_err(pki)?;

    let service_account_key = KeyPair::generate().map_err(pki)?;

    Ok(Pki {
        serving_ca: serving_ca.pem(),
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        client_ca: client_ca.pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
        service_account_key: service_account_key.serialize_pem(),
        service_account_public_key: service_account_key.public_key_pem(),
    })
}
