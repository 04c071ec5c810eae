//! SCIM filters (RFC 7644 §3.4.2.2): parser, validator and evaluator.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! ```
//!
//! `and` binds tighter than `or`, both associate to the left, and parentheses
//! group. Attribute names, operators and keywords are case-insensitive
//! (PingOne sends `Eq` and `Co`). URL decoding, including OneLogin's `+` for
//! a space, is the HTTP layer's job: this module sees the decoded text.
//!
//! A filter is evaluated against the SCIM JSON representation of a resource:
//! core attributes at the top level, extension attributes under their schema
//! URN. Because an invalid filter must be answered with 400 `invalidFilter`,
//! never with an empty list (an IdP that gets an empty list creates a
//! duplicate), [`Filter::validate`] rejects unknown attributes and operators
//! that cannot apply to an attribute's type before anything is evaluated.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::{Number, Value};

use super::attr_path::{AttrPath, sub_attribute_or_explain};
use super::error::ScimError;
use super::schema::{
    self, Attribute, AttributeType, Mutability, ResourceType, Uniqueness, get_ignore_case,
};
use crate::identity;

/// How deeply parentheses, `not` and value filters may nest, and how many
/// comparisons one filter may hold: bounds on the recursion that parsing,
/// evaluating and dropping a filter do, far above what any IdP sends.
const MAX_DEPTH: usize = 32;
const MAX_EXPRESSIONS: usize = 1000;

/// A parsed filter. Attribute paths keep the client's spelling; they are
/// resolved against the schemas when validating and evaluating.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `attrPath op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present {
        path: AttrPath,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attrPath[valFilter]`: some value of a complex attribute matches
    /// `filter`, whose paths name that attribute's sub-attributes.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// RFC 7644 §3.4.2.2 comparison operators (`pr` is [`Filter::Present`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompareOp {
    const ALL: [Self; 9] = [
        Self::Eq,
        Self::Ne,
        Self::Co,
        Self::Sw,
        Self::Ew,
        Self::Gt,
        Self::Lt,
        Self::Ge,
        Self::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Lt => "lt",
            Self::Ge => "ge",
            Self::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, Self::Gt | Self::Lt | Self::Ge | Self::Le)
    }

    fn is_substring(self) -> bool {
        matches!(self, Self::Co | Self::Sw | Self::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 7644 §3.4.2.2 `compValue`: a JSON literal.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

impl CompValue {
    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
        }
    }
}

/// Attributes a store can index, so that the lookups IdPs make before
/// creating something (`userName eq "x"`, `externalId eq "x"`,
/// `displayName eq "x"`) need not scan every resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexedAttribute {
    Id,
    ExternalId,
    UserName,
    DisplayName,
}

impl IndexedAttribute {
    /// Whether the index must compare values case-exactly: `id` and
    /// `externalId` are caseExact, `userName` and `displayName` are not
    /// (RFC 7643 §3.1, §4.1.1, §4.2).
    pub fn case_exact(self) -> bool {
        matches!(self, Self::Id | Self::ExternalId)
    }

    /// Preference when a conjunction offers several: the most selective.
    fn rank(self) -> u8 {
        match self {
            Self::Id => 0,
            Self::UserName => 1,
            Self::ExternalId => 2,
            Self::DisplayName => 3,
        }
    }
}

/// An indexed attribute and the value it must equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexLookup<'a> {
    pub attribute: IndexedAttribute,
    pub value: &'a str,
    /// True when the filter is exactly this comparison; false when it is a
    /// conjunction that also demands more, so the caller must still run
    /// [`Filter::matches`] on what the index returns.
    pub exact: bool,
}

impl Filter {
    /// Parses a filter. Syntax errors are 400 `invalidFilter` with a detail
    /// that names the position. Check it with [`Filter::validate`] before use.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        Parser::new(text)
            .filter()
            .map_err(|error| ScimError::invalid_filter(format!("invalid filter: {error}")))
    }

    /// Checks that every attribute exists for the resource type and that
    /// every operator and value can apply to it (RFC 7644 §3.4.2.2): e.g.
    /// `gt` on a boolean, a string compared with a number, or `name eq "x"`
    /// on a complex attribute without a `value` are 400 `invalidFilter`.
    pub fn validate(&self, resource_type: ResourceType) -> Result<(), ScimError> {
        self.check(Scope::Resource(resource_type))
    }

    /// Whether the resource (its SCIM JSON representation) matches. An
    /// unknown attribute or a value of the wrong type simply does not match;
    /// call [`Filter::validate`] first to report those as errors.
    pub fn matches(&self, resource: &Value, resource_type: ResourceType) -> bool {
        self.eval(Scope::Resource(resource_type), resource)
    }

    /// Recognises the lookups IdPs make before creating an object, so the
    /// caller can use an index: `userName eq "x"`, `externalId eq "x"`,
    /// `displayName eq "x"` and `id eq "x"` (optionally URN-qualified), alone
    /// or as one side of an `and`.
    pub fn index_lookup(&self, resource_type: ResourceType) -> Option<IndexLookup<'_>> {
        match self {
            Self::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            } => {
                let found = path.resolve(resource_type)?;
                if found.sub_attribute.is_some() || found.container().is_some() {
                    return None;
                }
                let attribute = match found.attribute.name {
                    "id" => IndexedAttribute::Id,
                    "externalId" => IndexedAttribute::ExternalId,
                    "userName" => IndexedAttribute::UserName,
                    "displayName" => IndexedAttribute::DisplayName,
                    _ => return None,
                };
                Some(IndexLookup {
                    attribute,
                    value,
                    exact: true,
                })
            }
            Self::And(left, right) => {
                let candidates = [left, right]
                    .into_iter()
                    .filter_map(|side| side.index_lookup(resource_type));
                candidates
                    .min_by_key(|lookup| lookup.attribute.rank())
                    .map(|lookup| IndexLookup {
                        exact: false,
                        ..lookup
                    })
            }
            _ => None,
        }
    }

    /// Whether any path of the filter names the top-level attribute `name`,
    /// e.g. whether a Group filter needs the group's members loaded.
    pub fn references(&self, resource_type: ResourceType, name: &str) -> bool {
        match self {
            Self::Compare { path, .. } | Self::Present { path } | Self::ValuePath { path, .. } => {
                path.resolve(resource_type)
                    .is_some_and(|found| found.attribute.name.eq_ignore_ascii_case(name))
            }
            Self::And(left, right) | Self::Or(left, right) => {
                left.references(resource_type, name) || right.references(resource_type, name)
            }
            Self::Not(inner) => inner.references(resource_type, name),
        }
    }

    /// Validation inside a value filter (`emails[...]`, or a PATCH path's
    /// filter), where paths name sub-attributes of `parent`.
    pub(crate) fn validate_within(&self, parent: &'static Attribute) -> Result<(), ScimError> {
        self.check(Scope::Element(parent))
    }

    /// Evaluation against one value of the complex attribute `parent`.
    pub(crate) fn matches_within(&self, element: &Value, parent: &'static Attribute) -> bool {
        self.eval(Scope::Element(parent), element)
    }

    /// The `sub eq value` conditions when the filter is nothing but a
    /// conjunction of them, e.g. `type eq "work"`: what a new value must
    /// carry to be selected by this filter. The PATCH engine uses this to
    /// create the value an Entra path like `emails[type eq "work"].value`
    /// targets when no such value exists yet.
    pub(crate) fn equality_conditions(&self) -> Option<Vec<(&str, &CompValue)>> {
        match self {
            Self::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if path.urn.is_none()
                && path.sub_attribute.is_none()
                && *value != CompValue::Null =>
            {
                Some(vec![(path.name.as_str(), value)])
            }
            Self::And(left, right) => {
                let mut conditions = left.equality_conditions()?;
                conditions.extend(right.equality_conditions()?);
                Some(conditions)
            }
            _ => None,
        }
    }

    fn check(&self, scope: Scope) -> Result<(), ScimError> {
        match self {
            Self::And(left, right) | Self::Or(left, right) => {
                left.check(scope)?;
                right.check(scope)
            }
            Self::Not(inner) => inner.check(scope),
            Self::Present { path } => {
                scope.resolve(path)?;
                Ok(())
            }
            Self::Compare { path, op, value } => {
                let resolved = scope.resolve(path)?;
                let compared = resolved.compared().ok_or_else(|| {
                    let example = resolved
                        .attribute
                        .sub_attributes
                        .get(1)
                        .map_or(String::new(), |sub| format!(", e.g. `{path}.{}`", sub.name));
                    invalid(
                        path,
                        format!("it is complex; compare one of its sub-attributes{example}"),
                    )
                })?;
                check_comparison(path, compared, *op, value)
            }
            Self::ValuePath { path, filter } => {
                let Scope::Resource(_) = scope else {
                    return Err(invalid(path, "value filters cannot be nested"));
                };
                let resolved = scope.resolve(path)?;
                if resolved.sub.is_some() {
                    return Err(invalid(
                        path,
                        "a value filter applies to an attribute, not a sub-attribute",
                    ));
                }
                if !resolved.attribute.is_complex() {
                    return Err(invalid(
                        path,
                        "it is not complex, so it has no values to filter",
                    ));
                }
                filter.check(Scope::Element(resolved.attribute))
            }
        }
    }

    fn eval(&self, scope: Scope, object: &Value) -> bool {
        match self {
            Self::And(left, right) => left.eval(scope, object) && right.eval(scope, object),
            Self::Or(left, right) => left.eval(scope, object) || right.eval(scope, object),
            Self::Not(inner) => !inner.eval(scope, object),
            Self::Present { path } => scope
                .resolve(path)
                .is_ok_and(|resolved| resolved.values(object, false).into_iter().any(is_present)),
            Self::Compare { path, op, value } => {
                let Ok(resolved) = scope.resolve(path) else {
                    return false;
                };
                let Some(compared) = resolved.compared() else {
                    return false;
                };
                let values = resolved.values(object, true);
                match (op, value) {
                    // RFC 7643 §2.5: null and unassigned are the same state.
                    (CompareOp::Eq, CompValue::Null) => !values.into_iter().any(is_present),
                    (CompareOp::Ne, CompValue::Null) => values.into_iter().any(is_present),
                    // `ne` is the negation of `eq`: a resource without the
                    // attribute, or without any equal value, matches.
                    (CompareOp::Ne, _) => !values
                        .into_iter()
                        .any(|actual| compare(compared, actual, CompareOp::Eq, value)),
                    // A multi-valued attribute matches when any value does.
                    _ => values
                        .into_iter()
                        .any(|actual| compare(compared, actual, *op, value)),
                }
            }
            Self::ValuePath { path, filter } => {
                let Ok(resolved) = scope.resolve(path) else {
                    return false;
                };
                if resolved.sub.is_some() || !resolved.attribute.is_complex() {
                    return false;
                }
                resolved
                    .values(object, false)
                    .into_iter()
                    .any(|element| filter.eval(Scope::Element(resolved.attribute), element))
            }
        }
    }
}

impl FromStr for Filter {
    type Err = ScimError;

    fn from_str(text: &str) -> Result<Self, ScimError> {
        Self::parse(text)
    }
}

/// Prints the canonical form: lower-case operators and keywords, strings as
/// JSON, and parentheses exactly where precedence and left-associativity
/// need them, so that the text parses back to the same filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(f: &mut fmt::Formatter<'_>, filter: &Filter, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({filter})")
            } else {
                write!(f, "{filter}")
            }
        }
        match self {
            Self::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Self::Present { path } => write!(f, "{path} pr"),
            Self::And(left, right) => {
                operand(f, left, matches!(**left, Self::Or(..)))?;
                f.write_str(" and ")?;
                operand(f, right, matches!(**right, Self::Or(..) | Self::And(..)))
            }
            Self::Or(left, right) => {
                operand(f, left, false)?;
                f.write_str(" or ")?;
                operand(f, right, matches!(**right, Self::Or(..)))
            }
            Self::Not(inner) => write!(f, "not ({inner})"),
            Self::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

fn invalid(path: &AttrPath, why: impl fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("invalid filter on `{path}`: {why}"))
}

/// Where a filter's paths are resolved: at the top of a resource, or inside
/// one value of a complex attribute (a value filter's brackets).
#[derive(Clone, Copy)]
enum Scope {
    Resource(ResourceType),
    Element(&'static Attribute),
}

/// A path resolved in a scope: where its values are and what they are.
struct Resolved {
    /// The extension URN key holding the attribute, if any.
    container: Option<&'static str>,
    attribute: &'static Attribute,
    sub: Option<&'static Attribute>,
}

impl Scope {
    fn resolve(self, path: &AttrPath) -> Result<Resolved, ScimError> {
        let resolved = match self {
            Self::Resource(resource_type) => {
                let found = path
                    .resolve_or_explain(resource_type)
                    .map_err(|why| ScimError::invalid_filter(format!("invalid filter: {why}")))?;
                Resolved {
                    container: found.container(),
                    attribute: found.attribute,
                    sub: found.sub_attribute,
                }
            }
            Self::Element(parent) => {
                if path.urn.is_some() || path.sub_attribute.is_some() {
                    return Err(invalid(
                        path,
                        format!(
                            "inside `{}[...]` name a sub-attribute of `{}` alone",
                            parent.name, parent.name
                        ),
                    ));
                }
                let attribute = sub_attribute_or_explain(parent, &path.name)
                    .map_err(|why| ScimError::invalid_filter(format!("invalid filter: {why}")))?;
                Resolved {
                    container: None,
                    attribute,
                    sub: None,
                }
            }
        };
        // Comparing a writeOnly value (the password) would make filters an
        // oracle for it; it is never returned, so it cannot be filtered.
        if resolved.attribute.mutability == Mutability::WriteOnly {
            return Err(invalid(path, "it is write-only and cannot be filtered"));
        }
        Ok(resolved)
    }
}

impl Resolved {
    /// The definition values are compared with: the sub-attribute, else a
    /// simple attribute itself, else (RFC 7644 §3.4.2.2, a complex attribute
    /// with no sub-attribute named) its `value` sub-attribute.
    fn compared(&self) -> Option<&'static Attribute> {
        match self.sub {
            Some(sub) => Some(sub),
            None if self.attribute.is_complex() => self.attribute.sub_attribute("value"),
            None => Some(self.attribute),
        }
    }

    /// The JSON values the path reaches in `object`, one per value of a
    /// multi-valued attribute. With `comparing`, a complex attribute named
    /// without a sub-attribute yields its values' `value`s.
    fn values<'v>(&self, object: &'v Value, comparing: bool) -> Vec<&'v Value> {
        let container = match self.container {
            Some(urn) => get_ignore_case(object, urn),
            None => Some(object),
        };
        let Some(value) = container.and_then(|c| get_ignore_case(c, self.attribute.name)) else {
            return Vec::new();
        };
        let values: Vec<&Value> = match value {
            Value::Array(items) if self.attribute.multi_valued => items.iter().collect(),
            other => vec![other],
        };
        let sub = match self.sub {
            Some(sub) => sub.name,
            None if comparing && self.attribute.is_complex() => "value",
            None => return values,
        };
        values
            .into_iter()
            .filter_map(|value| get_ignore_case(value, sub))
            .collect()
    }
}

/// RFC 7644 §3.4.2.2 `pr`: the attribute has a non-empty value. Null, an
/// empty string, an empty array and a complex value without any present
/// sub-attribute are all unassigned (RFC 7643 §2.5).
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn check_comparison(
    path: &AttrPath,
    attribute: &Attribute,
    op: CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    let kind = attribute.kind;
    if *value == CompValue::Null {
        return if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            Ok(())
        } else {
            Err(invalid(path, format!("`{op}` cannot compare with null")))
        };
    }
    // RFC 7644 §3.4.2.2: gt/ge/lt/le on a boolean or binary attribute
    // "SHALL cause a failed response ... invalidFilter".
    if op.is_ordering() && matches!(kind, AttributeType::Boolean | AttributeType::Binary) {
        return Err(invalid(
            path,
            format!("`{op}` does not apply to a {} attribute", kind.as_str()),
        ));
    }
    if op.is_substring() && !matches!(value, CompValue::String(_)) {
        return Err(invalid(path, format!("`{op}` needs a string to look for")));
    }
    let fits = match (kind, value) {
        (AttributeType::String | AttributeType::Reference | AttributeType::Binary, v) => {
            matches!(v, CompValue::String(_))
        }
        (AttributeType::DateTime, CompValue::String(text)) => {
            op.is_substring() || schema::parse_date_time(text).is_some()
        }
        (AttributeType::Boolean, v) => !op.is_substring() && matches!(v, CompValue::Bool(_)),
        (AttributeType::Integer | AttributeType::Decimal, v) => {
            !op.is_substring() && matches!(v, CompValue::Number(_))
        }
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let expected = match kind {
        AttributeType::DateTime => "a dateTime string such as \"2011-05-13T04:42:34Z\"",
        AttributeType::Boolean => "true or false, with eq or ne",
        AttributeType::Integer | AttributeType::Decimal => {
            "a number, with an operator other than co, sw or ew"
        }
        _ => "a string in double quotes",
    };
    Err(invalid(
        path,
        format!(
            "it is a {} attribute, so `{op} {value}` does not apply; compare it with {expected}",
            kind.as_str()
        ),
    ))
}

/// One comparison of an attribute value with a filter value, by the
/// attribute's type (RFC 7644 §3.4.2.2). Mismatched types never match.
fn compare(attribute: &Attribute, actual: &Value, op: CompareOp, expected: &CompValue) -> bool {
    match (attribute.kind, actual, expected) {
        (AttributeType::Boolean, Value::Bool(a), CompValue::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            CompareOp::Ne => a != e,
            _ => false,
        },
        (
            AttributeType::Integer | AttributeType::Decimal,
            Value::Number(a),
            CompValue::Number(e),
        ) => compare_numbers(a, e).is_some_and(|ordering| ordering_matches(op, ordering)),
        (AttributeType::DateTime, Value::String(a), CompValue::String(e)) if !op.is_substring() => {
            // Chronological, so offsets and fractions compare correctly; a
            // value that is not a dateTime falls back to its text.
            match (schema::parse_date_time(a), schema::parse_date_time(e)) {
                (Some(a), Some(e)) => ordering_matches(op, a.cmp(&e)),
                _ => compare_strings(a.clone(), e.clone(), op),
            }
        }
        (
            AttributeType::String
            | AttributeType::Reference
            | AttributeType::Binary
            | AttributeType::DateTime,
            Value::String(a),
            CompValue::String(e),
        ) => compare_strings(comparable(attribute, a), comparable(attribute, e), op),
        _ => false,
    }
}

/// A string value in the form it compares in. RFC 7643 §2.3.1:
/// caseExact=false attributes compare ignoring case. The unique one
/// (userName) folds as its uniqueness does, so a filter finds exactly the
/// user a claim would, and a look-alike such as the Kelvin sign finds nobody.
fn comparable(attribute: &Attribute, value: &str) -> String {
    if attribute.case_exact {
        value.to_owned()
    } else if attribute.uniqueness == Uniqueness::Server {
        identity::fold_user_name(value)
    } else {
        value.to_lowercase()
    }
}

fn compare_strings(actual: String, expected: String, op: CompareOp) -> bool {
    match op {
        CompareOp::Co => actual.contains(&expected),
        CompareOp::Sw => actual.starts_with(&expected),
        CompareOp::Ew => actual.ends_with(&expected),
        // Lexicographic order for gt/ge/lt/le, RFC 7644 §3.4.2.2.
        _ => ordering_matches(op, actual.cmp(&expected)),
    }
}

fn compare_numbers(actual: &Number, expected: &Number) -> Option<Ordering> {
    if let (Some(a), Some(e)) = (actual.as_i64(), expected.as_i64()) {
        return Some(a.cmp(&e));
    }
    if let (Some(a), Some(e)) = (actual.as_u64(), expected.as_u64()) {
        return Some(a.cmp(&e));
    }
    actual.as_f64()?.partial_cmp(&expected.as_f64()?)
}

fn ordering_matches(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Ne => ordering.is_ne(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// A syntax error: what was expected and where (1-based character position).
#[derive(Debug)]
pub(crate) struct SyntaxError {
    message: String,
    position: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

/// A recursive-descent parser over filter and PATCH path text.
pub(crate) struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    expressions: usize,
}

type Parsed<T> = Result<T, SyntaxError>;

/// Characters of an attribute path token: RFC 7643 §2.1 name characters,
/// `$` (`$ref`), and the `:` and `.` of schema URNs and sub-attributes.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
            expressions: 0,
        }
    }

    /// A whole filter.
    pub(crate) fn filter(mut self) -> Parsed<Filter> {
        let filter = self.or_expression(false)?;
        self.skip_whitespace();
        if self.pos < self.text.len() {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!("unexpected {found} after a complete expression (join expressions with `and` or `or`)"),
            ));
        }
        Ok(filter)
    }

    /// A whole PATCH path: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
    pub(crate) fn patch_path(mut self) -> Parsed<(AttrPath, Option<Filter>)> {
        self.skip_whitespace();
        let mut attribute = self.attr_path()?;
        let mut filter = None;
        if self.peek() == Some('[') {
            filter = Some(self.value_filter(&attribute)?);
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    let start = self.pos;
                    let token = self.take_while(is_path_char);
                    if token.is_empty() {
                        let found = self.describe(start);
                        return Err(self.error_at(
                            start,
                            format!("expected an attribute name after `].`, found {found}"),
                        ));
                    }
                    let sub = AttrPath::parse(token).map_err(|why| self.error_at(start, why))?;
                    if sub.urn.is_some() || sub.sub_attribute.is_some() {
                        return Err(
                            self.error_at(start, format!("`{token}` is not a sub-attribute name"))
                        );
                    }
                    attribute.sub_attribute = Some(sub.name);
                }
                None => {}
                Some(_) => {
                    let found = self.describe(self.pos);
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "expected `.` and a sub-attribute or the end after `]`, found {found}"
                        ),
                    ));
                }
            }
        }
        self.skip_whitespace();
        if self.pos < self.text.len() {
            let found = self.describe(self.pos);
            return Err(self.error_at(self.pos, format!("unexpected {found} after the path")));
        }
        Ok((attribute, filter))
    }

    fn or_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let mut left = self.and_expression(in_brackets)?;
        while self.keyword("or") {
            let right = self.and_expression(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let mut left = self.unary(in_brackets)?;
        while self.keyword("and") {
            let right = self.unary(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// A parenthesised group, `not (...)`, or an attribute expression.
    fn unary(&mut self, in_brackets: bool) -> Parsed<Filter> {
        self.skip_whitespace();
        let start = self.pos;
        if self.peek() == Some('(') {
            return self.group(in_brackets);
        }
        let word = self.take_while(is_path_char);
        if word.eq_ignore_ascii_case("not") {
            self.skip_whitespace();
            if self.peek() == Some('(') {
                return Ok(Filter::Not(Box::new(self.group(in_brackets)?)));
            }
        }
        // Not a `not (`: the word is an attribute path.
        self.pos = start;
        self.attribute_expression(in_brackets)
    }

    fn group(&mut self, in_brackets: bool) -> Parsed<Filter> {
        let open = self.pos;
        self.pos += 1;
        self.enter(open)?;
        let inner = self.or_expression(in_brackets)?;
        self.skip_whitespace();
        if self.peek() != Some(')') {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!(
                    "expected `)` to close the `(` at position {}, found {found}",
                    self.position(open)
                ),
            ));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(inner)
    }

    fn attribute_expression(&mut self, in_brackets: bool) -> Parsed<Filter> {
        self.expressions += 1;
        if self.expressions > MAX_EXPRESSIONS {
            return Err(self.error_at(
                self.pos,
                format!("too many expressions (at most {MAX_EXPRESSIONS})"),
            ));
        }
        let path = self.attr_path()?;
        self.skip_whitespace();
        if self.peek() == Some('[') {
            if in_brackets {
                return Err(self.error_at(self.pos, "value filters cannot be nested"));
            }
            let filter = self.value_filter(&path)?;
            if self.peek() == Some('.') {
                return Err(self.error_at(
                    self.pos,
                    "a sub-attribute after a value filter is allowed only in PATCH paths",
                ));
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
            });
        }
        let op_start = self.pos;
        let word = self.take_while(|c| c.is_ascii_alphabetic());
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present { path });
        }
        let Some(op) = CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
        else {
            let found = self.describe(op_start);
            return Err(self.error_at(
                op_start,
                format!(
                    "expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le or pr) after `{path}`, found {found}"
                ),
            ));
        };
        self.skip_whitespace();
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `[valFilter]` after `path`; leaves the position after the `]`.
    fn value_filter(&mut self, path: &AttrPath) -> Parsed<Filter> {
        let open = self.pos;
        if path.sub_attribute.is_some() {
            return Err(self.error_at(
                open,
                format!("`{path}` has a sub-attribute before a value filter; write `attribute[filter].sub`"),
            ));
        }
        self.pos += 1;
        self.enter(open)?;
        let filter = self.or_expression(true)?;
        self.skip_whitespace();
        if self.peek() != Some(']') {
            let found = self.describe(self.pos);
            return Err(self.error_at(
                self.pos,
                format!(
                    "expected `]` to close the `[` at position {}, found {found}",
                    self.position(open)
                ),
            ));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(filter)
    }

    fn attr_path(&mut self) -> Parsed<AttrPath> {
        let start = self.pos;
        let token = self.take_while(is_path_char);
        if token.is_empty() {
            let found = self.describe(start);
            return Err(self.error_at(start, format!("expected an attribute name, found {found}")));
        }
        AttrPath::parse(token).map_err(|why| self.error_at(start, why))
    }

    fn comp_value(&mut self) -> Parsed<CompValue> {
        let start = self.pos;
        match self.peek() {
            Some('"') => self.string(),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let token = self
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
                let invalid = || self.error_at(start, format!("`{token}` is not a valid number"));
                // serde_json checks the JSON number grammar; the standard
                // library rounds fractions exactly, so printing a parsed
                // number and parsing it again gives the same number.
                let number = serde_json::from_str::<Number>(token).map_err(|_| invalid())?;
                let number = if number.is_f64() {
                    token
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .ok_or_else(invalid)?
                } else {
                    number
                };
                Ok(CompValue::Number(number))
            }
            _ => {
                let word = self.take_while(is_path_char);
                // RFC 7644 §3.4.2.2 spells these in lower case; accept any.
                for (literal, value) in [
                    ("true", CompValue::Bool(true)),
                    ("false", CompValue::Bool(false)),
                    ("null", CompValue::Null),
                ] {
                    if word.eq_ignore_ascii_case(literal) {
                        return Ok(value);
                    }
                }
                let found = self.describe(start);
                let hint = if word.is_empty() {
                    ""
                } else {
                    "; strings must be in double quotes"
                };
                Err(self.error_at(
                    start,
                    format!("expected a value (a string in double quotes, a number, true, false or null), found {found}{hint}"),
                ))
            }
        }
    }

    /// A JSON string literal, escapes and all (RFC 7644 §3.4.2.2 compValue
    /// strings are JSON strings, RFC 7159).
    fn string(&mut self) -> Parsed<CompValue> {
        let start = self.pos;
        let mut escaped = false;
        let mut end = None;
        for (offset, c) in self.text[start + 1..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(start + 1 + offset);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(self.error_at(start, "unterminated string"));
        };
        let literal = &self.text[start..=end];
        let value = serde_json::from_str::<String>(literal)
            .map_err(|error| self.error_at(start, format!("invalid string {literal}: {error}")))?;
        self.pos = end + 1;
        Ok(CompValue::String(value))
    }

    /// Consumes `word` (ignoring case) if it comes next as a whole word.
    fn keyword(&mut self, word: &str) -> bool {
        let before = self.pos;
        self.skip_whitespace();
        let found = self.take_while(is_path_char);
        if found.eq_ignore_ascii_case(word) {
            true
        } else {
            self.pos = before;
            false
        }
    }

    fn enter(&mut self, at: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!("nested too deeply (at most {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.text[self.pos..];
        let length = rest.find(|c| !accept(c)).unwrap_or(rest.len());
        self.pos += length;
        &rest[..length]
    }

    fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    /// 1-based character position of a byte offset.
    fn position(&self, at: usize) -> usize {
        self.text[..at].chars().count() + 1
    }

    fn describe(&self, at: usize) -> String {
        let rest = &self.text[at..];
        if rest.is_empty() {
            return "the end".to_owned();
        }
        let token: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(24)
            .collect();
        format!("`{token}`")
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            position: self.position(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn parse(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn path(text: &str) -> AttrPath {
        AttrPath::parse(text).unwrap()
    }

    fn compare(attribute: &str, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare {
            path: path(attribute),
            op,
            value,
        }
    }

    fn eq(attribute: &str, value: &str) -> Filter {
        compare(attribute, CompareOp::Eq, CompValue::String(value.into()))
    }

    fn present(attribute: &str) -> Filter {
        Filter::Present {
            path: path(attribute),
        }
    }

    fn and(left: Filter, right: Filter) -> Filter {
        Filter::And(Box::new(left), Box::new(right))
    }

    fn or(left: Filter, right: Filter) -> Filter {
        Filter::Or(Box::new(left), Box::new(right))
    }

    fn not(inner: Filter) -> Filter {
        Filter::Not(Box::new(inner))
    }

    /// A user as the SCIM service represents it.
    fn barbara() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Bjensen-Ext",
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "title": "",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
            "roles": [],
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\""
            },
            ENTERPRISE: {
                "employeeNumber": "701984",
                "department": "Tour Operations",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
            }
        })
    }

    fn group() -> Value {
        json!({
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
                {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}
            ]
        })
    }

    /// Parses, validates for User and evaluates against Barbara.
    fn matches_barbara(text: &str) -> bool {
        let filter = parse(text);
        filter
            .validate(ResourceType::User)
            .unwrap_or_else(|error| panic!("{text}: {error}"));
        filter.matches(&barbara(), ResourceType::User)
    }

    fn invalid_for_users(text: &str) -> ScimError {
        let error = Filter::parse(text)
            .and_then(|filter| filter.validate(ResourceType::User))
            .expect_err(text);
        assert_eq!(error.status.as_u16(), 400, "{text}");
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{text}");
        error
    }

    // --- parsing -----------------------------------------------------------

    #[test]
    fn parses_every_comparison_operator() {
        for op in CompareOp::ALL {
            let text = format!("title {op} \"x\"");
            assert_eq!(
                parse(&text),
                compare("title", op, CompValue::String("x".into()))
            );
        }
        assert_eq!(parse("title pr"), present("title"));
    }

    #[test]
    fn operators_and_keywords_ignore_case() {
        // PingOne writes operators in mixed case.
        assert_eq!(parse(r#"userName Eq "a""#), eq("userName", "a"));
        assert_eq!(
            parse(r#"title Co "a""#),
            compare("title", CompareOp::Co, CompValue::String("a".into()))
        );
        assert_eq!(
            parse("title PR AND active EQ TRUE"),
            and(
                present("title"),
                compare("active", CompareOp::Eq, CompValue::Bool(true))
            )
        );
        assert_eq!(
            parse("NOT (title pr) OR title pr"),
            or(not(present("title")), present("title"))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let a = || present("a");
        let b = || present("b");
        let c = || present("c");
        assert_eq!(parse("a pr or b pr and c pr"), or(a(), and(b(), c())));
        assert_eq!(parse("a pr and b pr or c pr"), or(and(a(), b()), c()));
    }

    #[test]
    fn logical_operators_associate_to_the_left() {
        let (a, b, c) = (present("a"), present("b"), present("c"));
        assert_eq!(
            parse("a pr and b pr and c pr"),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(parse("a pr or b pr or c pr"), or(or(a, b), c));
    }

    #[test]
    fn parentheses_group() {
        let (a, b, c) = (present("a"), present("b"), present("c"));
        assert_eq!(
            parse("(a pr or b pr) and c pr"),
            and(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(parse("((a pr))"), a);
        assert_eq!(parse("  ( b pr )  "), b);
        assert_eq!(parse("not(c pr)"), not(c));
    }

    #[test]
    fn not_is_an_attribute_name_unless_a_parenthesis_follows() {
        assert_eq!(parse("not pr"), present("not"));
        assert_eq!(parse("notes pr"), present("notes"));
    }

    #[test]
    fn value_paths_filter_the_values_of_a_complex_attribute() {
        assert_eq!(
            parse(r#"emails[type eq "work" and value co "@x"]"#),
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(and(
                    eq("type", "work"),
                    compare("value", CompareOp::Co, CompValue::String("@x".into()))
                )),
            }
        );
    }

    #[test]
    fn value_paths_combine_with_other_expressions() {
        let filter = parse(
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        );
        assert!(matches!(filter, Filter::And(..)));
        let filter = parse(
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        );
        assert!(
            matches!(filter, Filter::And(_, ref right) if matches!(**right, Filter::ValuePath { .. }))
        );
    }

    #[test]
    fn urn_qualified_attribute_names_parse() {
        let filter = parse(&format!(r#"{ENTERPRISE}:manager.value eq "26118915""#));
        let Filter::Compare { path, .. } = filter else {
            panic!()
        };
        assert_eq!(path.urn.as_deref(), Some(ENTERPRISE));
        assert_eq!(path.name, "manager");
        assert_eq!(path.sub_attribute.as_deref(), Some("value"));
    }

    #[test]
    fn compare_values_are_json_literals() {
        let value = |text: &str| match parse(&format!("x eq {text}")) {
            Filter::Compare { value, .. } => value,
            _ => unreachable!(),
        };
        assert_eq!(value("true"), CompValue::Bool(true));
        assert_eq!(value("False"), CompValue::Bool(false));
        assert_eq!(value("null"), CompValue::Null);
        assert_eq!(value("42"), CompValue::Number(42.into()));
        assert_eq!(value("-7"), CompValue::Number((-7).into()));
        assert_eq!(
            value("1.5e3"),
            CompValue::Number(Number::from_f64(1500.0).unwrap())
        );
        assert_eq!(
            value(r#""a \"quoted\" \\ \u00e9 \n word""#),
            CompValue::String("a \"quoted\" \\ é \n word".into())
        );
        assert_eq!(value(r#""""#), CompValue::String(String::new()));
    }

    #[test]
    fn strings_may_hold_brackets_parentheses_and_keywords() {
        assert_eq!(
            parse(r#"emails[value eq "a]b) or (c"]"#),
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(eq("value", "a]b) or (c")),
            }
        );
    }

    #[test]
    fn syntax_errors_name_the_position() {
        for (text, expected) in [
            (
                "",
                "expected an attribute name, found the end at position 1",
            ),
            (
                "userName",
                "expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le or pr) after `userName`, found the end at position 9",
            ),
            (r#"userName equals "x""#, "found `equals` at position 10"),
            ("userName eq", "expected a value"),
            (
                "userName eq bjensen",
                "found `bjensen`; strings must be in double quotes at position 13",
            ),
            (
                r#"userName eq "bjensen"#,
                "unterminated string at position 13",
            ),
            (r#"userName eq "a\qb""#, "invalid string"),
            ("userName eq 1.2.3", "`1.2.3` is not a valid number"),
            (
                r#"(userName eq "a""#,
                "expected `)` to close the `(` at position 1, found the end at position 17",
            ),
            (
                r#"userName eq "a" junk"#,
                "unexpected `junk` after a complete expression",
            ),
            (
                r#"userName eq "a" and"#,
                "expected an attribute name, found the end",
            ),
            (
                r#"emails[type eq "work""#,
                "expected `]` to close the `[` at position 7",
            ),
            (
                r#"emails[type eq "work"].value eq "x""#,
                "allowed only in PATCH paths",
            ),
            (
                r#"emails[type[value eq "x"]]"#,
                "value filters cannot be nested",
            ),
            (
                r#"name.givenName[value eq "x"]"#,
                "sub-attribute before a value filter",
            ),
            ("a.b.c pr", "not a valid attribute name"),
            ("foo:bar pr", "schema URN starts with `urn:`"),
        ] {
            let error = Filter::parse(text).expect_err(text);
            assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{text}");
            assert!(error.detail.contains(expected), "{text}: {}", error.detail);
        }
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let error = Filter::parse(r#"title eq "é" junk"#).unwrap_err();
        assert!(error.detail.ends_with("at position 14"), "{}", error.detail);
    }

    #[test]
    fn deeply_nested_filters_are_refused() {
        let text = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        let error = Filter::parse(&text).unwrap_err();
        assert!(
            error.detail.contains("nested too deeply"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn filters_with_too_many_expressions_are_refused() {
        let text = vec!["a pr"; MAX_EXPRESSIONS + 1].join(" or ");
        let error = Filter::parse(&text).unwrap_err();
        assert!(
            error.detail.contains("too many expressions"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn plus_signs_are_not_decoded_here() {
        // OneLogin encodes spaces as `+`; the HTTP layer decodes them.
        assert!(Filter::parse(r#"userName+eq+"a""#).is_err());
    }

    // --- printing ----------------------------------------------------------

    #[test]
    fn display_prints_a_canonical_filter() {
        assert_eq!(
            parse(r#"userName Eq "a""#).to_string(),
            r#"userName eq "a""#
        );
        assert_eq!(
            parse("(a pr or b pr) and c pr").to_string(),
            "(a pr or b pr) and c pr"
        );
        assert_eq!(
            parse("a pr or (b pr and c pr)").to_string(),
            "a pr or b pr and c pr"
        );
        assert_eq!(
            parse("a pr and (b pr and c pr)").to_string(),
            "a pr and (b pr and c pr)"
        );
        assert_eq!(parse("NOT(a pr)").to_string(), "not (a pr)");
        assert_eq!(
            parse(r#"emails[type eq "work"]"#).to_string(),
            r#"emails[type eq "work"]"#
        );
        assert_eq!(
            parse(r#"title eq "say \"hi\"""#).to_string(),
            r#"title eq "say \"hi\"""#
        );
    }

    // --- validation --------------------------------------------------------

    #[test]
    fn unknown_attributes_are_invalid_filters() {
        let error = invalid_for_users(r#"shoeSize eq "42""#);
        assert!(
            error
                .detail
                .contains("`shoeSize` is not an attribute of User"),
            "{}",
            error.detail
        );
        invalid_for_users(r#"name.nickName eq "x""#);
        invalid_for_users(r#"emails[kind eq "work"]"#);
        // Enterprise attributes need their URN.
        invalid_for_users(r#"employeeNumber eq "1""#);
        invalid_for_users(r#"urn:example:custom:2.0:User:badge eq "1""#);
    }

    #[test]
    fn unknown_attributes_inside_a_logical_expression_are_found() {
        invalid_for_users(r#"userName eq "a" or not (shoeSize pr)"#);
    }

    #[test]
    fn ordering_a_boolean_is_an_invalid_filter() {
        let error = invalid_for_users("active gt true");
        assert!(
            error
                .detail
                .contains("`gt` does not apply to a boolean attribute"),
            "{}",
            error.detail
        );
        invalid_for_users("emails[primary le false]");
    }

    #[test]
    fn comparing_with_a_value_of_the_wrong_type_is_an_invalid_filter() {
        let error = invalid_for_users(r#"active eq "true""#);
        assert!(
            error.detail.contains("compare it with true or false"),
            "{}",
            error.detail
        );
        invalid_for_users("userName eq 42");
        invalid_for_users("userName eq true");
        invalid_for_users(r#"meta.created gt "last tuesday""#);
        invalid_for_users("active co true");
        invalid_for_users("title gt null");
    }

    #[test]
    fn comparing_a_complex_attribute_without_a_value_is_an_invalid_filter() {
        let error = invalid_for_users(r#"name eq "Barbara""#);
        assert!(
            error.detail.contains("compare one of its sub-attributes"),
            "{}",
            error.detail
        );
        invalid_for_users(r#"addresses eq "x""#);
        invalid_for_users(r#"meta eq "x""#);
    }

    #[test]
    fn a_value_filter_on_a_simple_attribute_is_invalid() {
        invalid_for_users(r#"userName[value eq "x"]"#);
    }

    #[test]
    fn a_value_filter_may_not_name_a_urn_or_sub_attribute() {
        invalid_for_users(r#"emails[value.x eq "x"]"#);
        invalid_for_users(r#"emails[urn:ietf:params:scim:schemas:core:2.0:User:value eq "x"]"#);
    }

    #[test]
    fn the_password_cannot_be_filtered() {
        let error = invalid_for_users(r#"password eq "hunter2""#);
        assert!(error.detail.contains("write-only"), "{}", error.detail);
        invalid_for_users("password pr");
    }

    #[test]
    fn group_filters_are_validated_against_the_group_schema() {
        let valid = |text: &str| parse(text).validate(ResourceType::Group);
        assert!(valid(r#"displayName eq "Tour Guides""#).is_ok());
        assert!(valid(r#"members[value eq "x"]"#).is_ok());
        assert!(valid(r#"userName eq "x""#).is_err());
    }

    #[test]
    fn a_value_path_built_by_hand_cannot_nest() {
        let nested = Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(Filter::ValuePath {
                path: path("value"),
                filter: Box::new(present("x")),
            }),
        };
        assert!(nested.validate(ResourceType::User).is_err());
    }

    // --- evaluation --------------------------------------------------------

    #[test]
    fn user_name_matches_ignoring_case() {
        // Okta's spec suite finds a user by its upper-cased userName.
        assert!(matches_barbara(r#"userName eq "BJENSEN@EXAMPLE.COM""#));
        assert!(matches_barbara(r#"USERNAME eq "bjensen@example.com""#));
        assert!(!matches_barbara(r#"userName eq "bjensen""#));
    }

    #[test]
    fn user_name_look_alikes_match_nobody() {
        let kevin = json!({"userName": "kevin@corp.com"});
        let matches = |text: &str, user: &Value| {
            let filter = parse(text);
            filter.validate(ResourceType::User).unwrap();
            filter.matches(user, ResourceType::User)
        };
        assert!(matches("userName eq \"KEVIN@corp.com\"", &kevin));
        // Kelvin sign, fullwidth ｋ and Ｋ, a trailing NBSP: never folded into ASCII.
        for text in [
            "userName eq \"\u{212A}evin@corp.com\"",
            "userName eq \"\u{FF4B}evin@corp.com\"",
            "userName sw \"\u{FF2B}\"",
            "userName eq \"kevin@corp.com\u{A0}\"",
        ] {
            assert!(!matches(text, &kevin), "{text}");
        }
        let dotless = json!({"userName": "adm\u{131}n"});
        assert!(!matches("userName eq \"ADMIN\"", &dotless));
        assert!(matches("userName eq \"ADM\u{131}N\"", &dotless));
    }

    #[test]
    fn urn_qualified_core_attributes_match() {
        assert!(matches_barbara(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen@example.com""#
        ));
    }

    #[test]
    fn id_and_external_id_match_case_exactly() {
        assert!(matches_barbara(r#"externalId eq "Bjensen-Ext""#));
        assert!(!matches_barbara(r#"externalId eq "bjensen-ext""#));
        assert!(matches_barbara(
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#
        ));
        assert!(!matches_barbara(
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#
        ));
    }

    #[test]
    fn substring_operators_respect_case_exactness() {
        assert!(matches_barbara(r#"userName sw "BJENSEN""#));
        assert!(matches_barbara(r#"userName ew "Example.Com""#));
        assert!(matches_barbara(r#"displayName co "JENS""#));
        assert!(!matches_barbara(r#"externalId sw "bjensen""#));
        assert!(matches_barbara(r#"externalId sw "Bjensen""#));
    }

    #[test]
    fn sub_attributes_of_a_single_complex_attribute_match() {
        assert!(matches_barbara(r#"name.familyName eq "jensen""#));
        assert!(!matches_barbara(r#"name.givenName eq "Babs""#));
    }

    #[test]
    fn a_multi_valued_attribute_matches_when_any_value_does() {
        assert!(matches_barbara(r#"emails.value eq "babs@jensen.org""#));
        assert!(matches_barbara(r#"emails.type eq "home""#));
        assert!(!matches_barbara(r#"emails.type eq "other""#));
    }

    #[test]
    fn a_multi_valued_complex_attribute_without_sub_attribute_compares_value() {
        assert!(matches_barbara(r#"emails eq "BABS@jensen.org""#));
        assert!(matches_barbara(r#"emails co "example.com""#));
        assert!(!matches_barbara(r#"emails eq "home""#));
    }

    #[test]
    fn value_paths_need_one_value_to_satisfy_the_whole_filter() {
        assert!(matches_barbara(
            r#"emails[type eq "work" and value co "@example.com"]"#
        ));
        // The work address is not at jensen.org; the home one is not work.
        assert!(!matches_barbara(
            r#"emails[type eq "work" and value co "@jensen.org"]"#
        ));
        assert!(matches_barbara(
            r#"emails[type eq "home" or primary eq true]"#
        ));
        assert!(matches_barbara(r#"emails[not (type eq "work")]"#));
    }

    #[test]
    fn enterprise_attributes_match_under_their_urn() {
        assert!(matches_barbara(&format!(
            r#"{ENTERPRISE}:employeeNumber eq "701984""#
        )));
        assert!(matches_barbara(&format!(
            r#"{ENTERPRISE}:department co "tour""#
        )));
        assert!(matches_barbara(&format!(
            r#"{ENTERPRISE}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        )));
        assert!(matches_barbara(&format!(
            r#"{ENTERPRISE}:manager[displayName sw "John"]"#
        )));
        assert!(!matches_barbara(&format!(r#"{ENTERPRISE}:costCenter pr"#)));
    }

    #[test]
    fn booleans_compare_with_eq_and_ne() {
        assert!(matches_barbara("active eq true"));
        assert!(!matches_barbara("active eq false"));
        assert!(matches_barbara("active ne false"));
        assert!(matches_barbara("emails[primary eq true]"));
    }

    #[test]
    fn strings_order_lexicographically() {
        assert!(matches_barbara(r#"userName gt "a""#));
        assert!(matches_barbara(r#"userName gt "BA""#));
        assert!(matches_barbara(r#"userName lt "c""#));
        assert!(matches_barbara(r#"userName ge "bjensen@example.com""#));
        assert!(matches_barbara(r#"userName le "BJENSEN@EXAMPLE.COM""#));
        assert!(!matches_barbara(r#"userName lt "bjensen@example.com""#));
    }

    #[test]
    fn date_times_order_chronologically() {
        assert!(matches_barbara(
            r#"meta.lastModified gt "2011-05-13T04:42:33Z""#
        ));
        // Same instant in another offset: not later, but equal.
        assert!(!matches_barbara(
            r#"meta.lastModified gt "2011-05-13T06:42:34+02:00""#
        ));
        assert!(matches_barbara(
            r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#
        ));
        assert!(matches_barbara(
            r#"meta.lastModified ge "2011-05-13T04:42:34.000Z""#
        ));
        // Lexically "2010-01-23T04:56:22Z" < "2010-01-23T05:56:22+02:00", but
        // the latter is 03:56:22Z, an hour earlier.
        assert!(!matches_barbara(
            r#"meta.created lt "2010-01-23T05:56:22+02:00""#
        ));
        assert!(matches_barbara(
            r#"meta.created gt "2010-01-23T05:56:22+02:00""#
        ));
        assert!(matches_barbara(r#"meta.created sw "2010-01""#));
    }

    #[test]
    fn present_means_a_non_empty_value() {
        assert!(matches_barbara("userName pr"));
        assert!(matches_barbara("name pr"));
        assert!(matches_barbara("emails pr"));
        assert!(matches_barbara("emails.primary pr"));
        assert!(
            !matches_barbara("title pr"),
            "an empty string is not present"
        );
        assert!(
            !matches_barbara("roles pr"),
            "an empty array is not present"
        );
        assert!(!matches_barbara("nickName pr"));
        assert!(!matches_barbara("phoneNumbers.display pr"));
    }

    #[test]
    fn null_is_the_same_as_unassigned() {
        assert!(matches_barbara("nickName eq null"));
        assert!(matches_barbara("title eq null"));
        assert!(!matches_barbara("userName eq null"));
        assert!(matches_barbara("userName ne null"));
    }

    #[test]
    fn ne_matches_when_no_value_is_equal() {
        assert!(
            matches_barbara(r#"userType ne "Employee""#),
            "an absent attribute is not equal"
        );
        assert!(
            !matches_barbara(r#"emails.type ne "home""#),
            "one value is home"
        );
        assert!(matches_barbara(r#"userName ne "someone""#));
    }

    #[test]
    fn logical_operators_combine_matches() {
        assert!(matches_barbara(r#"userName eq "x" or active eq true"#));
        assert!(!matches_barbara(r#"userName eq "x" and active eq true"#));
        assert!(matches_barbara(r#"not (userName eq "x")"#));
        assert!(matches_barbara(
            r#"userType eq "x" or (title pr or name.givenName sw "B") and active eq true"#
        ));
    }

    #[test]
    fn resource_keys_match_ignoring_case() {
        let user = json!({"UserName": "Alice", "EMAILS": [{"Value": "a@x"}]});
        assert!(parse(r#"userName eq "alice""#).matches(&user, ResourceType::User));
        assert!(parse(r#"emails.value eq "a@x""#).matches(&user, ResourceType::User));
    }

    #[test]
    fn numbers_compare_numerically() {
        // No integer attribute in the core schemas; exercise the comparator.
        let integer = Attribute {
            kind: AttributeType::Integer,
            ..*schema::USER.attribute("userName").unwrap()
        };
        assert!(super::compare(
            &integer,
            &json!(10),
            CompareOp::Gt,
            &CompValue::Number(9.into())
        ));
        assert!(super::compare(
            &integer,
            &json!(2.5),
            CompareOp::Lt,
            &CompValue::Number(3.into())
        ));
        assert!(super::compare(
            &integer,
            &json!(3),
            CompareOp::Eq,
            &CompValue::Number(Number::from_f64(3.0).unwrap())
        ));
        assert!(!super::compare(
            &integer,
            &json!("10"),
            CompareOp::Gt,
            &CompValue::Number(9.into())
        ));
    }

    #[test]
    fn group_members_match_by_value() {
        let members = |text: &str| {
            let filter = parse(text);
            filter.validate(ResourceType::Group).unwrap();
            filter.matches(&group(), ResourceType::Group)
        };
        assert!(members(
            r#"members[value eq "902c246b-6245-4190-8e05-00816be7344a"]"#
        ));
        assert!(members(
            r#"members eq "2819c223-7f76-453a-919d-413861904646""#
        ));
        assert!(members(r#"members.display co "mandy""#));
        assert!(!members(r#"members[value eq "nobody"]"#));
        assert!(members(r#"displayName eq "tour guides""#));
    }

    #[test]
    fn a_random_value_matches_nothing() {
        // Entra's "Test Connection" filters on a random value and expects an
        // empty list, not an error.
        assert!(!matches_barbara(
            r#"userName eq "0b1f4e2c-test-connection""#
        ));
        assert!(!matches_barbara(
            r#"externalId eq "0b1f4e2c-test-connection""#
        ));
    }

    // --- index lookups -----------------------------------------------------

    #[test]
    fn the_lookups_idps_make_are_recognised_for_an_index() {
        let lookup = |text: &str, resource_type| {
            parse(text)
                .index_lookup(resource_type)
                .map(|l| (l.attribute, l.value.to_owned(), l.exact))
        };
        assert_eq!(
            lookup(r#"userName eq "a@b""#, ResourceType::User),
            Some((IndexedAttribute::UserName, "a@b".into(), true))
        );
        assert_eq!(
            lookup(r#"externalId eq "x""#, ResourceType::User),
            Some((IndexedAttribute::ExternalId, "x".into(), true))
        );
        assert_eq!(
            lookup(r#"displayName eq "G""#, ResourceType::Group),
            Some((IndexedAttribute::DisplayName, "G".into(), true))
        );
        assert_eq!(
            lookup(r#"id eq "1""#, ResourceType::Group),
            Some((IndexedAttribute::Id, "1".into(), true))
        );
        assert_eq!(
            lookup(r#"UserName EQ "a""#, ResourceType::User),
            Some((IndexedAttribute::UserName, "a".into(), true))
        );
        assert_eq!(
            lookup(
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#,
                ResourceType::User
            ),
            Some((IndexedAttribute::UserName, "a".into(), true))
        );
    }

    #[test]
    fn a_conjunction_offers_its_most_selective_lookup_as_inexact() {
        let filter = parse(r#"displayName eq "x" and userName eq "a" and active eq true"#);
        let lookup = filter.index_lookup(ResourceType::User).unwrap();
        assert_eq!(lookup.attribute, IndexedAttribute::UserName);
        assert_eq!(lookup.value, "a");
        assert!(!lookup.exact);
    }

    #[test]
    fn other_filters_offer_no_lookup() {
        for text in [
            r#"userName co "a""#,
            r#"userName eq "a" or externalId eq "b""#,
            r#"title eq "a""#,
            "userName pr",
            r#"not (userName eq "a")"#,
            r#"emails[value eq "a"]"#,
            r#"name.givenName eq "a""#,
        ] {
            assert_eq!(parse(text).index_lookup(ResourceType::User), None, "{text}");
        }
        // userName is no Group attribute.
        assert_eq!(
            parse(r#"userName eq "a""#).index_lookup(ResourceType::Group),
            None
        );
    }

    #[test]
    fn index_lookups_say_whether_the_index_is_case_exact() {
        assert!(IndexedAttribute::Id.case_exact());
        assert!(IndexedAttribute::ExternalId.case_exact());
        assert!(!IndexedAttribute::UserName.case_exact());
        assert!(!IndexedAttribute::DisplayName.case_exact());
    }

    #[test]
    fn a_filter_says_which_attributes_it_references() {
        let group_filter = |text: &str| parse(text).references(ResourceType::Group, "members");
        assert!(group_filter(r#"members[value eq "x"]"#));
        assert!(group_filter(
            r#"displayName eq "x" or not (MEMBERS.value pr)"#
        ));
        assert!(group_filter(
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:members eq "x""#
        ));
        assert!(!group_filter(r#"displayName eq "members""#));
        assert!(!group_filter(r#"externalId eq "x""#));
    }

    #[test]
    fn equality_conditions_describe_what_a_new_value_must_carry() {
        let filter = parse(r#"type eq "work" and primary eq true"#);
        let conditions = filter.equality_conditions().unwrap();
        assert_eq!(
            conditions,
            vec![
                ("type", &CompValue::String("work".into())),
                ("primary", &CompValue::Bool(true))
            ]
        );
        assert_eq!(
            parse(r#"type eq "work" or type eq "home""#).equality_conditions(),
            None
        );
        assert_eq!(parse(r#"value co "x""#).equality_conditions(), None);
    }
}
