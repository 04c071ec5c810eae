//! The SP metadata an administrator gives the IdP: entity ID and ACS URL
//! (HTTP-POST), and that assertions must be signed.

use quick_xml::escape::escape;

use super::trust::SpUrls;

/// The SAML 2.0 metadata of this service provider for one policy.
pub fn document(urls: &SpUrls) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity = escape(urls.entity_id.as_str()),
        acs = escape(urls.acs_url.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_entity_and_the_post_acs() {
        let urls = SpUrls {
            entity_id: "https://r/saml/ns/crm/metadata".into(),
            acs_url: "https://r/saml/ns/crm/acs?a=1&b=2".into(),
            metadata_url: "https://r/saml/ns/crm/metadata".into(),
            login_url: "https://r/saml/ns/crm/login".into(),
        };
        let xml = document(&urls);
        assert!(xml.contains(r#"entityID="https://r/saml/ns/crm/metadata""#));
        assert!(xml.contains(r#"Location="https://r/saml/ns/crm/acs?a=1&amp;b=2""#));
        assert!(xml.contains(r#"WantAssertionsSigned="true""#));
        let parsed: samael::metadata::EntityDescriptor = xml.parse().expect("samael reads it");
        assert_eq!(
            parsed.entity_id.as_deref(),
            Some("https://r/saml/ns/crm/metadata")
        );
    }
}
