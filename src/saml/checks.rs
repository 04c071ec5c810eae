//! Pure checks of a SAML response, before and after samael verifies it.
//!
//! samael (with libxml in recover mode) accepts a DOCTYPE, malformed XML and a
//! second root, accepts responses without Conditions or AudienceRestriction,
//! and never looks at an IssueInstant in the future. So the XML is checked
//! strictly with a streaming parser before samael sees it, and the verified
//! assertion is checked again for what samael leaves open.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use samael::schema::Assertion;

use super::dsig;

/// Largest accepted form body (the base64 SAMLResponse and RelayState).
pub const MAX_FORM_BYTES: usize = 512 * 1024;
/// Largest accepted decoded response XML.
pub const MAX_XML_BYTES: usize = 256 * 1024;
/// Deepest element nesting accepted. A signed response nests about 8 deep.
pub const MAX_DEPTH: usize = 24;
/// Most elements accepted in one response.
pub const MAX_ELEMENTS: usize = 5000;

const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Why a response is refused. The message is logged, never shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the SAMLResponse is not valid base64")]
    NotBase64,
    #[error("the response is larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    #[error("the response is not UTF-8")]
    NotUtf8,
    #[error("the response is not plain UTF-8 XML: {0}")]
    Encoding(String),
    #[error("the XML has an xml:id attribute")]
    XmlId,
    #[error("the ID {0:?} is used twice")]
    DuplicateId(String),
    #[error(
        "a Signature is not a direct child of the Response or the Assertion, or one of them holds two"
    )]
    SignaturePlacement,
    #[error("the signature holds the element {0}, which IdPs never send")]
    SignatureElement(String),
    #[error(
        "the signature uses the transform {0:?} (only enveloped-signature and C14N are accepted)"
    )]
    Transform(String),
    #[error("the signature's Reference URI {0:?} is not '#' and the ID of the element it sits in")]
    ReferenceUri(String),
    #[error("a signature holds more than one Reference")]
    References,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("the XML has a DOCTYPE")]
    Doctype,
    #[error("the XML has a processing instruction")]
    ProcessingInstruction,
    #[error("the XML has a comment (comments hide text from signatures)")]
    Comment,
    #[error("the XML has a CDATA section")]
    Cdata,
    #[error("the XML refers to the entity &{0};")]
    Entity(String),
    #[error("the XML nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("the XML has more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("the XML has more than one root element")]
    SecondRoot,
    #[error("the root element is not a SAML protocol Response")]
    NotAResponse,
    #[error("the response holds {0} Response elements, not one")]
    ResponseCount(usize),
    #[error("the response holds {0} Assertions, not one")]
    AssertionCount(usize),
    #[error("the response holds an EncryptedAssertion (not supported)")]
    Encrypted,
    #[error("the response uses SHA-1 ({0})")]
    Sha1(String),
    #[error("the response status is {0}")]
    Status(String),
    #[error("the response Destination {0:?} is not this ACS URL")]
    Destination(String),
    #[error("the signature, issuer, audience, recipient or time window is not valid: {0}")]
    Verification(String),
    #[error("the assertion has no Conditions")]
    NoConditions,
    #[error("the assertion's Conditions have no AudienceRestriction")]
    NoAudienceRestriction,
    #[error("the assertion is not meant for this service provider (audience)")]
    WrongAudience,
    #[error("the {0} IssueInstant is in the future beyond the clock skew")]
    IssuedInFuture(&'static str),
    #[error("the {0} IssueInstant is too old")]
    IssuedTooLongAgo(&'static str),
    #[error("the assertion has no subject")]
    NoSubject,
    #[error("the assertion answers a request this browser did not make (InResponseTo)")]
    UnknownInResponseTo,
    #[error("the assertion answers no request, and this policy refuses IdP-initiated logins")]
    Unsolicited,
}

/// What the strict pass learnt about the (still unverified) Response wrapper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wrapper {
    pub destination: Option<String>,
    pub issue_instant: Option<String>,
    pub status: Option<String>,
    /// Identity values the XML parser would trim (see [`Padded`]).
    pub padded: Padded,
}

/// Values that begin or end with XML whitespace. samael's deserializer trims
/// it from text, so a NameID `admin@corp.com&#9;` would reach us as
/// `admin@corp.com`; found here on the raw text, such a value is refused
/// rather than compared as another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Padded {
    /// The Subject's NameID: its edge whitespace character.
    pub name_id: Option<char>,
    /// Attribute `Name` -> the edge whitespace character of one of its values.
    pub attributes: BTreeMap<String, char>,
}

/// Follows the raw text of the Subject's NameID and of each AttributeValue.
#[derive(Default)]
struct PaddingScan {
    padded: Padded,
    /// Open elements: local name, and whether in the SAML assertion namespace.
    open: Vec<(Vec<u8>, bool)>,
    /// The `Name` of the open Attribute.
    attribute: Option<String>,
    /// The text so far of the open NameID or AttributeValue, at its depth.
    text: Option<(String, usize)>,
}

impl PaddingScan {
    fn start(&mut self, local: &[u8], in_assertion_ns: bool, attributes: &[(String, String)]) {
        let parent = self
            .open
            .last()
            .filter(|(_, ns)| *ns)
            .map(|(n, _)| n.as_slice());
        if in_assertion_ns {
            match (local, parent) {
                (b"Attribute", _) => self.attribute = value(attributes, "Name"),
                (b"NameID", Some(b"Subject")) | (b"AttributeValue", Some(b"Attribute")) => {
                    self.text = Some((String::new(), self.open.len() + 1));
                }
                _ => {}
            }
        }
        self.open.push((local.to_vec(), in_assertion_ns));
    }

    fn text(&mut self, text: &str) {
        if let Some((collected, _)) = &mut self.text {
            collected.push_str(text);
        }
    }

    fn end(&mut self) {
        let depth = self.open.len();
        let Some((local, in_ns)) = self.open.pop() else {
            return;
        };
        if let Some((text, _)) = self.text.take_if(|(_, at)| *at == depth) {
            let xml_space = |c: &char| matches!(c, ' ' | '\t' | '\r' | '\n');
            let edge = text
                .chars()
                .next()
                .filter(xml_space)
                .or_else(|| text.chars().next_back().filter(xml_space));
            if let Some(c) = edge {
                match (local.as_slice(), &self.attribute) {
                    (b"NameID", _) => self.padded.name_id = Some(c),
                    (_, Some(name)) => {
                        self.padded.attributes.entry(name.clone()).or_insert(c);
                    }
                    _ => {}
                }
            }
        }
        if in_ns && local == b"Attribute" {
            self.attribute = None;
        }
    }
}

/// Decodes the form's SAMLResponse: whitespace is stripped first, since
/// IdPs wrap base64 at 76 columns and samael's decoder refuses line breaks.
pub fn decode(encoded: &str) -> Result<String, Rejection> {
    let compact: Vec<u8> = encoded
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.len() > MAX_XML_BYTES / 3 * 4 + 4 {
        return Err(Rejection::TooLarge);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| Rejection::NotBase64)?;
    if bytes.len() > MAX_XML_BYTES {
        return Err(Rejection::TooLarge);
    }
    // libxml reads a byte order mark as an encoding declaration.
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF])
        || bytes.starts_with(&[0xFE, 0xFF])
        || bytes.starts_with(&[0xFF, 0xFE])
    {
        return Err(Rejection::Encoding("a byte order mark".into()));
    }
    String::from_utf8(bytes).map_err(|_| Rejection::NotUtf8)
}

/// Characters XML 1.0 does not allow (libxml refuses them, quick-xml does
/// not): C0 controls other than tab, LF and CR, and U+FFFE/U+FFFF.
fn is_forbidden_char(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
}

/// Checks the XML strictly: one well-formed document, no DOCTYPE, no
/// processing instruction beyond the declaration, no comment or CDATA, only
/// the predefined entities, bounded depth and element count, a SAML protocol
/// Response as the only root, exactly one Assertion (in the SAML namespace),
/// no SHA-1 algorithm, and a Success status.
pub fn precheck(xml: &str, acs_url: &str) -> Result<Wrapper, Rejection> {
    if xml.len() > MAX_XML_BYTES {
        return Err(Rejection::TooLarge);
    }
    if let Some(c) = xml.chars().find(|c| is_forbidden_char(*c)) {
        return Err(Rejection::Encoding(format!(
            "the character U+{:04X}",
            u32::from(c)
        )));
    }
    let mut reader = NsReader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;

    let mut wrapper = Wrapper::default();
    let mut elements = 0usize;
    let mut root_closed = false;
    let mut responses = 0usize;
    let mut assertions = 0usize;
    let mut seen_status_code = false;
    let mut first_event = true;
    // The open elements, outermost first: where each one is decides what it
    // may be (a Signature only in the Response or the Assertion, …).
    let mut open: Vec<Frame> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut scan = PaddingScan::default();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| Rejection::Malformed(e.to_string()))?;
        let was_first = std::mem::replace(&mut first_event, false);
        match event {
            // libxml honours the declared encoding; the checks here read
            // UTF-8. Both must read the same document.
            Event::Decl(ref decl) if was_first && xml.starts_with("<?xml") => {
                let version = decl
                    .version()
                    .map_err(|e| Rejection::Malformed(e.to_string()))?;
                if version.as_ref() != b"1.0" {
                    return Err(Rejection::Encoding(format!(
                        "XML version {}",
                        String::from_utf8_lossy(&version)
                    )));
                }
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| Rejection::Malformed(e.to_string()))?;
                    if !encoding.eq_ignore_ascii_case(b"UTF-8") {
                        return Err(Rejection::Encoding(format!(
                            "the declared encoding {}",
                            String::from_utf8_lossy(&encoding)
                        )));
                    }
                }
            }
            Event::Decl(_) => {
                return Err(Rejection::Malformed(
                    "an XML declaration that is not at the start".into(),
                ));
            }
            Event::DocType(_) => return Err(Rejection::Doctype),
            Event::PI(_) => return Err(Rejection::ProcessingInstruction),
            Event::Comment(_) => return Err(Rejection::Comment),
            Event::CData(_) => return Err(Rejection::Cdata),
            Event::GeneralRef(reference) => {
                let name = String::from_utf8_lossy(&reference).into_owned();
                let predefined = matches!(name.as_str(), "amp" | "lt" | "gt" | "quot" | "apos");
                if !predefined {
                    let resolved = reference
                        .is_char_ref()
                        .then(|| reference.resolve_char_ref().ok().flatten())
                        .flatten();
                    match resolved {
                        Some(c) if is_forbidden_char(c) => {
                            return Err(Rejection::Encoding(format!(
                                "the character reference &{name};"
                            )));
                        }
                        Some(_) => {}
                        None => return Err(Rejection::Entity(name)),
                    }
                }
                if open.is_empty() {
                    return Err(Rejection::Malformed("text outside the root".into()));
                }
                let resolved = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => reference.resolve_char_ref().ok().flatten(),
                };
                if let Some(c) = resolved {
                    scan.text(c.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Text(text) => {
                if open.is_empty() && !text.iter().all(u8::is_ascii_whitespace) {
                    return Err(Rejection::Malformed("text outside the root".into()));
                }
                scan.text(
                    &text
                        .decode()
                        .map_err(|e| Rejection::Malformed(e.to_string()))?,
                );
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root_closed {
                    return Err(Rejection::SecondRoot);
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(Rejection::TooManyElements);
                }
                if open.len() + 1 > MAX_DEPTH {
                    return Err(Rejection::TooDeep);
                }
                let local = start.local_name();
                let local = local.as_ref();
                let in_ns =
                    |want: &[u8]| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want);
                let attributes = attributes(start)?;
                let id = element_id(&attributes, &mut ids)?;
                if matches!(event, Event::Start(_)) {
                    scan.start(local, in_ns(ASSERTION_NS), &attributes);
                }
                if elements == 1 && !(local == b"Response" && in_ns(PROTOCOL_NS)) {
                    return Err(Rejection::NotAResponse);
                }
                let parent = open.last_mut();
                let in_signature = parent.as_ref().is_some_and(|p| p.in_signature);
                // The ID of the element a signature sits in, for its Reference.
                let owner = parent.as_ref().and_then(|p| match p.place {
                    Place::Signable => p.id.clone(),
                    _ => p.owner.clone(),
                });
                let mut frame = Frame {
                    place: Place::Other,
                    id,
                    owner: owner.clone(),
                    in_signature,
                    signed: false,
                    references: 0,
                };
                if in_ns(dsig::DSIG_NS) {
                    frame.place = dsig_element(
                        local,
                        &attributes,
                        parent,
                        owner.as_deref(),
                        &mut frame.in_signature,
                    )?;
                } else if in_signature {
                    // Only exclusive C14N's InclusiveNamespaces may sit in a
                    // signature, inside its Transform or CanonicalizationMethod.
                    let in_transform = parent.is_some_and(|p| p.place == Place::Transform);
                    if !(in_transform
                        && local == b"InclusiveNamespaces"
                        && in_ns(dsig::EXC_C14N_NS))
                    {
                        return Err(Rejection::SignatureElement(
                            String::from_utf8_lossy(local).into_owned(),
                        ));
                    }
                }
                match local {
                    b"Response" => {
                        responses += 1;
                        if elements == 1 {
                            frame.place = Place::Signable;
                            wrapper.destination = value(&attributes, "Destination");
                            wrapper.issue_instant = value(&attributes, "IssueInstant");
                        }
                    }
                    b"Assertion" => {
                        assertions += 1;
                        if !in_ns(ASSERTION_NS) {
                            return Err(Rejection::AssertionCount(assertions));
                        }
                        frame.place = Place::Signable;
                    }
                    b"EncryptedAssertion" => return Err(Rejection::Encrypted),
                    b"StatusCode" if in_ns(PROTOCOL_NS) && !seen_status_code => {
                        // The top-level StatusCode; nested ones refine it.
                        seen_status_code = true;
                        wrapper.status = value(&attributes, "Value");
                    }
                    b"SignatureMethod" | b"DigestMethod" => {
                        if let Some(algorithm) = value(&attributes, "Algorithm") {
                            if is_sha1(&algorithm) {
                                return Err(Rejection::Sha1(algorithm));
                            }
                        }
                    }
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    open.push(frame);
                } else if open.is_empty() {
                    root_closed = true;
                }
            }
            Event::End(_) => {
                scan.end();
                open.pop();
                if open.is_empty() {
                    root_closed = true;
                }
            }
            Event::Eof => break,
        }
    }
    if !root_closed || !open.is_empty() {
        return Err(Rejection::Malformed(
            "the document ends inside an element".into(),
        ));
    }
    if responses != 1 {
        return Err(Rejection::ResponseCount(responses));
    }
    if assertions != 1 {
        return Err(Rejection::AssertionCount(assertions));
    }
    match &wrapper.status {
        Some(status) if status == STATUS_SUCCESS => {}
        Some(status) => return Err(Rejection::Status(status.clone())),
        None => return Err(Rejection::Status("missing".into())),
    }
    // Only the Response's signature makes its Destination trustworthy, but a
    // wrong one is refused either way.
    if let Some(destination) = &wrapper.destination {
        if destination != acs_url {
            return Err(Rejection::Destination(destination.clone()));
        }
    }
    wrapper.padded = scan.padded;
    Ok(wrapper)
}

/// Every attribute, unescaped: refuses duplicates and undefined entities.
fn attributes(start: &BytesStart<'_>) -> Result<Vec<(String, String)>, Rejection> {
    let mut out = Vec::new();
    for attribute in start.attributes().with_checks(true) {
        let attribute = attribute.map_err(|e| Rejection::Malformed(e.to_string()))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| Rejection::Malformed(e.to_string()))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

fn value(attributes: &[(String, String)], name: &str) -> Option<String> {
    attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// What an open element is, as far as signatures care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The Response or the Assertion: may hold one enveloped Signature.
    Signable,
    Signature,
    SignedInfo,
    Reference,
    Transforms,
    /// A Transform or CanonicalizationMethod (may hold InclusiveNamespaces).
    Transform,
    /// Any other element.
    Other,
}

/// An open element.
struct Frame {
    place: Place,
    /// Its ID attribute.
    id: Option<String>,
    /// In a signature: the ID of the element the signature sits in.
    owner: Option<String>,
    /// Whether it is a Signature or inside one.
    in_signature: bool,
    /// A Signable already holding its Signature.
    signed: bool,
    /// References seen in a SignedInfo.
    references: usize,
}

/// The element's ID: its `ID` attribute (with or without a prefix, since
/// samael registers IDs by local name). Refuses `xml:id` (libxml registers it
/// as an ID by itself), two ID-like attributes (`ID`, `Id`, `id`) on one
/// element, and an ID value used twice in the document: a Reference must
/// resolve to exactly the element the checks here saw.
fn element_id(
    attributes: &[(String, String)],
    seen: &mut std::collections::HashSet<String>,
) -> Result<Option<String>, Rejection> {
    let mut found = None;
    let mut count = 0;
    for (key, value) in attributes {
        if key == "xml:id" {
            return Err(Rejection::XmlId);
        }
        let local = key.rsplit(':').next().unwrap_or(key);
        if key.starts_with("xmlns") || !local.eq_ignore_ascii_case("id") {
            continue;
        }
        count += 1;
        if count > 1 || !seen.insert(value.clone()) {
            return Err(Rejection::DuplicateId(value.clone()));
        }
        if local == "ID" {
            found = Some(value.clone());
        }
    }
    Ok(found)
}

/// Checks an XML-DSig element against where it is and what it says; returns
/// its place. `in_signature` is set for a Signature.
/// `owner` is the ID of the element the enclosing signature sits in.
fn dsig_element(
    local: &[u8],
    attributes: &[(String, String)],
    parent: Option<&mut Frame>,
    owner: Option<&str>,
    in_signature: &mut bool,
) -> Result<Place, Rejection> {
    let name = || String::from_utf8_lossy(local).into_owned();
    if !dsig::is_allowed_element(local) {
        return Err(Rejection::SignatureElement(name()));
    }
    let Some(parent) = parent else {
        return Err(Rejection::SignaturePlacement);
    };
    let place = |want: Place| parent.place == want;
    Ok(match local {
        b"Signature" => {
            // Enveloped in the Response or the Assertion, one each.
            if !place(Place::Signable) || parent.signed || parent.id.is_none() {
                return Err(Rejection::SignaturePlacement);
            }
            parent.signed = true;
            *in_signature = true;
            Place::Signature
        }
        _ if !parent.in_signature => return Err(Rejection::SignatureElement(name())),
        b"SignedInfo" if place(Place::Signature) => Place::SignedInfo,
        b"Reference" if place(Place::SignedInfo) => {
            parent.references += 1;
            if parent.references > 1 {
                return Err(Rejection::References);
            }
            let uri = value(attributes, "URI").unwrap_or_default();
            if !owner.is_some_and(|owner| dsig::is_own_reference(&uri, owner)) {
                return Err(Rejection::ReferenceUri(uri));
            }
            Place::Reference
        }
        b"Transforms" if place(Place::Reference) => Place::Transforms,
        b"Transform" | b"CanonicalizationMethod" => {
            let expected = if local == b"Transform" {
                Place::Transforms
            } else {
                Place::SignedInfo
            };
            if !place(expected) {
                return Err(Rejection::SignatureElement(name()));
            }
            let algorithm = value(attributes, "Algorithm").unwrap_or_default();
            if !dsig::is_allowed_transform(&algorithm) {
                return Err(Rejection::Transform(algorithm));
            }
            Place::Transform
        }
        b"SignedInfo" | b"Reference" | b"Transforms" => {
            return Err(Rejection::SignatureElement(name()));
        }
        _ if place(Place::Transform) => return Err(Rejection::SignatureElement(name())),
        _ => Place::Other,
    })
}

/// SHA-1 signature and digest algorithm URIs (RSA, DSA, ECDSA, HMAC, digest).
fn is_sha1(algorithm: &str) -> bool {
    let fragment = algorithm.rsplit('#').next().unwrap_or_default();
    fragment == "sha1" || fragment.ends_with("-sha1")
}

/// The time rules for the wrapper's IssueInstant (only when present; an
/// unsigned wrapper's instant proves nothing, but a bad one is refused).
pub fn check_wrapper_time(
    wrapper: &Wrapper,
    now: DateTime<Utc>,
    skew: Duration,
    max_age: Duration,
) -> Result<(), Rejection> {
    let Some(instant) = &wrapper.issue_instant else {
        return Ok(());
    };
    let instant = DateTime::parse_from_rfc3339(instant)
        .map_err(|_| Rejection::Malformed("the Response IssueInstant is not a date".into()))?
        .with_timezone(&Utc);
    check_issue_instant("Response", instant, now, skew, max_age)
}

fn check_issue_instant(
    what: &'static str,
    instant: DateTime<Utc>,
    now: DateTime<Utc>,
    skew: Duration,
    max_age: Duration,
) -> Result<(), Rejection> {
    let skew = chrono::Duration::from_std(skew).unwrap_or_default();
    let max_age = chrono::Duration::from_std(max_age).unwrap_or_default();
    if instant > now + skew {
        return Err(Rejection::IssuedInFuture(what));
    }
    if instant + max_age + skew < now {
        return Err(Rejection::IssuedTooLongAgo(what));
    }
    Ok(())
}

/// What the checks of a verified assertion establish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The assertion's ID.
    pub id: String,
    /// The issuer (already matched against the policy by samael).
    pub issuer: String,
    /// The request this assertion answers; `None` for an IdP-initiated login.
    pub in_response_to: Option<String>,
    /// After this instant the assertion would be refused anyway: how long its
    /// ID must be remembered to refuse a replay.
    pub expires_at: DateTime<Utc>,
}

/// The checks samael leaves open, on an assertion samael verified:
/// Conditions and AudienceRestriction are required, the audience must name
/// this SP, IssueInstant must not be in the future, and InResponseTo must be
/// the request bound to this browser, or absent only if the policy allows
/// IdP-initiated logins.
pub fn check_assertion(
    assertion: &Assertion,
    sp_entity_id: &str,
    request_id: Option<&str>,
    allow_idp_initiated: bool,
    now: DateTime<Utc>,
    skew: Duration,
    max_age: Duration,
) -> Result<Checked, Rejection> {
    check_issue_instant("Assertion", assertion.issue_instant, now, skew, max_age)?;
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or(Rejection::NoConditions)?;
    let restrictions = conditions
        .audience_restrictions
        .as_deref()
        .filter(|r| !r.is_empty())
        .ok_or(Rejection::NoAudienceRestriction)?;
    // Every AudienceRestriction must be met (SAML core 2.5.1.4).
    if !restrictions
        .iter()
        .all(|r| r.audience.iter().any(|a| a == sp_entity_id))
    {
        return Err(Rejection::WrongAudience);
    }
    let subject = assertion.subject.as_ref().ok_or(Rejection::NoSubject)?;
    let bearer: Vec<_> = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .collect();
    let answered: Vec<&str> = bearer
        .iter()
        .filter_map(|d| d.in_response_to.as_deref())
        .collect();
    let in_response_to = match (answered.first(), request_id) {
        (None, _) if allow_idp_initiated => None,
        (None, _) => return Err(Rejection::Unsolicited),
        (Some(_), Some(request)) if answered.iter().all(|a| *a == request) => {
            Some(request.to_owned())
        }
        (Some(_), _) => return Err(Rejection::UnknownInResponseTo),
    };
    let skew = chrono::Duration::from_std(skew).unwrap_or_default();
    let max_age = chrono::Duration::from_std(max_age).unwrap_or_default();
    let expires_at = bearer
        .iter()
        .filter_map(|d| d.not_on_or_after)
        .chain(conditions.not_on_or_after)
        .max()
        .unwrap_or(assertion.issue_instant + max_age)
        .max(assertion.issue_instant + max_age)
        + skew;
    Ok(Checked {
        id: assertion.id.clone(),
        issuer: assertion.issuer.value.clone().unwrap_or_default(),
        in_response_to,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACS: &str = "https://roster.example.com/saml/ns/crm/acs";

    fn response(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0" IssueInstant="2026-01-01T00:00:00Z" Destination="{ACS}"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{inner}</samlp:Response>"#
        )
    }

    fn assertion(body: &str) -> String {
        format!(r#"<saml:Assertion ID="_a" Version="2.0">{body}</saml:Assertion>"#)
    }

    #[test]
    fn values_the_parser_would_trim_are_found_on_the_raw_text() {
        let body = |name_id: &str, value: &str| {
            assertion(&format!(
                r#"<saml:Subject><saml:NameID>{name_id}</saml:NameID></saml:Subject><saml:AttributeStatement><saml:Attribute Name="oid"><saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute><saml:Attribute Name="email"><saml:AttributeValue>a@b</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"#
            ))
        };
        let padded = |name_id: &str, value: &str| {
            precheck(&response(&body(name_id, value)), ACS)
                .expect("passes")
                .padded
        };
        assert_eq!(padded("alice", "6f1c"), Padded::default());
        assert_eq!(padded("alice\t", "6f1c").name_id, Some('\t'));
        assert_eq!(padded("alice&#9;", "6f1c").name_id, Some('\t'));
        assert_eq!(padded(" alice", "6f1c").name_id, Some(' '));
        assert_eq!(padded("alice&#x0A;", "6f1c").name_id, Some('\n'));
        // Not XML whitespace: the parser keeps it, and the identity rules refuse it.
        assert_eq!(padded("alice\u{A0}", "6f1c").name_id, None);
        assert_eq!(padded("al ice", "6f1c").name_id, None);
        let attributes = padded("alice", "6f1c\n").attributes;
        assert_eq!(attributes, BTreeMap::from([("oid".to_owned(), '\n')]));
    }

    #[test]
    fn a_plain_response_with_one_assertion_passes() {
        let wrapper =
            precheck(&response(&assertion("<saml:Issuer>idp</saml:Issuer>")), ACS).expect("passes");
        assert_eq!(wrapper.destination.as_deref(), Some(ACS));
        assert_eq!(wrapper.status.as_deref(), Some(STATUS_SUCCESS));
    }

    #[test]
    fn predefined_and_character_entities_pass() {
        let xml = response(&assertion("<saml:Issuer>a &amp; b &#x41;</saml:Issuer>"));
        assert!(precheck(&xml, ACS).is_ok());
    }

    #[test]
    fn a_doctype_is_refused() {
        let xml = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x \"y\">]>{}",
            response(&assertion(""))
                .trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        );
        assert_eq!(precheck(&xml, ACS), Err(Rejection::Doctype));
    }

    #[test]
    fn an_undeclared_entity_is_refused() {
        let xml = response(&assertion("<saml:Issuer>&xxe;</saml:Issuer>"));
        assert_eq!(precheck(&xml, ACS), Err(Rejection::Entity("xxe".into())));
    }

    #[test]
    fn processing_instructions_comments_and_cdata_are_refused() {
        let pi = response(&assertion("<?evil x?>"));
        assert_eq!(precheck(&pi, ACS), Err(Rejection::ProcessingInstruction));
        let comment = response(&assertion("<saml:NameID>admin<!---->.evil</saml:NameID>"));
        assert_eq!(precheck(&comment, ACS), Err(Rejection::Comment));
        let cdata = response(&assertion("<saml:NameID><![CDATA[x]]></saml:NameID>"));
        assert_eq!(precheck(&cdata, ACS), Err(Rejection::Cdata));
    }

    #[test]
    fn malformed_xml_is_refused() {
        let unclosed = response(&assertion("")).replace("</samlp:Response>", "");
        assert!(matches!(
            precheck(&unclosed, ACS),
            Err(Rejection::Malformed(_))
        ));
        let mismatched = response(&assertion("<saml:Issuer>x</saml:Subject>"));
        assert!(matches!(
            precheck(&mismatched, ACS),
            Err(Rejection::Malformed(_))
        ));
        let duplicate_attribute =
            response(&assertion("")).replace("ID=\"_a\"", "ID=\"_a\" ID=\"_b\"");
        assert!(matches!(
            precheck(&duplicate_attribute, ACS),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn a_second_root_is_refused() {
        let xml = format!("{}<samlp:Response/>", response(&assertion("")));
        assert_eq!(precheck(&xml, ACS), Err(Rejection::SecondRoot));
        let text = format!("{}trailing", response(&assertion("")));
        assert!(matches!(precheck(&text, ACS), Err(Rejection::Malformed(_))));
    }

    #[test]
    fn the_root_must_be_a_protocol_response() {
        let xml = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#;
        assert_eq!(precheck(xml, ACS), Err(Rejection::NotAResponse));
        let wrong_ns = r#"<Response xmlns="urn:evil"/>"#;
        assert_eq!(precheck(wrong_ns, ACS), Err(Rejection::NotAResponse));
    }

    #[test]
    fn exactly_one_assertion_is_required() {
        let none = response("");
        assert_eq!(precheck(&none, ACS), Err(Rejection::AssertionCount(0)));
        let two = response(&format!(
            "{}{}",
            assertion(""),
            assertion("").replace("_a", "_b")
        ));
        assert_eq!(precheck(&two, ACS), Err(Rejection::AssertionCount(2)));
        let nested_response = response(&format!(
            "{}<samlp:Extensions><samlp:Response/></samlp:Extensions>",
            assertion("")
        ));
        assert_eq!(
            precheck(&nested_response, ACS),
            Err(Rejection::ResponseCount(2))
        );
        let foreign = response(r#"<evil:Assertion xmlns:evil="urn:evil"/>"#);
        assert!(matches!(
            precheck(&foreign, ACS),
            Err(Rejection::AssertionCount(_))
        ));
        let encrypted = response("<saml:EncryptedAssertion/>");
        assert_eq!(precheck(&encrypted, ACS), Err(Rejection::Encrypted));
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert_eq!(
            precheck(&response(&assertion(&deep)), ACS),
            Err(Rejection::TooDeep)
        );
        let big = "x".repeat(MAX_XML_BYTES + 1);
        assert_eq!(precheck(&big, ACS), Err(Rejection::TooLarge));
        let encoded = base64::engine::general_purpose::STANDARD.encode(big.as_bytes());
        assert_eq!(decode(&encoded), Err(Rejection::TooLarge));
    }

    #[test]
    fn sha1_algorithms_are_refused() {
        for algorithm in [
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2000/09/xmldsig#sha1",
            "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
        ] {
            let xml = response(&assertion(&format!(
                r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:SignatureMethod Algorithm="{algorithm}"/></ds:SignedInfo></ds:Signature>"#
            )));
            assert_eq!(
                precheck(&xml, ACS),
                Err(Rejection::Sha1(algorithm.into())),
                "{algorithm}"
            );
        }
        assert!(!is_sha1(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        ));
    }

    /// A signature as IdPs make it, inside the element with ID `owner`,
    /// with `transforms` in its Reference and `uri` as the Reference URI.
    fn signature(uri: &str, transforms: &str) -> String {
        format!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="{uri}"><ds:Transforms>{transforms}</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>AA==</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#
        )
    }

    const ENVELOPED: &str = r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/></ds:Transform>"#;

    #[test]
    fn signatures_as_idps_make_them_pass() {
        let both = response(&assertion(&signature("#_a", ENVELOPED))).replacen(
            "<samlp:Status>",
            &format!("{}<samlp:Status>", signature("#_r", ENVELOPED)),
            1,
        );
        assert_eq!(precheck(&both, ACS).map(|_| ()), Ok(()));
    }

    #[test]
    fn xslt_xpath_and_other_transforms_are_refused() {
        for (algorithm, body) in [
            (
                "http://www.w3.org/TR/1999/REC-xslt-19991116",
                "<xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" version=\"1.0\"/>",
            ),
            (
                "http://www.w3.org/TR/1999/REC-xpath-19991116",
                "<ds:XPath>count(//*[count(//*)&gt;1])&gt;0</ds:XPath>",
            ),
            ("http://www.w3.org/2002/06/xmldsig-filter2", ""),
            ("http://www.w3.org/2000/09/xmldsig#base64", ""),
        ] {
            let transform =
                format!(r#"<ds:Transform Algorithm="{algorithm}">{body}</ds:Transform>"#);
            let xml = response(&assertion(&signature("#_a", &transform)));
            assert_eq!(
                precheck(&xml, ACS),
                Err(Rejection::Transform(algorithm.into()))
            );
        }
        let c14n = signature("#_a", ENVELOPED).replace(
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"/>",
        );
        assert!(matches!(
            precheck(&response(&assertion(&c14n)), ACS),
            Err(Rejection::Transform(_))
        ));
        // An allowed algorithm carrying a payload other than InclusiveNamespaces.
        let smuggled = r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ds:XPath>1</ds:XPath></ds:Transform>"#;
        assert!(matches!(
            precheck(&response(&assertion(&signature("#_a", smuggled))), ACS),
            Err(Rejection::SignatureElement(_))
        ));
    }

    #[test]
    fn a_reference_must_name_the_element_its_signature_sits_in() {
        for uri in [
            "",
            "#_r",
            "#xpointer(/)",
            "#xpointer(id('_a'))",
            "https://evil.example.com/x.xml",
            "#_nowhere",
        ] {
            let xml = response(&assertion(&signature(uri, ENVELOPED)));
            assert_eq!(
                precheck(&xml, ACS),
                Err(Rejection::ReferenceUri(uri.into())),
                "{uri:?}"
            );
        }
        let two = signature("#_a", ENVELOPED).replace(
            "</ds:SignedInfo>",
            r##"<ds:Reference URI="#_a"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo>"##,
        );
        assert_eq!(
            precheck(&response(&assertion(&two)), ACS),
            Err(Rejection::References)
        );
    }

    #[test]
    fn signatures_elsewhere_and_unusual_signature_parts_are_refused() {
        let hidden = response(&assertion(&format!(
            "<saml:Subject>{}</saml:Subject>",
            signature("#_a", ENVELOPED)
        )));
        assert_eq!(precheck(&hidden, ACS), Err(Rejection::SignaturePlacement));
        let twice = response(&assertion(&format!(
            "{}{}",
            signature("#_a", ENVELOPED),
            signature("#_a", ENVELOPED)
        )));
        assert_eq!(precheck(&twice, ACS), Err(Rejection::SignaturePlacement));
        for part in [
            r#"<ds:Object><x/></ds:Object>"#,
            r##"<ds:KeyInfo><ds:RetrievalMethod URI="#_r"/></ds:KeyInfo>"##,
        ] {
            let xml = response(&assertion(
                &signature("#_a", ENVELOPED)
                    .replace("</ds:Signature>", &format!("{part}</ds:Signature>")),
            ));
            assert!(
                matches!(precheck(&xml, ACS), Err(Rejection::SignatureElement(_))),
                "{part}"
            );
        }
        let stray = response(&assertion(
            r#"<ds:Transform xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="x"/>"#,
        ));
        assert!(matches!(
            precheck(&stray, ACS),
            Err(Rejection::SignatureElement(_))
        ));
    }

    #[test]
    fn only_utf8_is_read() {
        let utf7 = response(&assertion("")).replace("encoding=\"UTF-8\"", "encoding=\"UTF-7\"");
        assert!(matches!(precheck(&utf7, ACS), Err(Rejection::Encoding(_))));
        let latin =
            response(&assertion("")).replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
        assert!(matches!(precheck(&latin, ACS), Err(Rejection::Encoding(_))));
        let lower = response(&assertion("")).replace("encoding=\"UTF-8\"", "encoding=\"utf-8\"");
        assert!(precheck(&lower, ACS).is_ok());
        let xml11 = response(&assertion("")).replace("version=\"1.0\"", "version=\"1.1\"");
        assert!(matches!(precheck(&xml11, ACS), Err(Rejection::Encoding(_))));
        let nul = response(&assertion("<saml:Issuer>a\u{0}b</saml:Issuer>"));
        assert!(matches!(precheck(&nul, ACS), Err(Rejection::Encoding(_))));
        let char_ref = response(&assertion("<saml:Issuer>a&#1;b</saml:Issuer>"));
        assert!(matches!(
            precheck(&char_ref, ACS),
            Err(Rejection::Encoding(_))
        ));
        let late_declaration = format!(" {}", response(&assertion("")));
        assert!(matches!(
            precheck(&late_declaration, ACS),
            Err(Rejection::Malformed(_))
        ));
        for bom in [&[0xEF, 0xBB, 0xBF][..], &[0xFF, 0xFE], &[0xFE, 0xFF]] {
            let mut bytes = bom.to_vec();
            bytes.extend_from_slice(response(&assertion("")).as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            assert!(matches!(decode(&encoded), Err(Rejection::Encoding(_))));
        }
        let utf16: Vec<u8> = response(&assertion(""))
            .replace("UTF-8", "UTF-16")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&utf16);
        let refused = decode(&encoded).and_then(|xml| precheck(&xml, ACS).map(|_| ()));
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn xml_id_and_colliding_ids_are_refused() {
        let xml_id = response(&assertion(r#"<saml:Issuer xml:id="_a">x</saml:Issuer>"#));
        assert_eq!(precheck(&xml_id, ACS), Err(Rejection::XmlId));
        let same = response(&assertion(r#"<saml:Subject ID="_a"/>"#));
        assert_eq!(
            precheck(&same, ACS),
            Err(Rejection::DuplicateId("_a".into()))
        );
        let other_case = response(&assertion(r#"<saml:Subject Id="_r"/>"#));
        assert_eq!(
            precheck(&other_case, ACS),
            Err(Rejection::DuplicateId("_r".into()))
        );
        let two_on_one = response(&assertion("")).replace("ID=\"_a\"", "ID=\"_a\" id=\"_b\"");
        assert_eq!(
            precheck(&two_on_one, ACS),
            Err(Rejection::DuplicateId("_b".into()))
        );
        let prefixed = response(&assertion(r#"<saml:Subject xmlns:x="urn:x" x:ID="_a"/>"#));
        assert_eq!(
            precheck(&prefixed, ACS),
            Err(Rejection::DuplicateId("_a".into()))
        );
    }

    #[test]
    fn a_failed_status_or_foreign_destination_is_refused() {
        let failed = response(&assertion("")).replace("status:Success", "status:Requester");
        assert!(matches!(precheck(&failed, ACS), Err(Rejection::Status(_))));
        let elsewhere = response(&assertion("")).replace(ACS, "https://evil.example.com/acs");
        assert!(matches!(
            precheck(&elsewhere, ACS),
            Err(Rejection::Destination(_))
        ));
    }

    #[test]
    fn base64_with_line_breaks_decodes() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("<x/>");
        let wrapped = format!("{}\r\n{}", &encoded[..2], &encoded[2..]);
        assert_eq!(decode(&wrapped).as_deref(), Ok("<x/>"));
        assert_eq!(decode("***"), Err(Rejection::NotBase64));
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn parsed(xml: &str) -> Assertion {
        xml.parse().expect("a test assertion parses")
    }

    fn verified(conditions: &str, confirmation: &str) -> Assertion {
        parsed(&format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>idp</saml:Issuer><saml:Subject><saml:NameID>alice</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData {confirmation} NotOnOrAfter="2026-01-01T00:05:00Z" Recipient="{ACS}"/></saml:SubjectConfirmation></saml:Subject>{conditions}</saml:Assertion>"#
        ))
    }

    const AUDIENCE: &str = r#"<saml:Conditions NotBefore="2026-01-01T00:00:00Z" NotOnOrAfter="2026-01-01T00:10:00Z"><saml:AudienceRestriction><saml:Audience>sp</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#;
    const SKEW: Duration = Duration::from_secs(60);
    const AGE: Duration = Duration::from_secs(90);

    #[test]
    fn a_solicited_assertion_passes_and_expires_with_its_latest_bound() {
        let a = verified(AUDIENCE, r#"InResponseTo="_req""#);
        let checked = check_assertion(
            &a,
            "sp",
            Some("_req"),
            false,
            at("2026-01-01T00:00:30Z"),
            SKEW,
            AGE,
        )
        .expect("passes");
        assert_eq!(checked.in_response_to.as_deref(), Some("_req"));
        assert_eq!(checked.id, "_a");
        assert_eq!(checked.expires_at, at("2026-01-01T00:11:00Z"));
    }

    #[test]
    fn conditions_and_audience_restriction_are_required() {
        let now = at("2026-01-01T00:00:30Z");
        let none = verified("", r#"InResponseTo="_req""#);
        assert_eq!(
            check_assertion(&none, "sp", Some("_req"), false, now, SKEW, AGE),
            Err(Rejection::NoConditions)
        );
        let bare = verified(
            r#"<saml:Conditions NotOnOrAfter="2026-01-01T00:10:00Z"/>"#,
            r#"InResponseTo="_req""#,
        );
        assert_eq!(
            check_assertion(&bare, "sp", Some("_req"), false, now, SKEW, AGE),
            Err(Rejection::NoAudienceRestriction)
        );
        let other = verified(AUDIENCE, r#"InResponseTo="_req""#);
        assert_eq!(
            check_assertion(&other, "other-sp", Some("_req"), false, now, SKEW, AGE),
            Err(Rejection::WrongAudience)
        );
    }

    #[test]
    fn an_issue_instant_in_the_future_is_refused_beyond_the_skew() {
        let a = verified(AUDIENCE, r#"InResponseTo="_req""#);
        let early = at("2025-12-31T23:58:00Z");
        assert_eq!(
            check_assertion(&a, "sp", Some("_req"), false, early, SKEW, AGE),
            Err(Rejection::IssuedInFuture("Assertion"))
        );
        let within = at("2025-12-31T23:59:30Z");
        assert!(check_assertion(&a, "sp", Some("_req"), false, within, SKEW, AGE).is_ok());
        let late = at("2026-01-01T00:03:00Z");
        assert_eq!(
            check_assertion(&a, "sp", Some("_req"), false, late, SKEW, AGE),
            Err(Rejection::IssuedTooLongAgo("Assertion"))
        );
    }

    #[test]
    fn in_response_to_must_be_this_browsers_request() {
        let now = at("2026-01-01T00:00:30Z");
        let a = verified(AUDIENCE, r#"InResponseTo="_req""#);
        assert_eq!(
            check_assertion(&a, "sp", Some("_other"), false, now, SKEW, AGE),
            Err(Rejection::UnknownInResponseTo)
        );
        assert_eq!(
            check_assertion(&a, "sp", None, true, now, SKEW, AGE),
            Err(Rejection::UnknownInResponseTo)
        );
        let unsolicited = verified(AUDIENCE, "");
        assert_eq!(
            check_assertion(&unsolicited, "sp", None, false, now, SKEW, AGE),
            Err(Rejection::Unsolicited)
        );
        let allowed = check_assertion(&unsolicited, "sp", None, true, now, SKEW, AGE).unwrap();
        assert_eq!(allowed.in_response_to, None);
    }

    #[test]
    fn the_wrapper_issue_instant_is_checked_when_present() {
        let wrapper = Wrapper {
            issue_instant: Some("2026-01-01T00:10:00Z".into()),
            ..Default::default()
        };
        assert_eq!(
            check_wrapper_time(&wrapper, at("2026-01-01T00:00:00Z"), SKEW, AGE),
            Err(Rejection::IssuedInFuture("Response"))
        );
        assert!(
            check_wrapper_time(&Wrapper::default(), at("2026-01-01T00:00:00Z"), SKEW, AGE).is_ok()
        );
    }
}
