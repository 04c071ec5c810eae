//! Property tests of the strict SAML pass ([`decode`], [`precheck`]) over
//! arbitrary input and over SAML-like documents with hostile mutations.
//!
//! Never a panic; and when precheck accepts a document, libxml (what samael
//! verifies signatures with) must see the same document: a protocol Response
//! as the root, one Response, one Assertion in the SAML assertion namespace,
//! no EncryptedAssertion, comment, processing instruction, CDATA, entity
//! reference or DOCTYPE, and no deeper or larger tree than precheck allows.
//! A disagreement is where a signature wrapping attack hides.

use std::sync::OnceLock;

use base64::Engine;
use libxml::parser::{Parser, ParserOptions};
use libxml::readonly::RoNode;
use libxml::tree::NodeType;
use proptest::prelude::*;

use crate::property::cases;
use proptest::strategy::ValueTree;
use quick_xml::escape::escape;

use super::checks::{MAX_DEPTH, MAX_ELEMENTS, decode, precheck};

const ACS: &str = "https://roster.example.com/saml/ns/crm/acs";
const PROTOCOL_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

// ---------------------------------------------------------------------------
// libxml's view

/// What libxml sees in a document.
#[derive(Debug, Default)]
struct LibxmlView {
    /// The root element's namespace and local name.
    root: (String, String),
    /// Elements named Response, in any namespace (precheck counts those).
    responses: usize,
    /// Elements named Assertion in the SAML assertion namespace.
    assertions: usize,
    /// Elements named Assertion in any other namespace, or none.
    foreign_assertions: usize,
    encrypted_assertions: usize,
    comments: usize,
    processing_instructions: usize,
    cdata_sections: usize,
    entity_references: usize,
    doctypes: usize,
    elements: usize,
    depth: usize,
}

/// Parses `bytes` as samael's libxml does, but strictly: no recovery, no
/// network, no entity substitution, no DTD loading. `Err` when libxml
/// refuses the document.
fn libxml_view(bytes: &[u8]) -> Result<LibxmlView, String> {
    quiet_libxml();
    let options = ParserOptions {
        recover: false,
        no_net: true,
        no_def_dtd: true,
        // Silence libxml's stderr reports; the verdict is the null document.
        no_error: true,
        no_warning: true,
        ..ParserOptions::default()
    };
    let document = Parser::default()
        .parse_string_with_options(bytes, options)
        .map_err(|error| format!("libxml refuses the document: {error}"))?;
    let root = document
        .get_root_readonly()
        .ok_or("libxml sees no root element")?;
    let mut view = LibxmlView {
        root: (namespace_of(root), root.get_name()),
        ..LibxmlView::default()
    };
    // The document's other children: a DOCTYPE, comments and PIs around the root.
    let mut before = root.get_prev_sibling();
    while let Some(node) = before {
        view.count_non_element(node);
        before = node.get_prev_sibling();
    }
    let mut after = root.get_next_sibling();
    while let Some(node) = after {
        if node.is_element_node() {
            return Err("libxml sees a second root element".into());
        }
        view.count_non_element(node);
        after = node.get_next_sibling();
    }
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if !node.is_element_node() {
            view.count_non_element(node);
            continue;
        }
        view.elements += 1;
        view.depth = view.depth.max(depth);
        let namespace = namespace_of(node);
        match node.get_name().as_str() {
            "Response" => view.responses += 1,
            "Assertion" if namespace == ASSERTION_NS => view.assertions += 1,
            "Assertion" => view.foreign_assertions += 1,
            "EncryptedAssertion" => view.encrypted_assertions += 1,
            _ => {}
        }
        stack.extend(node.get_child_nodes().into_iter().map(|c| (c, depth + 1)));
    }
    Ok(view)
}

/// Sends libxml's error reports of this thread to /dev/null: `no_error`
/// silences the parser, not the encoding and xml:id reports, which would
/// otherwise fill the test output.
#[allow(unsafe_code)]
fn quiet_libxml() {
    static DEV_NULL: OnceLock<usize> = OnceLock::new();
    let file = *DEV_NULL.get_or_init(|| {
        // SAFETY: fopen with valid C strings; the FILE lives for the process.
        unsafe { libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr()) as usize }
    });
    if file != 0 {
        // SAFETY: libxml's default handler writes to the FILE given as context.
        unsafe { libxml::bindings::xmlSetGenericErrorFunc(file as *mut std::ffi::c_void, None) };
    }
}

fn namespace_of(node: RoNode) -> String {
    node.get_namespace()
        .map(|ns| ns.get_href())
        .unwrap_or_default()
}

impl LibxmlView {
    fn count_non_element(&mut self, node: RoNode) {
        match node.get_type() {
            Some(NodeType::CommentNode) => self.comments += 1,
            Some(NodeType::PiNode) => self.processing_instructions += 1,
            Some(NodeType::CDataSectionNode) => self.cdata_sections += 1,
            Some(NodeType::EntityRefNode) => self.entity_references += 1,
            Some(NodeType::DTDNode | NodeType::DocumentTypeNode) => self.doctypes += 1,
            _ => {}
        }
    }

    /// How this view differs from what an accepted document must be.
    fn differences(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut expect = |what: &str, seen: usize, wanted: usize| {
            if seen != wanted {
                found.push(format!(
                    "{what}: libxml sees {seen}, precheck implies {wanted}"
                ));
            }
        };
        expect("Response elements", self.responses, 1);
        expect("SAML Assertions", self.assertions, 1);
        expect("other Assertions", self.foreign_assertions, 0);
        expect("EncryptedAssertions", self.encrypted_assertions, 0);
        expect("comments", self.comments, 0);
        expect("processing instructions", self.processing_instructions, 0);
        expect("CDATA sections", self.cdata_sections, 0);
        expect("entity references", self.entity_references, 0);
        expect("DOCTYPEs", self.doctypes, 0);
        if self.root != (PROTOCOL_NS.to_owned(), "Response".to_owned()) {
            found.push(format!("libxml's root is {:?}", self.root));
        }
        if self.depth > MAX_DEPTH {
            found.push(format!("libxml sees depth {}", self.depth));
        }
        if self.elements > MAX_ELEMENTS {
            found.push(format!("libxml sees {} elements", self.elements));
        }
        found
    }
}

/// How libxml's view of a document precheck accepted differs from it.
#[derive(Debug, PartialEq)]
enum Disagreement {
    /// libxml refuses the document as not well-formed.
    Refused(String),
    /// libxml parses another document than precheck accepted.
    Differs(String),
}

/// The SAMLResponse pipeline on `bytes` (base64, [`decode`], [`precheck`]),
/// then libxml on the same bytes. Refused documents agree trivially.
fn agreement(bytes: &[u8]) -> Result<(), Disagreement> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let Ok(xml) = decode(&encoded) else {
        return Ok(());
    };
    assert_eq!(
        xml.as_bytes(),
        bytes,
        "decode returns the bytes it was given"
    );
    if precheck(&xml, ACS).is_err() {
        return Ok(());
    }
    let view = libxml_view(bytes)
        .map_err(|refusal| Disagreement::Refused(format!("precheck accepts, but {refusal}")))?;
    let differences = view.differences();
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Disagreement::Differs(format!(
            "precheck accepts, but {}",
            differences.join("; ")
        )))
    }
}

fn accepted(bytes: &[u8]) -> bool {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    decode(&encoded).is_ok_and(|xml| precheck(&xml, ACS).is_ok())
}

const DECLARED_ENCODING: &str = "a declared encoding other than UTF-8";

/// The kinds of disagreement the precheck of today lets through, or `None`.
/// The stricter precheck in progress refuses a declared encoding other than
/// UTF-8 (libxml transcodes, so in UTF-7 `+ADw-` is a `<`). The others are
/// XML that quick-xml lets through and libxml refuses: whitespace before the
/// XML declaration (it must come first, XML 1.0 §2.8), a second declaration
/// before the root, a declaration without its version, characters XML 1.0
/// forbids (C0 controls but tab, CR and LF; U+FFFE, U+FFFF), `]]>` in text,
/// a raw `<` in an attribute value, and element names with characters no
/// name holds (`<a:b="x"/>`). Remove a kind once precheck refuses it.
fn known_open_disagreement(bytes: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
    let declaration = trimmed
        .strip_prefix("<?xml")
        .filter(|rest| rest.starts_with([' ', '\t', '\r', '\n']))
        .and_then(|rest| rest.split('>').next());
    if declaration.is_some() && trimmed.len() != text.len() {
        return Some("whitespace before the XML declaration");
    }
    if text.matches("<?xml").count() > 1 {
        return Some("a second XML declaration before the root");
    }
    // XML 1.0 §2.8: the declaration starts with the version.
    if declaration.is_some_and(|d| !d.trim_start().starts_with("version")) {
        return Some("an XML declaration without a version first");
    }
    if declaration.is_some_and(|declaration| {
        declaration
            .split_once("encoding")
            .and_then(|(_, rest)| rest.split(['"', '\'']).nth(1))
            .is_some_and(|encoding| !encoding.eq_ignore_ascii_case("utf-8"))
    }) {
        return Some(DECLARED_ENCODING);
    }
    if text.chars().any(forbidden_in_xml) {
        return Some("a character XML 1.0 forbids");
    }
    // XML 1.0 §2.4: text must not hold `]]>`.
    if text.contains("]]>") {
        return Some("`]]>` in text");
    }
    if has_lt_in_attribute_value(text) {
        return Some("a raw `<` in an attribute value");
    }
    if has_bad_element_name(text) {
        return Some("an element name with characters names cannot hold");
    }
    None
}

/// XML 1.0 §2.3 (`Name`): a tag's name runs to whitespace, `/` or `>` and
/// holds only name characters (ASCII letters, digits, `.-_:`, or non-ASCII).
fn has_bad_element_name(text: &str) -> bool {
    text.match_indices('<').any(|(at, _)| {
        let rest = &text[at + 1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.starts_with(['!', '?']) {
            return false;
        }
        rest.chars()
            .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
            .any(|c| {
                c.is_ascii() && !c.is_ascii_alphanumeric() && !matches!(c, '.' | '-' | '_' | ':')
            })
    })
}

/// XML 1.0 §3.1 (`AttValue`): an attribute value holds no raw `<`.
fn has_lt_in_attribute_value(text: &str) -> bool {
    let (mut in_tag, mut quote) = (false, None);
    for c in text.chars() {
        match (in_tag, quote, c) {
            (true, Some(q), '<') if q != '<' => return true,
            (true, Some(q), c) if c == q => quote = None,
            (true, None, '"' | '\'') => quote = Some(c),
            (true, None, '>') => in_tag = false,
            (false, _, '<') => in_tag = true,
            _ => {}
        }
    }
    false
}

/// Outside the XML 1.0 `Char` production (§2.2).
fn forbidden_in_xml(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Document bytes, shown as text when a property fails.
#[derive(Clone)]
struct Doc(Vec<u8>);

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "bytes {:02x?}", self.0),
        }
    }
}

// ---------------------------------------------------------------------------
// SAML-like documents

/// How a document spells the two SAML namespaces.
#[derive(Clone, Debug)]
struct Spelling {
    /// Prefix of the protocol namespace; empty: the default namespace.
    protocol: &'static str,
    /// Prefix of the assertion namespace; empty: the default namespace
    /// (declared on the Assertion).
    assertion: &'static str,
    /// Declare the assertion prefix on the Response rather than the Assertion.
    assertion_prefix_on_root: bool,
}

fn qualified(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_owned()
    } else {
        format!("{prefix}:{local}")
    }
}

fn xmlns(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        format!(r#" xmlns="{uri}""#)
    } else {
        format!(r#" xmlns:{prefix}="{uri}""#)
    }
}

/// The parts of a plausible IdP response.
#[derive(Clone, Debug)]
struct Response {
    declaration: Option<String>,
    spelling: Spelling,
    destination: bool,
    issuer: Option<String>,
    name_id: String,
    attributes: Vec<(String, String)>,
    signed: bool,
    conditions: bool,
    /// Whitespace between elements.
    gap: &'static str,
}

impl Response {
    fn render(&self) -> String {
        let s = &self.spelling;
        let p = |local: &str| qualified(s.protocol, local);
        let a = |local: &str| qualified(s.assertion, local);
        let gap = self.gap;
        let mut out = self.declaration.clone().unwrap_or_default();
        let mut root_ns = xmlns(s.protocol, PROTOCOL_NS);
        if s.assertion_prefix_on_root && !s.assertion.is_empty() {
            root_ns.push_str(&xmlns(s.assertion, ASSERTION_NS));
        }
        let destination = if self.destination {
            format!(r#" Destination="{ACS}""#)
        } else {
            String::new()
        };
        out.push_str(&format!(
            r#"<{}{root_ns} ID="_r1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"{destination}>{gap}"#,
            p("Response")
        ));
        if let Some(issuer) = &self.issuer {
            out.push_str(&format!(
                "<{0}{1}>{2}</{0}>{gap}",
                a("Issuer"),
                if s.assertion_prefix_on_root && !s.assertion.is_empty() {
                    String::new()
                } else {
                    xmlns(s.assertion, ASSERTION_NS)
                },
                escape(issuer.as_str())
            ));
        }
        out.push_str(&format!(
            r#"<{0}><{1} Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></{0}>{gap}"#,
            p("Status"),
            p("StatusCode")
        ));
        let assertion_ns = if s.assertion_prefix_on_root && !s.assertion.is_empty() {
            String::new()
        } else {
            xmlns(s.assertion, ASSERTION_NS)
        };
        out.push_str(&format!(
            r#"<{}{assertion_ns} ID="_a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">{gap}"#,
            a("Assertion")
        ));
        out.push_str(&format!("<{0}>idp</{0}>{gap}", a("Issuer")));
        if self.signed {
            out.push_str(&format!(
                r##"<ds:Signature xmlns:ds="{DSIG_NS}"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_a1"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>{gap}"##
            ));
        }
        out.push_str(&format!(
            r#"<{0}><{1}>{2}</{1}></{0}>{gap}"#,
            a("Subject"),
            a("NameID"),
            escape(self.name_id.as_str())
        ));
        if self.conditions {
            out.push_str(&format!(
                r#"<{0} NotBefore="2026-01-01T00:00:00Z"><{1}><{2}>sp</{2}></{1}></{0}>{gap}"#,
                a("Conditions"),
                a("AudienceRestriction"),
                a("Audience")
            ));
        }
        if !self.attributes.is_empty() {
            out.push_str(&format!("<{}>", a("AttributeStatement")));
            for (name, value) in &self.attributes {
                out.push_str(&format!(
                    r#"<{0} Name="{2}"><{1}>{3}</{1}></{0}>"#,
                    a("Attribute"),
                    a("AttributeValue"),
                    escape(name.as_str()),
                    escape(value.as_str())
                ));
            }
            out.push_str(&format!("</{}>{gap}", a("AttributeStatement")));
        }
        out.push_str(&format!("</{}>{gap}</{}>", a("Assertion"), p("Response")));
        out
    }
}

/// Text an IdP might send: names with accents, symbols XML must escape,
/// and the odd character XML 1.0 forbids.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .@_-]{0,12}",
        "[a-zé&<>\"'+\\-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn declaration() -> impl Strategy<Value = Option<String>> {
    let encoding = prop::option::of(prop::sample::select(vec![
        "UTF-8",
        "utf-8",
        "UTF-16",
        "ISO-8859-1",
        "US-ASCII",
        "UTF-7",
        "windows-1252",
        "Shift_JIS",
        "IBM037",
        "x-unknown",
    ]));
    let standalone = prop::option::of(prop::sample::select(vec!["yes", "no"]));
    prop::option::of((encoding, standalone, any::<bool>())).prop_map(|declaration| {
        declaration.map(|(encoding, standalone, newline)| {
            let mut out = r#"<?xml version="1.0""#.to_owned();
            if let Some(encoding) = encoding {
                out.push_str(&format!(r#" encoding="{encoding}""#));
            }
            if let Some(standalone) = standalone {
                out.push_str(&format!(r#" standalone="{standalone}""#));
            }
            out.push_str("?>");
            if newline {
                out.push('\n');
            }
            out
        })
    })
}

fn response() -> impl Strategy<Value = Response> {
    let spelling = (
        prop::sample::select(vec!["samlp", "saml2p", "p", ""]),
        prop::sample::select(vec!["saml", "saml2", "a", ""]),
        any::<bool>(),
    )
        .prop_map(|(protocol, assertion, assertion_prefix_on_root)| Spelling {
            protocol,
            // One prefix cannot name both namespaces on the same element.
            assertion: if assertion.is_empty() && protocol.is_empty() {
                "saml"
            } else {
                assertion
            },
            assertion_prefix_on_root,
        });
    (
        declaration(),
        spelling,
        any::<bool>(),
        prop::option::of(text()),
        text(),
        prop::collection::vec(("[a-zA-Z:]{1,8}", text()), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["", "", "\n", "\n  ", "\r\n", "\t"]),
    )
        .prop_map(
            |(
                declaration,
                spelling,
                destination,
                issuer,
                name_id,
                attributes,
                signed,
                conditions,
                gap,
            )| {
                Response {
                    declaration,
                    spelling,
                    destination,
                    issuer,
                    name_id,
                    attributes,
                    signed,
                    conditions,
                    gap,
                }
            },
        )
}

/// A change an attacker or a broken IdP makes to a response.
#[derive(Clone, Debug)]
enum Mutation {
    /// `snippet` inserted after the `at`-th `>` (or at the very start).
    Insert { at: usize, snippet: String },
    /// `attribute` added after the name of the `at`-th start tag.
    Attribute { at: usize, attribute: String },
    /// The character at `at` (scaled to the length) removed.
    Delete { at: usize },
    /// Everything from `at` (scaled) on removed.
    Truncate { at: usize },
}

fn snippet() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        // What precheck refuses outright.
        "<!---->",
        "<!-- x -->",
        "<!-- a -- b -->",
        "<?pi x?>",
        "<?xml version=\"1.0\"?>",
        "<![CDATA[x]]>",
        "]]>",
        "&xxe;",
        "&#0;",
        "&#xD800;",
        "&#1114112;",
        "<!DOCTYPE Response>",
        "<!DOCTYPE r [<!ENTITY e \"x\">]>",
        "<!ENTITY e \"x\">",
        // What precheck allows.
        "&amp;",
        "&lt;&gt;&quot;&apos;",
        "&#x41;",
        "&#x10FFFF;",
        "\r\n",
        "\u{85}\u{2028}",
        "\u{FEFF}",
        "\u{1}",
        "\u{0}",
        // Elements that change the counts.
        "<saml:Assertion ID=\"_n\" Version=\"2.0\"/>",
        "<saml:Advice><saml:Assertion ID=\"_n\"/></saml:Advice>",
        "<Assertion xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\"/>",
        "<x:Assertion xmlns:x=\"urn:oasis:names:tc:SAML:2.0:assertion\"/>",
        "<saml:Assertion xmlns:saml=\"urn:evil\"/>",
        "<evil:Assertion/>",
        "<Assertion/>",
        "<saml:EncryptedAssertion/>",
        "<samlp:Response/>",
        "<Response xmlns=\"urn:evil\"/>",
        "<samlp:Extensions xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"><samlp:Response/></samlp:Extensions>",
        "</saml:Assertion>",
        "<a>",
        "</a>",
        "<a/>",
        // UTF-7 spellings of markup: text in UTF-8, markup to a UTF-7 reader.
        "+ADw-!--x--+AD4-",
        "+ADw-?pi x?+AD4-",
        "+ADw-saml:Assertion ID=+ACI-_u+ACI-/+AD4-",
        "+ADw-/saml:Assertion+AD4-",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        6 => fixed,
        1 => "[<>/?!&;#a-z:=\"' \\[\\]-]{1,8}",
    ]
}

fn attribute() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        " ID=\"_dup\"",
        " ID=\"_a1\"",
        " ID=\"_r1\"",
        " xml:id=\"_x\"",
        " xml:id=\"1bad\"",
        " xmlns:saml=\"urn:evil\"",
        " xmlns:samlp=\"urn:evil\"",
        " xmlns=\"urn:evil\"",
        " xmlns=\"\"",
        " xmlns:saml=\"\"",
        " xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"",
        " xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"",
        " xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\"",
        " xmlns:xml=\"http://www.w3.org/XML/1998/namespace\"",
        " xmlns:xml=\"urn:evil\"",
        " xml:lang=\"en\"",
        " xml:space=\"preserve\"",
        " a=\"&#60;\"",
        " a=\"<\"",
        " a='x\"y'",
        " a=\"&e;\"",
        " Destination=\"https://evil.example.com/acs\"",
        " x:Destination=\"https://evil.example.com/acs\"",
    ])
    .prop_map(str::to_owned)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), snippet()).prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        3 => (any::<usize>(), attribute())
            .prop_map(|(at, attribute)| Mutation::Attribute { at, attribute }),
        1 => any::<usize>().prop_map(|at| Mutation::Delete { at }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

impl Mutation {
    fn apply(&self, xml: &mut String) {
        match self {
            Self::Insert { at, snippet } => {
                let mut places = vec![0];
                places.extend(xml.match_indices('>').map(|(i, _)| i + 1));
                xml.insert_str(places[at % places.len()], snippet);
            }
            Self::Attribute { at, attribute } => {
                let places: Vec<usize> = xml
                    .match_indices('<')
                    .filter(|(i, _)| {
                        xml[i + 1..]
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_alphabetic())
                    })
                    .map(|(i, _)| {
                        i + 1
                            + xml[i + 1..]
                                .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                                .unwrap_or(0)
                    })
                    .collect();
                if !places.is_empty() {
                    xml.insert_str(places[at % places.len()], attribute);
                }
            }
            Self::Delete { at } => {
                if let Some((i, _)) = xml.char_indices().nth(at % xml.len().max(1)) {
                    xml.remove(i);
                }
            }
            Self::Truncate { at } => {
                if let Some((i, _)) = xml.char_indices().nth(at % xml.len().max(1)) {
                    xml.truncate(i);
                }
            }
        }
    }
}

/// How the document's characters become bytes.
#[derive(Clone, Copy, Debug)]
enum Bytes {
    Utf8,
    Utf8Bom,
    Utf16LeBom,
    Utf16BeBom,
    Utf16Le,
}

impl Bytes {
    fn encode(self, xml: &str) -> Vec<u8> {
        let utf16 = || xml.encode_utf16();
        match self {
            Self::Utf8 => xml.as_bytes().to_vec(),
            Self::Utf8Bom => [&[0xEF, 0xBB, 0xBF], xml.as_bytes()].concat(),
            Self::Utf16LeBom => [0xFF, 0xFE]
                .into_iter()
                .chain(utf16().flat_map(u16::to_le_bytes))
                .collect(),
            Self::Utf16BeBom => [0xFE, 0xFF]
                .into_iter()
                .chain(utf16().flat_map(u16::to_be_bytes))
                .collect(),
            Self::Utf16Le => utf16().flat_map(u16::to_le_bytes).collect(),
        }
    }
}

fn bytes_form() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        12 => Just(Bytes::Utf8),
        1 => Just(Bytes::Utf8Bom),
        1 => Just(Bytes::Utf16LeBom),
        1 => Just(Bytes::Utf16BeBom),
        1 => Just(Bytes::Utf16Le),
    ]
}

/// A response, mutated, as bytes.
fn document() -> impl Strategy<Value = Doc> {
    (
        response(),
        prop::collection::vec(mutation(), 0..4),
        bytes_form(),
    )
        .prop_map(|(response, mutations, form)| {
            let mut xml = response.render();
            for mutation in &mutations {
                mutation.apply(&mut xml);
            }
            Doc(form.encode(&xml))
        })
}

// ---------------------------------------------------------------------------
// The properties

/// Documents precheck accepts today though libxml refuses them or sees
/// another document, one of each kind found. The stricter precheck in
/// progress refuses those with a declared encoding; the others are XML that
/// quick-xml accepts though it is not well-formed. Until precheck refuses
/// them, the test checks that each is a true witness (accepted, and libxml
/// disagrees); after, that precheck refuses it: it passes before and after.
fn open_disagreements() -> Vec<(&'static str, String)> {
    let response = |declaration: &str, name_id: &str| {
        Response {
            declaration: Some(declaration.to_owned()),
            spelling: Spelling {
                protocol: "samlp",
                assertion: "saml",
                assertion_prefix_on_root: false,
            },
            destination: true,
            issuer: None,
            name_id: String::new(),
            attributes: Vec::new(),
            signed: false,
            conditions: false,
            gap: "",
        }
        .render()
        .replace(
            "<saml:NameID></saml:NameID>",
            &format!("<saml:NameID>{name_id}</saml:NameID>"),
        )
    };
    let utf8 = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
    vec![
        (
            "UTF-7 hides a second Assertion in text",
            response(
                r#"<?xml version="1.0" encoding="UTF-7"?>"#,
                "+ADw-/saml:NameID+AD4-+ADw-/saml:Subject+AD4-+ADw-saml:Assertion ID=+ACI-_b+ACI-/+AD4-+ADw-saml:Subject+AD4-+ADw-saml:NameID+AD4-",
            ),
        ),
        (
            "UTF-7 hides a comment in text",
            response(
                r#"<?xml version="1.0" encoding="UTF-7"?>"#,
                "admin+ADw-!----+AD4-.evil",
            ),
        ),
        (
            "a declared EBCDIC encoding",
            response(r#"<?xml version="1.0" encoding="IBM037"?>"#, "alice"),
        ),
        (
            "a declared UTF-16 encoding on UTF-8 bytes",
            response(r#"<?xml version="1.0" encoding="UTF-16"?>"#, "alice"),
        ),
        (
            "an XML declaration without a version first",
            response(r#"<?xml encoding="UTF-8"?>"#, "alice"),
        ),
        (
            "a second XML declaration before the root",
            format!(r#"<?xml version="1.0"?>{}"#, response(utf8, "alice")),
        ),
        (
            "a version that is no XML version",
            response(r#"<?xml version=".0"?>"#, "alice"),
        ),
        (
            "an unknown pseudo-attribute in the XML declaration",
            response(r#"<?xml version="1.0" ncoding="UTF-8"?>"#, "alice"),
        ),
        (
            "attributes without whitespace between them",
            response(utf8, "alice").replace(r#"" ID="_a1""#, r#""ID="_a1""#),
        ),
        (
            "whitespace before the XML declaration",
            format!("\n{}", response(utf8, "alice")),
        ),
        (
            "a C0 control character in text",
            response(utf8, "al\u{1}ice"),
        ),
        ("U+FFFE in text", response(utf8, "al\u{FFFE}ice")),
        ("`]]>` in text", response(utf8, "alice]]>")),
        (
            "an element name with characters names cannot hold",
            response(utf8, "alice")
                .replace("<saml:Issuer>idp</saml:Issuer>", "<saml:Issuer=\"x\"/>"),
        ),
        (
            "a raw `<` in an attribute value",
            response(utf8, "alice").replace(" ID=\"_a1\"", " ID=\"_a1\" a=\"<\""),
        ),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn decode_and_precheck_never_panic_on_arbitrary_text(text in any::<String>()) {
        let _ = decode(&text);
        let _ = precheck(&text, ACS);
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn decode_and_precheck_never_panic_on_xml_like_text(
        text in "[<>/?!&;#a-zA-Z0-9:=\"' \\[\\]\\-]{0,120}",
    ) {
        let _ = precheck(&text, ACS);
        let verdict = agreement(text.as_bytes());
        prop_assert!(!matches!(verdict, Err(Disagreement::Differs(_))), "{:?}: {:?}", text, verdict);
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let decoded = decode(&encoded);
        prop_assert_eq!(decoded.ok(), String::from_utf8(bytes).ok());
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn what_precheck_accepts_libxml_sees_the_same_way(doc in document()) {
        match agreement(&doc.0) {
            Ok(()) => {}
            // quick-xml accepts much XML that is not well-formed and libxml
            // refuses (`open_disagreements` lists the kinds found); a
            // document libxml does parse must be the one precheck saw.
            Err(Disagreement::Refused(_)) => {}
            Err(Disagreement::Differs(why)) => prop_assert!(
                known_open_disagreement(&doc.0) == Some(DECLARED_ENCODING),
                "{}\n{:?}",
                why,
                doc
            ),
        }
    }
}

#[test]
fn unmutated_responses_are_accepted_and_agree() {
    // The generator's base documents are valid, so the property above
    // exercises acceptance, not only refusal.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = response();
    let mut accepted = 0;
    for _ in 0..200 {
        let response = strategy
            .new_tree(&mut runner)
            .expect("a response")
            .current();
        let xml = response.render();
        if known_open_disagreement(xml.as_bytes()).is_some() {
            continue;
        }
        assert_eq!(precheck(&xml, ACS).map(|_| ()), Ok(()), "{xml}");
        assert_eq!(agreement(xml.as_bytes()), Ok(()), "{xml}");
        accepted += 1;
    }
    assert!(accepted > 100, "{accepted} of 200 were plain responses");
}

#[test]
fn open_disagreements_are_witnesses_or_refused() {
    for (name, xml) in open_disagreements() {
        let bytes = xml.as_bytes();
        assert!(
            !accepted(bytes) || agreement(bytes).is_err(),
            "{name}: precheck accepts and libxml agrees, so it is no witness\n{xml:?}"
        );
    }
}
