//! What an XML signature in a SAML response may contain, checked before
//! xmlsec runs.
//!
//! xmlsec computes every Reference's digest, transforms included, before it
//! checks the SignatureValue, and samael repeats that per trusted
//! certificate. An XSLT or XPath transform costs exponential or cubic time,
//! so an unauthenticated POST with a garbage signature could pin a core for
//! minutes. IdPs sign with the enveloped-signature transform and C14N only,
//! and reference the element the signature sits in: everything else is
//! refused here, before any digest is computed.

/// The XML-DSig namespace.
pub const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
/// The exclusive C14N namespace (its `InclusiveNamespaces` element).
pub const EXC_C14N_NS: &[u8] = b"http://www.w3.org/2001/10/xml-exc-c14n#";

/// The only transforms and canonicalization methods accepted: the enveloped
/// signature, and inclusive (1.0, 1.1) and exclusive C14N with or without
/// comments, as Okta, Entra ID, ADFS, OneLogin and Keycloak use them.
const ALLOWED_ALGORITHMS: [&str; 7] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
];

/// Whether `algorithm` may be a Transform or a CanonicalizationMethod.
pub fn is_allowed_transform(algorithm: &str) -> bool {
    ALLOWED_ALGORITHMS.contains(&algorithm)
}

/// The XML-DSig elements a SAML signature is made of. Anything else in the
/// namespace (Object, Manifest, RetrievalMethod, XPath, SPKIData, …) either
/// makes xmlsec do work on the attacker's behalf or is never sent by an IdP.
const ALLOWED_ELEMENTS: [&[u8]; 19] = [
    b"Signature",
    b"SignedInfo",
    b"CanonicalizationMethod",
    b"SignatureMethod",
    b"Reference",
    b"Transforms",
    b"Transform",
    b"DigestMethod",
    b"DigestValue",
    b"SignatureValue",
    b"KeyInfo",
    b"KeyName",
    b"X509Data",
    b"X509Certificate",
    b"X509IssuerSerial",
    b"X509IssuerName",
    b"X509SerialNumber",
    b"X509SubjectName",
    b"X509SKI",
];

/// Whether `local` is an XML-DSig element a SAML signature may contain.
pub fn is_allowed_element(local: &[u8]) -> bool {
    ALLOWED_ELEMENTS.contains(&local)
}

/// The one Reference URI a signature enveloped in the element with ID
/// `owner` may carry: `#` and that ID. An empty URI (the whole document),
/// an external one or an XPointer expression is refused.
pub fn is_own_reference(uri: &str, owner: &str) -> bool {
    uri.strip_prefix('#') == Some(owner) && !owner.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enveloped_and_c14n_transforms_are_allowed() {
        assert!(is_allowed_transform(
            "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
        ));
        assert!(is_allowed_transform(
            "http://www.w3.org/2001/10/xml-exc-c14n#"
        ));
        assert!(is_allowed_transform(
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
        ));
        for refused in [
            "http://www.w3.org/TR/1999/REC-xslt-19991116",
            "http://www.w3.org/TR/1999/REC-xpath-19991116",
            "http://www.w3.org/2002/06/xmldsig-filter2",
            "http://www.w3.org/2000/09/xmldsig#base64",
            "http://www.w3.org/2001/10/xml-exc-c14n",
            "",
        ] {
            assert!(!is_allowed_transform(refused), "{refused}");
        }
    }

    #[test]
    fn a_reference_must_name_its_own_element() {
        assert!(is_own_reference("#_a1", "_a1"));
        assert!(!is_own_reference("#_a2", "_a1"));
        assert!(!is_own_reference("", "_a1"));
        assert!(!is_own_reference("#", ""));
        assert!(!is_own_reference("#xpointer(/)", "_a1"));
        assert!(!is_own_reference("#xpointer(id('_a1'))", "_a1"));
        assert!(!is_own_reference("https://evil.example.com/doc.xml", "_a1"));
    }

    #[test]
    fn manifests_objects_and_retrieval_methods_are_not_signature_parts() {
        assert!(is_allowed_element(b"SignedInfo"));
        for refused in [
            &b"Object"[..],
            b"Manifest",
            b"RetrievalMethod",
            b"XPath",
            b"HMACOutputLength",
        ] {
            assert!(!is_allowed_element(refused));
        }
    }
}
