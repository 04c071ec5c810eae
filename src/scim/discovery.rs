//! Discovery documents (RFC 7644 section 4): ServiceProviderConfig,
//! ResourceTypes and Schemas. Pure functions of the base URL.

use serde_json::{Value, json};

use super::list::MAX_COUNT;
use super::schema;
use crate::urns::{
    ENTERPRISE_USER_SCHEMA as ENTERPRISE_SCHEMA, GROUP_SCHEMA, RESOURCE_TYPE_SCHEMA, SCHEMA_SCHEMA,
    SERVICE_PROVIDER_CONFIG_SCHEMA as SPC_SCHEMA, USER_SCHEMA,
};

/// What Roster supports, advertised honestly: PATCH, filters, ETags; no
/// bulk, no sorting, no password changes (passwords are never stored).
pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://roster.dev/docs/scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token from the Secret the ProvisioningPolicy names in spec.scim.tokenSecretRef",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        }
    })
}

pub fn resource_types(base_url: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")}
        }),
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/Group")}
        }),
    ]
}

/// User, EnterpriseUser and Group, then the schemas describing the
/// discovery documents themselves.
pub fn schemas(base_url: &str) -> Vec<Value> {
    let mut all: Vec<Value> = schema::resource_schemas()
        .into_iter()
        .map(schema::Schema::to_json)
        .collect();
    all.extend(meta_schemas());
    for schema in &mut all {
        let id = schema["id"].as_str().unwrap_or_default().to_owned();
        schema["meta"] =
            json!({"resourceType": "Schema", "location": format!("{base_url}/Schemas/{id}")});
    }
    all
}

fn attr(name: &str, kind: &str, multi: bool, required: bool, description: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "description": description,
        "required": required, "caseExact": false, "mutability": "readOnly",
        "returned": "default", "uniqueness": "none"
    })
}

fn complex(name: &str, multi: bool, required: bool, description: &str, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", multi, required, description);
    a["subAttributes"] = Value::Array(subs);
    a
}

fn supported(name: &str, description: &str, extra: Vec<Value>) -> Value {
    let mut subs = vec![attr(
        "supported",
        "boolean",
        false,
        true,
        "Whether the operation is supported.",
    )];
    subs.extend(extra);
    complex(name, false, true, description, subs)
}

/// RFC 7643 sections 5, 6 and 7: the ServiceProviderConfig, ResourceType
/// and Schema schemas.
fn meta_schemas() -> Vec<Value> {
    let schema = |id: &str, name: &str, description: &str, attributes: Vec<Value>| json!({"schemas": [SCHEMA_SCHEMA], "id": id, "name": name, "description": description, "attributes": attributes});
    let spc = schema(
        SPC_SCHEMA,
        "Service Provider Configuration",
        "Schema for representing the service provider's configuration",
        vec![
            attr(
                "documentationUri",
                "reference",
                false,
                false,
                "An HTTP-addressable URL pointing to the service provider's human-consumable help documentation.",
            ),
            supported(
                "patch",
                "A complex type that specifies PATCH configuration options.",
                vec![],
            ),
            supported(
                "bulk",
                "A complex type that specifies bulk configuration options.",
                vec![
                    attr(
                        "maxOperations",
                        "integer",
                        false,
                        true,
                        "An integer value specifying the maximum number of operations.",
                    ),
                    attr(
                        "maxPayloadSize",
                        "integer",
                        false,
                        true,
                        "An integer value specifying the maximum payload size in bytes.",
                    ),
                ],
            ),
            supported(
                "filter",
                "A complex type that specifies FILTER options.",
                vec![attr(
                    "maxResults",
                    "integer",
                    false,
                    true,
                    "An integer value specifying the maximum number of resources returned in a response.",
                )],
            ),
            supported(
                "changePassword",
                "A complex type that specifies configuration options related to changing a password.",
                vec![],
            ),
            supported(
                "sort",
                "A complex type that specifies sort result options.",
                vec![],
            ),
            supported(
                "etag",
                "A complex type that specifies ETag configuration options.",
                vec![],
            ),
            complex(
                "authenticationSchemes",
                true,
                true,
                "A complex type that specifies supported authentication scheme properties.",
                vec![
                    attr("type", "string", false, true, "The authentication scheme."),
                    attr(
                        "name",
                        "string",
                        false,
                        true,
                        "The common authentication scheme name.",
                    ),
                    attr(
                        "description",
                        "string",
                        false,
                        true,
                        "A description of the authentication scheme.",
                    ),
                    attr(
                        "specUri",
                        "reference",
                        false,
                        false,
                        "An HTTP-addressable URL pointing to the authentication scheme's specification.",
                    ),
                    attr(
                        "documentationUri",
                        "reference",
                        false,
                        false,
                        "An HTTP-addressable URL pointing to the authentication scheme's usage documentation.",
                    ),
                    attr(
                        "primary",
                        "boolean",
                        false,
                        false,
                        "Whether this is the preferred authentication scheme.",
                    ),
                ],
            ),
        ],
    );
    let resource_type = schema(
        RESOURCE_TYPE_SCHEMA,
        "ResourceType",
        "Specifies the schema that describes a SCIM resource type",
        vec![
            attr(
                "id",
                "string",
                false,
                false,
                "The resource type's server unique id.",
            ),
            attr("name", "string", false, true, "The resource type name."),
            attr(
                "description",
                "string",
                false,
                false,
                "The resource type's human-readable description.",
            ),
            attr(
                "endpoint",
                "reference",
                false,
                true,
                "The resource type's HTTP-addressable endpoint relative to the Base URL.",
            ),
            attr(
                "schema",
                "reference",
                false,
                true,
                "The resource type's primary/base schema URI.",
            ),
            complex(
                "schemaExtensions",
                true,
                false,
                "A list of URIs of the resource type's schema extensions.",
                vec![
                    attr(
                        "schema",
                        "reference",
                        false,
                        true,
                        "The URI of a schema extension.",
                    ),
                    attr(
                        "required",
                        "boolean",
                        false,
                        true,
                        "Whether the schema extension is required for the resource type.",
                    ),
                ],
            ),
        ],
    );
    let attribute_subs = vec![
        attr("name", "string", false, true, "The attribute's name."),
        attr("type", "string", false, true, "The attribute's data type."),
        attr(
            "multiValued",
            "boolean",
            false,
            true,
            "Whether the attribute is multi-valued.",
        ),
        attr(
            "description",
            "string",
            false,
            false,
            "A human-readable description of the attribute.",
        ),
        attr(
            "required",
            "boolean",
            false,
            false,
            "Whether the attribute is required.",
        ),
        attr(
            "canonicalValues",
            "string",
            true,
            false,
            "A collection of canonical values.",
        ),
        attr(
            "caseExact",
            "boolean",
            false,
            false,
            "Whether a string attribute is case sensitive.",
        ),
        attr(
            "mutability",
            "string",
            false,
            false,
            "Whether the attribute is modifiable.",
        ),
        attr(
            "returned",
            "string",
            false,
            false,
            "When the attribute is returned in a response.",
        ),
        attr(
            "uniqueness",
            "string",
            false,
            false,
            "How the service provider enforces uniqueness of attribute values.",
        ),
        attr(
            "referenceTypes",
            "string",
            true,
            false,
            "The names of the resource types that may be referenced.",
        ),
    ];
    let mut attributes_attr = complex(
        "attributes",
        true,
        true,
        "A complex attribute that includes the attributes of a schema.",
        attribute_subs.clone(),
    );
    let mut sub_attributes = complex(
        "subAttributes",
        true,
        false,
        "Used to define the sub-attributes of a complex attribute.",
        attribute_subs,
    );
    sub_attributes["mutability"] = json!("readOnly");
    attributes_attr["subAttributes"]
        .as_array_mut()
        .expect("an array")
        .push(sub_attributes);
    let schema_schema = schema(
        SCHEMA_SCHEMA,
        "Schema",
        "Specifies the schema attribute",
        vec![
            attr("id", "string", false, true, "The unique URI of the schema."),
            attr(
                "name",
                "string",
                false,
                false,
                "The schema's human-readable name.",
            ),
            attr(
                "description",
                "string",
                false,
                false,
                "The schema's human-readable description.",
            ),
            attributes_attr,
        ],
    );
    vec![spc, resource_type, schema_schema]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_lists_the_resource_and_discovery_schemas_with_locations() {
        let all = schemas("https://r.example/scim/ns/p/v2");
        let ids: Vec<&str> = all.iter().map(|s| s["id"].as_str().unwrap()).collect();
        for expected in [
            USER_SCHEMA,
            ENTERPRISE_SCHEMA,
            GROUP_SCHEMA,
            SPC_SCHEMA,
            RESOURCE_TYPE_SCHEMA,
            SCHEMA_SCHEMA,
        ] {
            assert!(ids.contains(&expected), "{expected} missing from {ids:?}");
        }
        assert_eq!(
            all[0]["meta"]["location"],
            format!("https://r.example/scim/ns/p/v2/Schemas/{USER_SCHEMA}")
        );
    }

    #[test]
    fn the_service_provider_config_advertises_patch_filter_and_etag_but_not_bulk_or_sort() {
        let spc = service_provider_config("https://r.example/scim/ns/p/v2");
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["filter"]["supported"], true);
        assert_eq!(spc["etag"]["supported"], true);
        assert_eq!(spc["bulk"]["supported"], false);
        assert_eq!(spc["sort"]["supported"], false);
    }
}
