//! Attribute paths `[urn:]name[.sub]` (RFC 7644 §3.4.2.2 `attrPath`): the
//! grammar filters, PATCH paths, `attributes` and `sortBy` share. An
//! enterprise attribute is qualified with its schema URN, e.g.
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.

use std::fmt;

use super::schema::{self, Attribute, AttributeRef, ResourceType};

/// `[urn:]name[.sub]`, spelled as the client wrote it. Resolve it against a
/// resource type's schemas with [`AttrPath::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub_attribute: Option<String>,
}

impl AttrPath {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            urn: None,
            name: name.into(),
            sub_attribute: None,
        }
    }

    /// Parses `[urn:]name[.sub]`. Schema URNs contain dots (`2.0`), so the
    /// attribute starts after the URN's last colon (attribute names have no
    /// colon, RFC 7643 §2.1), and only there is a dot a sub-attribute.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (urn, rest) = if starts_with_ignore_case(text, "urn:") {
            let colon = text.rfind(':').unwrap_or_default();
            (Some(&text[..colon]), &text[colon + 1..])
        } else {
            (None, text)
        };
        if urn.is_some_and(|urn| urn.len() <= "urn:".len()) {
            return Err(format!("`{text}` has a schema URN but no attribute name"));
        }
        if urn.is_none() && rest.contains(':') {
            return Err(format!(
                "`{text}` is not an attribute name (a schema URN starts with `urn:`)"
            ));
        }
        let (name, sub_attribute) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        for part in std::iter::once(name).chain(sub_attribute) {
            if !is_attribute_name(part) {
                return Err(if part.is_empty() {
                    format!("`{text}` has an empty attribute name")
                } else {
                    format!("`{part}` in `{text}` is not a valid attribute name")
                });
            }
        }
        Ok(Self {
            urn: urn.map(str::to_owned),
            name: name.to_owned(),
            sub_attribute: sub_attribute.map(str::to_owned),
        })
    }

    /// The definition this path names for a resource type, if any.
    pub fn resolve(&self, resource_type: ResourceType) -> Option<AttributeRef> {
        schema::find(
            resource_type,
            self.urn.as_deref(),
            &self.name,
            self.sub_attribute.as_deref(),
        )
    }

    /// Like [`AttrPath::resolve`], but says what is wrong when nothing is
    /// found, for error details.
    pub(crate) fn resolve_or_explain(
        &self,
        resource_type: ResourceType,
    ) -> Result<AttributeRef, String> {
        let Some((schema, attribute)) =
            schema::find_attribute(resource_type, self.urn.as_deref(), &self.name)
        else {
            return Err(match &self.urn {
                Some(urn)
                    if !urn.eq_ignore_ascii_case(resource_type.core_schema().id)
                        && resource_type.extension(urn).is_none() =>
                {
                    format!(
                        "`{urn}` is not a schema of {} resources",
                        resource_type.name()
                    )
                }
                _ => format!(
                    "`{}` is not an attribute of {} resources",
                    self.name_with_urn(),
                    resource_type.name()
                ),
            });
        };
        let sub_attribute = match &self.sub_attribute {
            None => None,
            Some(sub) => Some(sub_attribute_or_explain(attribute, sub)?),
        };
        Ok(AttributeRef {
            schema,
            attribute,
            sub_attribute,
        })
    }

    pub(crate) fn name_with_urn(&self) -> String {
        match &self.urn {
            Some(urn) => format!("{urn}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name_with_urn())?;
        if let Some(sub) = &self.sub_attribute {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

pub(crate) fn sub_attribute_or_explain(
    attribute: &'static Attribute,
    sub: &str,
) -> Result<&'static Attribute, String> {
    if !attribute.is_complex() {
        return Err(format!(
            "`{}` is not complex, so it has no sub-attribute `{sub}`",
            attribute.name
        ));
    }
    attribute
        .sub_attribute(sub)
        .ok_or_else(|| format!("`{}` has no sub-attribute `{sub}`", attribute.name))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// RFC 7643 §2.1 `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`, which the RFC
/// itself uses as a sub-attribute name.
fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_paths_split_the_urn_at_its_last_colon() {
        let parsed =
            AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(parsed.urn.as_deref(), Some(schema::USER_SCHEMA));
        assert_eq!(parsed.name, "name");
        assert_eq!(parsed.sub_attribute.as_deref(), Some("givenName"));
        assert_eq!(
            parsed.to_string(),
            "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"
        );
    }

    #[test]
    fn attr_paths_allow_ref() {
        let parsed = AttrPath::parse("members.$ref").unwrap();
        assert_eq!(parsed.sub_attribute.as_deref(), Some("$ref"));
    }
}
