//! The PATCH `path` grammar of RFC 7644 §3.5.2, built on attribute paths
//! (`attr_path`) and value filters (`filter`):
//!
//! ```text
//! PATH = attrPath / valuePath [subAttr]
//! ```
//!
//! e.g. `name.givenName`, `members[value eq "2819c223"]`,
//! `emails[type eq "work"].value`, or an enterprise attribute qualified with
//! its schema URN such as
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.

use std::fmt;

use crate::scim::attr_path::AttrPath;
use crate::scim::error::ScimError;
use crate::scim::filter::{Filter, Parser};
use crate::scim::schema::{AttributeRef, Mutability, ResourceType};

/// A PATCH operation's `path` (RFC 7644 §3.5.2): an attribute, optionally a
/// value filter selecting some of its values, and optionally a sub-attribute.
/// `attribute.sub_attribute` is the sub-attribute, whether it came straight
/// after the name (`name.givenName`) or after the filter
/// (`emails[type eq "work"].value`).
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attribute: AttrPath,
    pub filter: Option<Filter>,
}

impl PatchPath {
    /// Parses a PATCH path. Anything malformed, including a malformed value
    /// filter, is 400 `invalidPath`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let (attribute, filter) = Parser::new(text)
            .patch_path()
            .map_err(|error| ScimError::invalid_path(format!("invalid path: {error}")))?;
        Ok(Self { attribute, filter })
    }

    /// Resolves the path for a resource type and checks the value filter
    /// against the attribute's sub-attributes: an unknown attribute is 400
    /// `invalidPath`, a filter that cannot apply is 400 `invalidFilter`.
    pub fn resolve(&self, resource_type: ResourceType) -> Result<PatchTarget, ScimError> {
        let target = self
            .attribute
            .resolve_or_explain(resource_type)
            .map_err(|detail| {
                ScimError::invalid_path(format!("invalid path `{self}`: {detail}"))
            })?;
        if let Some(filter) = &self.filter {
            if !target.attribute.is_complex() {
                return Err(ScimError::invalid_path(format!(
                    "invalid path `{self}`: `{}` is not complex, so it has no values to filter",
                    target.attribute.name
                )));
            }
            filter.validate_within(target.attribute)?;
        }
        Ok(PatchTarget {
            attribute: target,
            filter: self.filter.clone(),
        })
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            None => write!(f, "{}", self.attribute),
            Some(filter) => {
                f.write_str(&self.attribute.name_with_urn())?;
                write!(f, "[{filter}]")?;
                if let Some(sub) = &self.attribute.sub_attribute {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}

/// A PATCH path resolved against a resource type's schemas.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchTarget {
    pub attribute: AttributeRef,
    pub filter: Option<Filter>,
}

impl PatchTarget {
    /// Whether a client may never write here: a read-only attribute, or a
    /// read-only sub-attribute (RFC 7643 §7 `mutability`).
    pub fn is_read_only(&self) -> bool {
        self.attribute.attribute.mutability == Mutability::ReadOnly
            || self
                .attribute
                .sub_attribute
                .is_some_and(|sub| sub.mutability == Mutability::ReadOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::filter::{CompValue, CompareOp};

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn path(text: &str) -> PatchPath {
        PatchPath::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare {
            path: AttrPath::new(name),
            op: CompareOp::Eq,
            value: CompValue::String(value.into()),
        }
    }

    #[test]
    fn a_plain_attribute_is_a_path() {
        assert_eq!(
            path("displayName"),
            PatchPath {
                attribute: AttrPath::new("displayName"),
                filter: None
            }
        );
    }

    #[test]
    fn a_sub_attribute_follows_a_dot() {
        let parsed = path("name.givenName");
        assert_eq!(parsed.attribute.name, "name");
        assert_eq!(parsed.attribute.sub_attribute.as_deref(), Some("givenName"));
        assert_eq!(parsed.filter, None);
    }

    #[test]
    fn a_value_filter_selects_members() {
        let parsed = path(r#"members[value eq "2819c223"]"#);
        assert_eq!(parsed.attribute, AttrPath::new("members"));
        assert_eq!(parsed.filter, Some(eq("value", "2819c223")));
    }

    #[test]
    fn a_sub_attribute_may_follow_a_value_filter() {
        let parsed = path(r#"emails[type eq "work"].value"#);
        assert_eq!(parsed.attribute.name, "emails");
        assert_eq!(parsed.attribute.sub_attribute.as_deref(), Some("value"));
        assert_eq!(parsed.filter, Some(eq("type", "work")));
        let parsed = path(r#"addresses[type eq "work"].streetAddress"#);
        assert_eq!(
            parsed.attribute.sub_attribute.as_deref(),
            Some("streetAddress")
        );
    }

    #[test]
    fn an_enterprise_attribute_is_qualified_with_its_urn() {
        let parsed = path(&format!("{ENTERPRISE}:employeeNumber"));
        assert_eq!(parsed.attribute.urn.as_deref(), Some(ENTERPRISE));
        assert_eq!(parsed.attribute.name, "employeeNumber");
        let parsed = path(&format!("{ENTERPRISE}:manager.value"));
        assert_eq!(parsed.attribute.name, "manager");
        assert_eq!(parsed.attribute.sub_attribute.as_deref(), Some("value"));
    }

    #[test]
    fn a_urn_qualified_attribute_may_have_a_value_filter() {
        let parsed =
            path(r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"].value"#);
        assert_eq!(
            parsed.attribute.urn.as_deref(),
            Some(crate::urns::USER_SCHEMA)
        );
        assert_eq!(parsed.attribute.sub_attribute.as_deref(), Some("value"));
    }

    #[test]
    fn paths_print_as_they_parse() {
        for text in [
            "name.givenName",
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "a" or value eq "b"]"#,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        ] {
            assert_eq!(path(text).to_string(), text);
        }
    }

    #[test]
    fn malformed_paths_are_invalid_path_errors_naming_the_problem() {
        for (text, expected) in [
            ("", "expected an attribute name"),
            ("name.", "empty attribute name"),
            ("name.givenName.x", "not a valid attribute name"),
            ("emails[type eq \"work\"", "expected `]`"),
            ("emails[type eq \"work\"]value", "after `]`"),
            ("emails[type eq ]", "expected a value"),
            ("emails[type eq \"work\"].", "expected an attribute name"),
            (
                "emails.value[type eq \"work\"]",
                "sub-attribute before a value filter",
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:",
                "empty attribute name",
            ),
            ("foo:bar", "schema URN starts with `urn:`"),
            ("displayName junk", "after the path"),
        ] {
            let error = PatchPath::parse(text).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidPath), "{text}");
            assert!(error.detail.contains(expected), "{text}: {}", error.detail);
        }
    }

    #[test]
    fn resolving_an_unknown_attribute_is_invalid_path() {
        let error = path("shoeSize").resolve(ResourceType::User).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
        assert!(
            error
                .detail
                .contains("`shoeSize` is not an attribute of User"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn resolving_an_unknown_schema_urn_is_invalid_path() {
        let error = path("urn:example:custom:2.0:User:badge")
            .resolve(ResourceType::User)
            .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
        assert!(
            error.detail.contains("is not a schema of User"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn resolving_an_unknown_sub_attribute_is_invalid_path() {
        let error = path("name.nickName")
            .resolve(ResourceType::User)
            .unwrap_err();
        assert!(
            error
                .detail
                .contains("`name` has no sub-attribute `nickName`"),
            "{}",
            error.detail
        );
        let error = path("userName.value")
            .resolve(ResourceType::User)
            .unwrap_err();
        assert!(error.detail.contains("not complex"), "{}", error.detail);
    }

    #[test]
    fn a_value_filter_on_a_simple_attribute_is_invalid_path() {
        let error = path(r#"userName[value eq "x"]"#)
            .resolve(ResourceType::User)
            .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn a_value_filter_naming_an_unknown_sub_attribute_is_invalid_filter() {
        let error = path(r#"emails[kind eq "work"]"#)
            .resolve(ResourceType::User)
            .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
        assert!(
            error
                .detail
                .contains("`emails` has no sub-attribute `kind`"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn read_only_targets_are_recognised() {
        let read_only =
            |text: &str, resource_type| path(text).resolve(resource_type).unwrap().is_read_only();
        assert!(read_only("id", ResourceType::User));
        assert!(read_only("meta.lastModified", ResourceType::Group));
        assert!(read_only("groups", ResourceType::User));
        assert!(read_only(
            &format!("{ENTERPRISE}:manager.displayName"),
            ResourceType::User
        ));
        assert!(!read_only(
            &format!("{ENTERPRISE}:manager.value"),
            ResourceType::User
        ));
        assert!(!read_only("name.givenName", ResourceType::User));
    }
}
