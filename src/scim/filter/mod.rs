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

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use eval::*;
pub(crate) use parse::Parser;
