//! SCIM schemas (RFC 7643): the attribute definitions of User, the Enterprise
//! User extension and Group, with their RFC 7643 §7 characteristics, the JSON
//! the `/Schemas` endpoint returns, and attribute lookup by name.
//!
//! Everything here is static data and pure functions. The filter evaluator
//! and the PATCH engine read these definitions to know an attribute's type,
//! whether string comparison is case-exact, and whether a client may write it.

use serde_json::{Map, Value, json};

pub use crate::urns::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SCHEMA_SCHEMA, USER_SCHEMA};

/// RFC 7643 §2.3 data types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    /// Base64 text. Only `x509Certificates.value` uses it (RFC 7643 §4.1.2).
    Binary,
    Reference,
    Complex,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::DateTime => "dateTime",
            Self::Binary => "binary",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

/// RFC 7643 §7 `mutability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    /// May be set once (at creation, or while unassigned) and never changed.
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnly",
            Self::ReadWrite => "readWrite",
            Self::Immutable => "immutable",
            Self::WriteOnly => "writeOnly",
        }
    }
}

/// RFC 7643 §7 `returned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Never => "never",
            Self::Default => "default",
            Self::Request => "request",
        }
    }
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Server => "server",
            Self::Global => "global",
        }
    }
}

/// One attribute definition with its RFC 7643 §7 characteristics.
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: AttributeType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
}

impl Attribute {
    /// The sub-attribute called `name`, compared case-insensitively
    /// (RFC 7643 §2.1: attribute names are case-insensitive).
    pub fn sub_attribute(&self, name: &str) -> Option<&'static Attribute> {
        find_by_name(self.sub_attributes, name)
    }

    pub fn is_complex(&self) -> bool {
        self.kind == AttributeType::Complex
    }

    /// The attribute's characteristics as RFC 7643 §7 renders them.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert("type".into(), json!(self.kind.as_str()));
        out.insert("multiValued".into(), json!(self.multi_valued));
        out.insert("description".into(), json!(self.description));
        out.insert("required".into(), json!(self.required));
        if !self.is_complex() {
            out.insert("caseExact".into(), json!(self.case_exact));
        }
        if !self.canonical_values.is_empty() {
            out.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        out.insert("mutability".into(), json!(self.mutability.as_str()));
        out.insert("returned".into(), json!(self.returned.as_str()));
        out.insert("uniqueness".into(), json!(self.uniqueness.as_str()));
        if self.kind == AttributeType::Reference {
            out.insert("referenceTypes".into(), json!(self.reference_types));
        }
        if self.is_complex() {
            let subs: Vec<Value> = self.sub_attributes.iter().map(Attribute::to_json).collect();
            out.insert("subAttributes".into(), Value::Array(subs));
        }
        Value::Object(out)
    }

    const fn new(name: &'static str, kind: AttributeType, description: &'static str) -> Self {
        Self {
            name,
            kind,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
        }
    }

    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    const fn mandatory(mut self) -> Self {
        self.required = true;
        self
    }

    const fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    const fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }

    const fn immutable(mut self) -> Self {
        self.mutability = Mutability::Immutable;
        self
    }

    const fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self
    }

    const fn always_returned(mut self) -> Self {
        self.returned = Returned::Always;
        self
    }

    const fn never_returned(mut self) -> Self {
        self.returned = Returned::Never;
        self
    }

    const fn server_unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }

    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttributeType::String, description)
}

const fn boolean(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttributeType::Boolean, description)
}

const fn date_time(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttributeType::DateTime, description)
}

const fn reference(
    name: &'static str,
    reference_types: &'static [&'static str],
    description: &'static str,
) -> Attribute {
    let mut attribute = Attribute::new(name, AttributeType::Reference, description);
    attribute.reference_types = reference_types;
    attribute
}

const fn complex(
    name: &'static str,
    sub_attributes: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    let mut attribute = Attribute::new(name, AttributeType::Complex, description);
    attribute.sub_attributes = sub_attributes;
    attribute
}

/// A schema: its URN, name and attributes.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
    /// Extension attributes live in the resource under a key named after
    /// the schema URN (RFC 7643 §3.3); core attributes live at the top.
    pub extension: bool,
}

impl Schema {
    /// The attribute called `name`, compared case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        find_by_name(self.attributes, name)
    }

    /// The schema representation the `/Schemas` endpoint returns
    /// (RFC 7643 §7, §8.7.1). The caller adds `meta.location`.
    pub fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(Attribute::to_json).collect();
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": { "resourceType": "Schema" },
        })
    }
}

fn find_by_name(attributes: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    attributes
        .iter()
        .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
}

// ---------------------------------------------------------------------------
// Common attributes (RFC 7643 §3.1). They belong to every resource but to no
// schema, so `/Schemas` does not list them (as in RFC 7643 §8.7.1); lookup
// finds them for both User and Group, with or without the core schema URN.

const META_SUBS: &[Attribute] = &[
    string(
        "resourceType",
        "The name of the resource type of the resource.",
    )
    .exact()
    .read_only(),
    date_time(
        "created",
        "The date and time the resource was added to the service provider.",
    )
    .read_only(),
    date_time(
        "lastModified",
        "The most recent date and time the resource was modified.",
    )
    .read_only(),
    reference(
        "location",
        &["uri"],
        "The URI of the resource being returned.",
    )
    .exact()
    .read_only(),
    string(
        "version",
        "The version (ETag) of the resource being returned.",
    )
    .exact()
    .read_only(),
];

/// `id`, `externalId` and `meta`.
pub static COMMON_ATTRIBUTES: &[Attribute] = &[
    string(
        "id",
        "A unique identifier for a SCIM resource as defined by the service provider.",
    )
    .exact()
    .read_only()
    .always_returned()
    .server_unique(),
    string(
        "externalId",
        "A String that is an identifier for the resource as defined by the provisioning client.",
    )
    .exact(),
    complex(
        "meta",
        META_SUBS,
        "A complex attribute containing resource metadata.",
    )
    .read_only(),
];

// ---------------------------------------------------------------------------
// User (RFC 7643 §4.1, §8.7.1)

const NAME_SUBS: &[Attribute] = &[
    string(
        "formatted",
        "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display.",
    ),
    string(
        "familyName",
        "The family name of the User, or last name in most Western languages.",
    ),
    string(
        "givenName",
        "The given name of the User, or first name in most Western languages.",
    ),
    string("middleName", "The middle name(s) of the User."),
    string(
        "honorificPrefix",
        "The honorific prefix(es) of the User, or title in most Western languages.",
    ),
    string("honorificSuffix", "The honorific suffix(es) of the User."),
];

const EMAIL_SUBS: &[Attribute] = &[
    string(
        "value",
        "Email address for the User. Canonicalised as described in RFC 5321.",
    ),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'work' or 'home'.",
    )
    .canonical(&["work", "home", "other"]),
    boolean(
        "primary",
        "Whether this is the preferred mailing address or primary email address.",
    ),
];

const PHONE_SUBS: &[Attribute] = &[
    string("value", "Phone number of the User."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'work', 'home', 'mobile'.",
    )
    .canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
    boolean(
        "primary",
        "Whether this is the preferred phone number or primary phone number.",
    ),
];

const IM_SUBS: &[Attribute] = &[
    string("value", "Instant messaging address for the User."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'aim', 'gtalk', 'xmpp'.",
    )
    .canonical(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    boolean(
        "primary",
        "Whether this is the preferred messenger or primary messenger.",
    ),
];

const PHOTO_SUBS: &[Attribute] = &[
    reference("value", &["external"], "URL of a photo of the User.").exact(),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the attribute's function, i.e., 'photo' or 'thumbnail'.",
    )
    .canonical(&["photo", "thumbnail"]),
    boolean(
        "primary",
        "Whether this is the preferred photo or thumbnail.",
    ),
];

const ADDRESS_SUBS: &[Attribute] = &[
    string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    string(
        "streetAddress",
        "The full street address component, which may include house number, street name, P.O. box, and multi-line extended street address information.",
    ),
    string("locality", "The city or locality component."),
    string("region", "The state or region component."),
    string("postalCode", "The zip code or postal code component."),
    string("country", "The country name component."),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'work' or 'home'.",
    )
    .canonical(&["work", "home", "other"]),
    boolean("primary", "Whether this is the preferred mailing address."),
];

const GROUPS_SUBS: &[Attribute] = &[
    string("value", "The identifier of the User's group.").read_only(),
    reference(
        "$ref",
        &["User", "Group"],
        "The URI of the corresponding 'Group' resource to which the user belongs.",
    )
    .read_only(),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    )
    .read_only(),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'direct' or 'indirect'.",
    )
    .canonical(&["direct", "indirect"])
    .read_only(),
];

const ENTITLEMENT_SUBS: &[Attribute] = &[
    string("value", "The value of an entitlement."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the preferred entitlement."),
];

const ROLE_SUBS: &[Attribute] = &[
    string("value", "The value of a role."),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the preferred role."),
];

const X509_SUBS: &[Attribute] = &[
    Attribute::new(
        "value",
        AttributeType::Binary,
        "The value of an X.509 certificate.",
    )
    .exact(),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    string("type", "A label indicating the attribute's function."),
    boolean("primary", "Whether this is the preferred certificate."),
];

const USER_ATTRIBUTES: &[Attribute] = &[
    string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
        .mandatory()
        .server_unique(),
    complex("name", NAME_SUBS, "The components of the user's real name."),
    string("displayName", "The name of the User, suitable for display to end-users."),
    string("nickName", "The casual way to address the user in real life."),
    reference("profileUrl", &["external"], "A fully qualified URL pointing to a page representing the User's online profile."),
    string("title", "The user's title, such as \"Vice President\"."),
    string("userType", "Used to identify the relationship between the organization and the user, e.g., 'Contractor', 'Employee'."),
    string("preferredLanguage", "Indicates the User's preferred written or spoken language, e.g., 'en-US'."),
    string("locale", "Used to indicate the User's default location for localizing items, e.g., 'en-US'."),
    string("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
    boolean("active", "A Boolean value indicating the User's administrative status."),
    string("password", "The User's cleartext password, used to set or compare it. Never returned.")
        .write_only()
        .never_returned(),
    complex("emails", EMAIL_SUBS, "Email addresses for the user.").multi(),
    complex("phoneNumbers", PHONE_SUBS, "Phone numbers for the User.").multi(),
    complex("ims", IM_SUBS, "Instant messaging addresses for the User.").multi(),
    complex("photos", PHOTO_SUBS, "URLs of photos of the User.").multi(),
    complex("addresses", ADDRESS_SUBS, "A physical mailing address for this User.").multi(),
    complex("groups", GROUPS_SUBS, "A list of groups to which the user belongs, either through direct membership or through nested groups.")
        .multi()
        .read_only(),
    complex("entitlements", ENTITLEMENT_SUBS, "A list of entitlements for the User that represent a thing the User has.").multi(),
    complex("roles", ROLE_SUBS, "A list of roles for the User that collectively represent who the User is, e.g., 'Student', 'Faculty'.").multi(),
    complex("x509Certificates", X509_SUBS, "A list of certificates issued to the User.").multi(),
];

pub static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
    extension: false,
};

// ---------------------------------------------------------------------------
// Enterprise User extension (RFC 7643 §4.3, §8.7.1)

const MANAGER_SUBS: &[Attribute] = &[
    string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    )
    .exact(),
    reference(
        "$ref",
        &["User"],
        "The URI of the SCIM resource representing the User's manager.",
    ),
    string("displayName", "The displayName of the User's manager.").read_only(),
];

const ENTERPRISE_USER_ATTRIBUTES: &[Attribute] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person, typically based on order of hire or association with an organization.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex("manager", MANAGER_SUBS, "The User's manager."),
];

pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_USER_ATTRIBUTES,
    extension: true,
};

// ---------------------------------------------------------------------------
// Group (RFC 7643 §4.2, §8.7.1)

const MEMBER_SUBS: &[Attribute] = &[
    // Member ids are resource ids, and ids are case-exact (RFC 7643 §3.1).
    string("value", "Identifier of the member of this Group.")
        .exact()
        .immutable(),
    reference(
        "$ref",
        &["User", "Group"],
        "The URI corresponding to a SCIM resource that is a member of this Group.",
    )
    .immutable(),
    // Not in RFC 7643 §8.7.1, but §2.4 gives every multi-valued attribute a
    // `display`, and Okta sends one with each member.
    string(
        "display",
        "A human-readable name for the member, primarily used for display purposes.",
    ),
    string(
        "type",
        "A label indicating the type of resource, e.g., 'User' or 'Group'.",
    )
    .canonical(&["User", "Group"])
    .immutable(),
];

const GROUP_ATTRIBUTES: &[Attribute] = &[
    // RFC 7643 §4.2 calls displayName REQUIRED.
    string("displayName", "A human-readable name for the Group.").mandatory(),
    complex("members", MEMBER_SUBS, "A list of members of the Group.").multi(),
];

pub static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
    extension: false,
};

/// Every schema the `/Schemas` endpoint lists for resources.
pub fn resource_schemas() -> [&'static Schema; 3] {
    [&USER, &ENTERPRISE_USER, &GROUP]
}

/// The resource schema with this URN, compared case-insensitively
/// (schema URNs are case-insensitive, RFC 7643 §2.1).
pub fn schema_by_id(id: &str) -> Option<&'static Schema> {
    resource_schemas()
        .into_iter()
        .find(|schema| schema.id.eq_ignore_ascii_case(id))
}

static USER_EXTENSIONS: [&Schema; 1] = [&ENTERPRISE_USER];

/// The SCIM resource types Roster serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    User,
    Group,
}

impl ResourceType {
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    pub fn core_schema(self) -> &'static Schema {
        match self {
            Self::User => &USER,
            Self::Group => &GROUP,
        }
    }

    pub fn extensions(self) -> &'static [&'static Schema] {
        match self {
            Self::User => &USER_EXTENSIONS,
            Self::Group => &[],
        }
    }

    /// The extension schema of this resource type with this URN.
    pub fn extension(self, urn: &str) -> Option<&'static Schema> {
        self.extensions()
            .iter()
            .copied()
            .find(|schema| schema.id.eq_ignore_ascii_case(urn))
    }
}

/// Where an attribute path landed: the schema, the attribute and, for
/// `name.givenName`-style paths, the sub-attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributeRef {
    pub schema: &'static Schema,
    pub attribute: &'static Attribute,
    pub sub_attribute: Option<&'static Attribute>,
}

impl AttributeRef {
    /// The definition the path finally names: the sub-attribute if there is
    /// one, else the attribute.
    pub fn target(&self) -> &'static Attribute {
        self.sub_attribute.unwrap_or(self.attribute)
    }

    /// The key under which the attribute's schema keeps its attributes in
    /// the resource, or `None` for top-level (core and common) attributes.
    pub fn container(&self) -> Option<&'static str> {
        self.schema.extension.then_some(self.schema.id)
    }
}

/// Finds the definition of `[urn:]name[.sub]` for a resource type, ignoring
/// case (RFC 7643 §2.1). Core and common attributes are found with or without
/// the core schema URN; extension attributes only with their URN, because an
/// unqualified name means the core schema (RFC 7644 §3.10).
pub fn find(
    resource_type: ResourceType,
    urn: Option<&str>,
    name: &str,
    sub: Option<&str>,
) -> Option<AttributeRef> {
    let (schema, attribute) = find_attribute(resource_type, urn, name)?;
    let sub_attribute = match sub {
        Some(sub) => Some(attribute.sub_attribute(sub)?),
        None => None,
    };
    Some(AttributeRef {
        schema,
        attribute,
        sub_attribute,
    })
}

/// Finds a top-level attribute (no sub-attribute) and the schema it is in.
pub fn find_attribute(
    resource_type: ResourceType,
    urn: Option<&str>,
    name: &str,
) -> Option<(&'static Schema, &'static Attribute)> {
    let core = resource_type.core_schema();
    match urn {
        Some(urn) if !urn.eq_ignore_ascii_case(core.id) => {
            let extension = resource_type.extension(urn)?;
            Some((extension, extension.attribute(name)?))
        }
        _ => {
            let attribute =
                find_by_name(COMMON_ATTRIBUTES, name).or_else(|| core.attribute(name))?;
            Some((core, attribute))
        }
    }
}

/// The member of a JSON object whose key matches `name` ignoring case:
/// attribute names are case-insensitive (RFC 7643 §2.1), so a resource or
/// request may spell a key differently from the schema.
pub fn get_ignore_case<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    member_ignore_case(object.as_object()?, name)
}

/// [`get_ignore_case`] on a map.
pub fn member_ignore_case<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// Parses an `xsd:dateTime` (RFC 7643 §2.3.5), e.g. `2008-01-23T04:56:22Z`
/// or `2011-05-13T04:42:34.123+02:00`, into nanoseconds since the Unix epoch,
/// so that dateTimes in different offsets compare chronologically. A value
/// without an offset is taken as UTC.
pub fn parse_date_time(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0i64, |n, b| Some(n * 10 + i64::from(b - b'0')))
    };
    let at = |index: usize, expected: u8| bytes.get(index) == Some(&expected);
    if !(at(4, b'-') && at(7, b'-') && matches!(bytes.get(10), Some(b'T' | b't'))) {
        return None;
    }
    if !(at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = 19;
    let mut nanos: i128 = 0;
    if at(rest, b'.') {
        let start = rest + 1;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        if end == start {
            return None;
        }
        // Only the first nine digits fit in nanoseconds; the rest is noise.
        let kept = &text[start..end.min(start + 9)];
        nanos = kept.parse::<i128>().ok()? * 10i128.pow(9 - kept.len() as u32);
        rest = end;
    }
    let offset_seconds = match bytes.get(rest) {
        None => 0,
        Some(b'Z' | b'z') if rest + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if rest + 6 == bytes.len() && at(rest + 3, b':') => {
            let (hours, minutes) = (digits(rest + 1..rest + 3)?, digits(rest + 4..rest + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::attr_path::AttrPath;

    fn user(path: &str) -> Option<AttributeRef> {
        lookup(ResourceType::User, path)
    }

    fn lookup(resource_type: ResourceType, path: &str) -> Option<AttributeRef> {
        AttrPath::parse(path).unwrap().resolve(resource_type)
    }

    #[test]
    fn user_name_is_required_case_insensitive_and_unique_per_server() {
        let user_name = user("userName").unwrap().target();
        assert!(user_name.required);
        assert!(!user_name.case_exact);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);
        assert_eq!(user_name.kind, AttributeType::String);
    }

    #[test]
    fn id_is_case_exact_and_read_only_for_users_and_groups() {
        for resource_type in [ResourceType::User, ResourceType::Group] {
            let id = lookup(resource_type, "id").unwrap().target();
            assert!(id.case_exact);
            assert_eq!(id.mutability, Mutability::ReadOnly);
            assert_eq!(id.returned, Returned::Always);
        }
    }

    #[test]
    fn external_id_is_case_exact() {
        assert!(user("externalId").unwrap().target().case_exact);
    }

    #[test]
    fn password_is_write_only_and_never_returned() {
        let password = user("password").unwrap().target();
        assert_eq!(password.mutability, Mutability::WriteOnly);
        assert_eq!(password.returned, Returned::Never);
    }

    #[test]
    fn groups_of_a_user_are_read_only() {
        let groups = user("groups").unwrap().target();
        assert!(groups.multi_valued);
        assert_eq!(groups.mutability, Mutability::ReadOnly);
    }

    #[test]
    fn the_user_schema_has_every_rfc_attribute() {
        let names: Vec<&str> = USER.attributes.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
                "displayName",
                "nickName",
                "profileUrl",
                "title",
                "userType",
                "preferredLanguage",
                "locale",
                "timezone",
                "active",
                "password",
                "emails",
                "phoneNumbers",
                "ims",
                "photos",
                "addresses",
                "groups",
                "entitlements",
                "roles",
                "x509Certificates",
            ]
        );
        let name_parts: Vec<&str> = USER
            .attribute("name")
            .unwrap()
            .sub_attributes
            .iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(
            name_parts,
            [
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix"
            ]
        );
    }

    #[test]
    fn lookup_ignores_case() {
        let found = user("USERNAME").unwrap();
        assert_eq!(found.attribute.name, "userName");
        let found = user("Name.GivenName").unwrap();
        assert_eq!(found.target().name, "givenName");
    }

    #[test]
    fn core_attributes_may_be_qualified_with_the_core_urn() {
        let found = user("urn:ietf:params:scim:schemas:core:2.0:User:userName").unwrap();
        assert_eq!(found.attribute.name, "userName");
        assert_eq!(found.container(), None);
        let found = user("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:name.familyName").unwrap();
        assert_eq!(found.target().name, "familyName");
    }

    #[test]
    fn common_attributes_may_be_qualified_with_the_core_urn() {
        let found = user("urn:ietf:params:scim:schemas:core:2.0:User:id").unwrap();
        assert_eq!(found.attribute.name, "id");
        let found = lookup(
            ResourceType::Group,
            "urn:ietf:params:scim:schemas:core:2.0:Group:meta.lastModified",
        )
        .unwrap();
        assert_eq!(found.target().kind, AttributeType::DateTime);
    }

    #[test]
    fn enterprise_attributes_are_found_only_when_urn_qualified() {
        let found =
            user("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber")
                .unwrap();
        assert_eq!(found.attribute.name, "employeeNumber");
        assert_eq!(found.container(), Some(ENTERPRISE_USER_SCHEMA));
        assert!(user("employeeNumber").is_none());
    }

    #[test]
    fn enterprise_manager_value_is_a_sub_attribute() {
        let found =
            user("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap();
        assert_eq!(found.attribute.name, "manager");
        assert_eq!(found.target().name, "value");
        let display_name =
            user("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName")
                .unwrap();
        assert_eq!(display_name.target().mutability, Mutability::ReadOnly);
    }

    #[test]
    fn a_group_has_no_enterprise_extension() {
        assert!(
            lookup(
                ResourceType::Group,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
            )
            .is_none()
        );
        assert!(lookup(ResourceType::Group, "userName").is_none());
    }

    #[test]
    fn a_core_urn_of_the_other_resource_type_finds_nothing() {
        assert!(user("urn:ietf:params:scim:schemas:core:2.0:Group:displayName").is_none());
    }

    #[test]
    fn group_members_have_value_ref_display_and_type() {
        let members = lookup(ResourceType::Group, "members").unwrap().attribute;
        assert!(members.multi_valued);
        let names: Vec<&str> = members.sub_attributes.iter().map(|a| a.name).collect();
        assert_eq!(names, ["value", "$ref", "display", "type"]);
        assert!(lookup(ResourceType::Group, "members.$REF").is_some());
    }

    #[test]
    fn unknown_attributes_and_sub_attributes_find_nothing() {
        assert!(user("shoeSize").is_none());
        assert!(user("name.nickName").is_none());
        assert!(user("userName.value").is_none());
    }

    #[test]
    fn schema_json_follows_rfc_7643_section_7() {
        let json = USER.to_json();
        assert_eq!(json["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!(json["id"], USER_SCHEMA);
        assert_eq!(json["name"], "User");
        assert_eq!(json["description"], "User Account");
        assert_eq!(json["meta"], json!({"resourceType": "Schema"}));
        let user_name = &json["attributes"][0];
        assert_eq!(
            user_name,
            &json!({
                "name": "userName",
                "type": "string",
                "multiValued": false,
                "description": USER.attributes[0].description,
                "required": true,
                "caseExact": false,
                "mutability": "readWrite",
                "returned": "default",
                "uniqueness": "server",
            })
        );
    }

    #[test]
    fn schema_json_lists_sub_attributes_canonical_values_and_reference_types() {
        let json = GROUP.to_json();
        let members = &json["attributes"][1];
        assert_eq!(members["name"], "members");
        assert_eq!(members["multiValued"], true);
        assert!(members.get("caseExact").is_none());
        let subs = members["subAttributes"].as_array().unwrap();
        assert_eq!(subs[1]["referenceTypes"], json!(["User", "Group"]));
        assert_eq!(subs[3]["canonicalValues"], json!(["User", "Group"]));
        assert_eq!(subs[0]["mutability"], "immutable");
    }

    #[test]
    fn schema_json_leaves_out_common_attributes() {
        let json = USER.to_json();
        let names: Vec<&str> = json["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"id"));
        assert!(!names.contains(&"meta"));
    }

    #[test]
    fn enterprise_schema_json_is_named_enterprise_user() {
        let json = ENTERPRISE_USER.to_json();
        assert_eq!(json["id"], ENTERPRISE_USER_SCHEMA);
        assert_eq!(json["name"], "EnterpriseUser");
        assert_eq!(
            json["attributes"][5]["subAttributes"][1]["referenceTypes"],
            json!(["User"])
        );
    }

    #[test]
    fn schemas_are_found_by_urn_ignoring_case() {
        assert_eq!(
            schema_by_id("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:GROUP"),
            Some(&GROUP)
        );
        assert_eq!(schema_by_id(ENTERPRISE_USER_SCHEMA), Some(&ENTERPRISE_USER));
        assert_eq!(schema_by_id("urn:example:unknown"), None);
    }

    #[test]
    fn object_members_are_found_ignoring_case() {
        let object = json!({"UserName": "a", "active": true});
        assert_eq!(get_ignore_case(&object, "userName"), Some(&json!("a")));
        assert_eq!(get_ignore_case(&object, "active"), Some(&json!(true)));
        assert_eq!(get_ignore_case(&object, "title"), None);
    }

    #[test]
    fn date_times_parse_to_nanoseconds_since_the_epoch() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_date_time("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_date_time("2000-03-01T00:00:00Z"),
            Some(951_868_800 * 1_000_000_000)
        );
        assert_eq!(parse_date_time("1970-01-01T00:00:00"), Some(0));
    }

    #[test]
    fn date_times_in_different_offsets_compare_chronologically() {
        let utc = parse_date_time("2011-05-13T04:42:34Z").unwrap();
        let plus_two = parse_date_time("2011-05-13T06:42:34+02:00").unwrap();
        let minus_one = parse_date_time("2011-05-13T03:42:34-01:00").unwrap();
        assert_eq!(utc, plus_two);
        assert_eq!(utc, minus_one);
    }

    #[test]
    fn malformed_date_times_are_rejected() {
        for text in [
            "",
            "2011-05-13",
            "2011-13-01T00:00:00Z",
            "2011-02-29T00:00:00Z",
            "2011-05-13T24:00:00Z",
            "2011-05-13T04:42:34.Z",
            "2011-05-13T04:42:34+0200",
            "2011-05-13T04:42:34Zjunk",
            "yesterday",
        ] {
            assert_eq!(parse_date_time(text), None, "{text}");
        }
        assert!(parse_date_time("2012-02-29T00:00:00Z").is_some());
    }
}
