use super::*;
use crate::scim::error::ScimType;
use crate::scim::schema::{ENTERPRISE_USER_SCHEMA as ENTERPRISE, USER_SCHEMA};

fn request(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}

fn patch_user(user: &Value, operations: Value) -> Value {
    apply(user, &request(operations), ResourceType::User).unwrap_or_else(|error| panic!("{error}"))
}

fn user_error(user: &Value, operations: Value) -> ScimError {
    apply(user, &request(operations), ResourceType::User).expect_err("the patch should fail")
}

fn patch_group(group: &Value, operations: Value) -> (Value, MembersChange) {
    apply_group(group, &request(operations)).unwrap_or_else(|error| panic!("{error}"))
}

fn group_error(operations: Value) -> ScimError {
    apply_group(&tour_guides(), &request(operations)).expect_err("the patch should fail")
}

fn barbara() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "bjensen",
        "userName": "bjensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
        "displayName": "Babs Jensen",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"}
    })
}

/// A user with nothing but the required userName.
fn bare_user() -> Value {
    json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "pat@example.com"})
}

/// A group as `apply_group` gets it: without members.
fn tour_guides() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "meta": {"resourceType": "Group"}
    })
}

fn member(id: &str) -> Member {
    Member::new(id)
}

fn assert_error(error: &ScimError, scim_type: ScimType, detail: &str) {
    assert_eq!(error.status.as_u16(), 400, "{error}");
    assert_eq!(error.scim_type, Some(scim_type), "{error}");
    assert!(
        error.detail.contains(detail),
        "{:?} does not contain {detail:?}",
        error.detail
    );
}

// --- the request ---------------------------------------------------------

#[test]
fn the_request_must_list_the_patch_op_schema() {
    let body = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    let error = apply(&barbara(), &body, ResourceType::User).unwrap_err();
    assert_error(&error, ScimType::InvalidSyntax, PATCH_OP_SCHEMA);
}

#[test]
fn the_patch_op_schema_and_envelope_names_ignore_case() {
    let body = json!({
        "SCHEMAS": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
        "operations": [{"OP": "replace", "Path": "active", "VALUE": false}]
    });
    let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
    assert_eq!(patched["active"], false);
}

#[test]
fn the_request_needs_one_or_more_operations() {
    let error = apply(
        &barbara(),
        &json!({"schemas": [PATCH_OP_SCHEMA]}),
        ResourceType::User,
    )
    .unwrap_err();
    assert_error(&error, ScimType::InvalidSyntax, "`Operations` array");
    let error = user_error(&barbara(), json!([]));
    assert_error(&error, ScimType::InvalidSyntax, "one or more");
}

#[test]
fn an_unknown_op_is_invalid_syntax() {
    let error = user_error(
        &barbara(),
        json!([{"op": "merge", "path": "title", "value": "x"}]),
    );
    assert_error(&error, ScimType::InvalidSyntax, "not \"merge\"");
    let error = user_error(&barbara(), json!([{"path": "title", "value": "x"}]));
    assert_error(&error, ScimType::InvalidSyntax, "needs an `op`");
}

#[test]
fn ops_are_matched_ignoring_case() {
    // Entra's default dialect capitalises them.
    let patched = patch_user(
        &barbara(),
        json!([
            {"op": "Add", "path": "nickName", "value": "Babs"},
            {"op": "Replace", "path": "title", "value": "Tour Guide"},
            {"op": "REMOVE", "path": "displayName"}
        ]),
    );
    assert_eq!(patched["nickName"], "Babs");
    assert_eq!(patched["title"], "Tour Guide");
    assert!(patched.get("displayName").is_none());
}

#[test]
fn add_and_replace_need_a_value() {
    let error = user_error(&barbara(), json!([{"op": "replace", "path": "title"}]));
    assert_error(&error, ScimType::InvalidSyntax, "need a `value`");
}

#[test]
fn errors_name_the_failing_operation() {
    let error = user_error(
        &barbara(),
        json!([
            {"op": "replace", "path": "title", "value": "x"},
            {"op": "replace", "path": "shoeSize", "value": 42}
        ]),
    );
    assert_error(
        &error,
        ScimType::InvalidPath,
        "operation 2 (replace shoeSize): ",
    );
}

#[test]
fn one_failing_operation_fails_the_whole_patch() {
    let original = barbara();
    let result = apply(
        &original,
        &request(json!([
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "id", "value": "stolen"}
        ])),
        ResourceType::User,
    );
    assert_eq!(result.unwrap_err().scim_type, Some(ScimType::Mutability));
    assert_eq!(original, barbara(), "the caller's resource is untouched");
}

// --- simple attributes -------------------------------------------------

#[test]
fn replace_sets_a_single_valued_attribute() {
    // Entra, "Update User [Single-valued properties]".
    let patched = patch_user(
        &barbara(),
        json!([{
            "op": "Replace",
            "path": "userName",
            "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
        }]),
    );
    assert_eq!(
        patched["userName"],
        "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    );
}

#[test]
fn replace_of_an_absent_attribute_adds_it() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "replace", "path": "title", "value": "Guide"}]),
    );
    assert_eq!(patched["title"], "Guide");
}

#[test]
fn add_sets_a_single_valued_attribute() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "displayName", "value": "B. Jensen"}]),
    );
    assert_eq!(patched["displayName"], "B. Jensen");
}

#[test]
fn remove_unassigns_an_attribute() {
    let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "externalId"}]));
    assert!(patched.get("externalId").is_none());
}

#[test]
fn remove_of_an_absent_attribute_changes_nothing() {
    let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "nickName"}]));
    assert_eq!(patched, barbara());
}

#[test]
fn remove_without_a_path_is_no_target() {
    let error = user_error(&barbara(), json!([{"op": "remove"}]));
    assert_error(&error, ScimType::NoTarget, "needs a `path`");
    let error = user_error(&barbara(), json!([{"op": "remove", "path": ""}]));
    assert_eq!(error.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn null_unassigns() {
    let patched = patch_user(
        &barbara(),
        json!([
            {"op": "replace", "path": "displayName", "value": null},
            {"op": "add", "path": "externalId", "value": null},
            {"op": "replace", "value": {"name": null}}
        ]),
    );
    assert!(patched.get("displayName").is_none());
    assert!(patched.get("externalId").is_none());
    assert!(patched.get("name").is_none());
}

#[test]
fn a_required_attribute_cannot_be_removed() {
    let error = user_error(&barbara(), json!([{"op": "remove", "path": "userName"}]));
    assert_error(&error, ScimType::InvalidValue, "`userName` is required");
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "value": {"userName": null}}]),
    );
    assert_error(&error, ScimType::InvalidValue, "`userName` is required");
}

#[test]
fn the_password_is_set_like_any_write_only_string() {
    // The caller drops it before storing.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "password", "value": "t1meMa$heen"}]),
    );
    assert_eq!(patched["password"], "t1meMa$heen");
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "path": "password", "value": 1234}]),
    );
    assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn resource_keys_in_another_case_are_replaced_by_the_schema_spelling() {
    let user = json!({"UserName": "a", "TITLE": "x"});
    let patched = patch_user(
        &user,
        json!([{"op": "replace", "path": "title", "value": "y"}]),
    );
    assert_eq!(patched, json!({"UserName": "a", "title": "y"}));
}

// --- booleans ----------------------------------------------------------

#[test]
fn entra_string_booleans_are_coerced() {
    // Entra's default dialect: {"op":"Replace","path":"active","value":"False"}.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    );
    assert_eq!(patched["active"], false);
    let patched = patch_user(
        &patched,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    );
    assert_eq!(patched["active"], true);
    let patched = patch_user(
        &barbara(),
        json!([{"op": "Replace", "value": {"active": "false"}}]),
    );
    assert_eq!(patched["active"], false);
}

#[test]
fn string_booleans_are_coerced_in_sub_attributes_too() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "Add", "path": "roles", "value": [{"value": "admin", "primary": "True"}]}]),
    );
    assert_eq!(
        patched["roles"],
        json!([{"value": "admin", "primary": true}])
    );
}

#[test]
fn entra_disables_a_user() {
    // Entra, "Disable User".
    let body = json!({
        "Operations": [{"op": "Replace", "path": "active", "value": false}],
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
    });
    let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
    assert_eq!(patched["active"], false);
}

// --- wrong types ---------------------------------------------------------

#[test]
fn values_of_the_wrong_json_type_are_invalid_values() {
    for (path, value, expected) in [
        (
            "active",
            json!("maybe"),
            "`active` must be a boolean, not \"maybe\"",
        ),
        ("active", json!(1), "`active` must be a boolean"),
        ("userName", json!(5), "`userName` must be a string, not 5"),
        ("title", json!(["a"]), "`title` must be a string"),
        (
            "name",
            json!("Barbara"),
            "`name` must be an object of sub-attributes",
        ),
        (
            "name.givenName",
            json!({"x": 1}),
            "`givenName` must be a string",
        ),
        (
            "emails",
            json!([{"value": 42}]),
            "`value` must be a string, not 42",
        ),
        (
            "emails",
            json!([[1]]),
            "`emails` must be an object of sub-attributes",
        ),
    ] {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": path, "value": value}]),
        );
        assert_error(&error, ScimType::InvalidValue, expected);
    }
}

// --- unknown and read-only attributes ------------------------------------

#[test]
fn an_unknown_attribute_is_an_invalid_path() {
    let error = user_error(
        &barbara(),
        json!([{"op": "add", "path": "shoeSize", "value": "42"}]),
    );
    assert_error(
        &error,
        ScimType::InvalidPath,
        "`shoeSize` is not an attribute of User",
    );
    let error = user_error(
        &barbara(),
        json!([{"op": "add", "value": {"shoeSize": "42"}}]),
    );
    assert_error(
        &error,
        ScimType::InvalidPath,
        "`shoeSize` is not an attribute of User",
    );
}

#[test]
fn an_unknown_sub_attribute_in_a_value_is_an_invalid_path() {
    let error = user_error(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "a@b", "kind": "work"}]}]),
    );
    assert_error(
        &error,
        ScimType::InvalidPath,
        "`emails` has no sub-attribute `kind`",
    );
}

#[test]
fn an_enterprise_attribute_without_its_urn_is_an_invalid_path() {
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "path": "employeeNumber", "value": "1"}]),
    );
    assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
}

#[test]
fn a_path_in_an_unknown_schema_is_an_invalid_path() {
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User:badge", "value": "1"}]),
    );
    assert_error(&error, ScimType::InvalidPath, "is not a schema of User");
}

#[test]
fn an_extension_value_may_carry_its_own_schemas() {
    let patched = apply(
        &json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "pat@example.com"}),
        &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{
            "op": "add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "value": {
                "schemas": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "department": "R&D"
            }
        }]}),
        ResourceType::User,
    )
    .unwrap();
    assert_eq!(
        patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        json!({"department": "R&D"})
    );
}

#[test]
fn attributes_of_unknown_schemas_in_a_value_are_skipped() {
    // OneLogin and Entra put schemas in bodies that no server knows.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "value": {
            "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User:badge": "1",
            "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User": {"badge": "1"},
            "schemas": ["urn:example:anything"],
            "title": "Guide"
        }}]),
    );
    let mut expected = barbara();
    expected["title"] = json!("Guide");
    assert_eq!(patched, expected);
}

#[test]
fn writing_a_read_only_attribute_by_path_is_a_mutability_error() {
    for path in [
        "id",
        "meta",
        "meta.lastModified",
        "groups",
        "urn:ietf:params:scim:schemas:core:2.0:User:id",
    ] {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": path, "value": "x"}]),
        );
        assert_error(&error, ScimType::Mutability, "is read-only");
    }
    let error = user_error(&barbara(), json!([{"op": "remove", "path": "groups"}]));
    assert_eq!(error.scim_type, Some(ScimType::Mutability));
    let error = user_error(
        &barbara(),
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager.displayName"), "value": "x"}]),
    );
    assert_eq!(error.scim_type, Some(ScimType::Mutability));
}

#[test]
fn read_only_attributes_in_a_value_are_ignored() {
    // Okta sends back what it read, `id`, `meta` and `groups` included.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "value": {
            "id": "someone-else",
            "meta": {"lastModified": "2030-01-01T00:00:00Z"},
            "groups": [{"value": "g1"}],
            "displayName": "Babs"
        }}]),
    );
    assert_eq!(patched["id"], barbara()["id"]);
    assert_eq!(patched["meta"], barbara()["meta"]);
    assert!(patched.get("groups").is_none());
    assert_eq!(patched["displayName"], "Babs");
}

#[test]
fn read_only_sub_attributes_in_a_value_are_ignored() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": "m1", "displayName": "Boss"}}]),
    );
    assert_eq!(patched[ENTERPRISE]["manager"], json!({"value": "m1"}));
}

// --- complex attributes --------------------------------------------------

#[test]
fn a_sub_attribute_path_sets_one_part() {
    // Entra, "Update User [Multi-valued properties]", second operation.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}]),
    );
    assert_eq!(
        patched["name"],
        json!({"familyName": "updatedFamilyName", "givenName": "Barbara", "middleName": "Jane"})
    );
}

#[test]
fn a_sub_attribute_path_creates_the_complex_attribute() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": "name.givenName", "value": "Pat"}]),
    );
    assert_eq!(patched["name"], json!({"givenName": "Pat"}));
}

#[test]
fn removing_the_last_sub_attribute_removes_the_complex_attribute() {
    let user = json!({"userName": "a", "name": {"givenName": "Pat"}});
    let patched = patch_user(&user, json!([{"op": "remove", "path": "name.givenName"}]));
    assert_eq!(patched, json!({"userName": "a"}));
}

#[test]
fn a_complex_value_merges_into_the_attribute() {
    // RFC 7644 §3.5.2.3: sub-attributes not named are left unchanged.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs", "middleName": null}}]),
    );
    assert_eq!(
        patched["name"],
        json!({"familyName": "Jensen", "givenName": "Babs"})
    );
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "value": {"name": {"honorificPrefix": "Ms."}}}]),
    );
    assert_eq!(patched["name"]["honorificPrefix"], "Ms.");
    assert_eq!(patched["name"]["familyName"], "Jensen");
}

#[test]
fn sub_attribute_names_in_values_take_the_schema_spelling() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": "NAME", "value": {"GIVENNAME": "Pat"}}]),
    );
    assert_eq!(patched["name"], json!({"givenName": "Pat"}));
}

// --- multi-valued attributes ---------------------------------------------

#[test]
fn add_appends_to_a_multi_valued_attribute() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "b@other.org", "type": "other"}]}]),
    );
    let emails = patched["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 3);
    assert_eq!(emails[2], json!({"value": "b@other.org", "type": "other"}));
}

#[test]
fn add_does_not_duplicate_an_identical_value() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]}]),
    );
    assert_eq!(patched["emails"], barbara()["emails"]);
}

#[test]
fn add_compares_values_by_their_case_exactness() {
    // emails.value is caseExact=false: the same address in capitals is
    // the same value, written with the new spelling.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "BABS@jensen.org"}]}]),
    );
    assert_eq!(
        patched["emails"][1],
        json!({"value": "BABS@jensen.org", "type": "home"})
    );
    assert_eq!(patched["emails"].as_array().unwrap().len(), 2);
}

#[test]
fn add_of_a_known_value_updates_it_in_place() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "display": "Babs at home"}]}]),
    );
    let emails = patched["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 2);
    assert_eq!(
        emails[1],
        json!({"value": "babs@jensen.org", "type": "home", "display": "Babs at home"})
    );
}

#[test]
fn a_lone_value_for_a_multi_valued_attribute_is_one_value() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": "emails", "value": {"value": "p@x.org"}}]),
    );
    assert_eq!(patched["emails"], json!([{"value": "p@x.org"}]));
}

#[test]
fn replace_without_a_filter_replaces_all_values() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "new@example.com", "type": "work"}]}]),
    );
    assert_eq!(
        patched["emails"],
        json!([{"value": "new@example.com", "type": "work"}])
    );
}

#[test]
fn empty_arrays_and_nulls_are_tolerated() {
    // Entra sends `roles: []` and nulls.
    let patched = patch_user(
        &barbara(),
        json!([
            {"op": "add", "path": "roles", "value": []},
            {"op": "replace", "value": {"roles": [], "nickName": null, "phoneNumbers": null}},
            {"op": "add", "path": "emails", "value": [{"value": "x@y.org", "display": null, "type": null}]}
        ]),
    );
    assert!(patched.get("roles").is_none());
    assert!(patched.get("nickName").is_none());
    assert_eq!(patched["emails"][2], json!({"value": "x@y.org"}));
}

#[test]
fn replace_with_an_empty_array_clears_the_attribute() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "emails", "value": []}]),
    );
    assert!(patched.get("emails").is_none());
}

#[test]
fn remove_with_a_value_list_removes_only_those_values() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "remove", "path": "emails", "value": [{"value": "babs@jensen.org"}]}]),
    );
    assert_eq!(
        patched["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
}

#[test]
fn remove_without_a_value_removes_all_values() {
    let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "emails"}]));
    assert!(patched.get("emails").is_none());
}

#[test]
fn a_sub_attribute_without_a_filter_applies_to_every_value() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "emails.display", "value": "Babs"}]),
    );
    assert!(
        patched["emails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|email| email["display"] == "Babs")
    );
    let patched = patch_user(
        &patched,
        json!([{"op": "remove", "path": "emails.display"}]),
    );
    assert_eq!(patched["emails"], barbara()["emails"]);
}

// --- value filters -------------------------------------------------------

#[test]
fn a_filtered_sub_attribute_path_updates_the_matching_value() {
    // Entra, "Update User [Multi-valued properties]", first operation.
    let patched = patch_user(
        &barbara(),
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"}]),
    );
    assert_eq!(
        patched["emails"][0],
        json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
    );
    assert_eq!(patched["emails"][1], barbara()["emails"][1]);
}

#[test]
fn entra_updates_several_attributes_one_op_each() {
    // Entra, "Update User [Multi-valued properties]", the whole request.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
        ]
    });
    let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
    assert_eq!(patched["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(patched["name"]["familyName"], "updatedFamilyName");
}

#[test]
fn a_filtered_path_with_no_match_adds_the_value_the_filter_describes() {
    // Entra adds a work phone with one op per sub-attribute.
    let patched = patch_user(
        &bare_user(),
        json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "pat@example.com"},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
            {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "100 Universal City Plaza"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Hollywood"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].country", "value": "USA"}
        ]),
    );
    assert_eq!(
        patched["emails"],
        json!([{"type": "work", "value": "pat@example.com"}])
    );
    assert_eq!(
        patched["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 0100"}])
    );
    assert_eq!(
        patched["addresses"],
        json!([{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "country": "USA"}])
    );
}

#[test]
fn a_filtered_path_with_no_match_and_no_equality_is_no_target() {
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "path": "emails[value co \"nowhere\"].display", "value": "x"}]),
    );
    assert_error(&error, ScimType::NoTarget, "no value of `emails` matches");
}

#[test]
fn a_filtered_path_without_sub_attribute_merges_or_replaces_matching_values() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
    );
    assert_eq!(
        patched["emails"][1],
        json!({"value": "babs@jensen.org", "type": "home", "display": "Home"})
    );
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@jensen.org"}}]),
    );
    assert_eq!(
        patched["emails"][1],
        json!({"value": "new@jensen.org", "type": "home"})
    );
}

#[test]
fn remove_with_a_filter_removes_only_matching_values() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
    );
    assert_eq!(
        patched["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
}

#[test]
fn remove_with_a_filter_and_sub_attribute_removes_that_part() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
    );
    assert_eq!(
        patched["emails"][0],
        json!({"value": "bjensen@example.com", "type": "work"})
    );
}

#[test]
fn remove_with_a_filter_that_matches_nothing_changes_nothing() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
    );
    assert_eq!(patched, barbara());
}

#[test]
fn removing_every_value_removes_the_attribute() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "remove", "path": "emails[value ew \"org\" or value ew \"com\"]"}]),
    );
    assert!(patched.get("emails").is_none());
}

#[test]
fn a_filter_that_does_not_fit_the_attribute_is_an_invalid_filter() {
    let error = user_error(
        &barbara(),
        json!([{"op": "remove", "path": "emails[primary gt true]"}]),
    );
    assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
}

#[test]
fn a_malformed_path_is_an_invalid_path() {
    let error = user_error(
        &barbara(),
        json!([{"op": "remove", "path": "emails[type eq \"work\""}]),
    );
    assert_error(&error, ScimType::InvalidPath, "expected `]`");
}

// --- primary ---------------------------------------------------------------

#[test]
fn adding_a_primary_value_clears_primary_on_the_others() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "primary": true}]}]),
    );
    let emails = patched["emails"].as_array().unwrap();
    assert_eq!(
        emails[0],
        json!({"value": "bjensen@example.com", "type": "work"})
    );
    assert_eq!(
        emails[2],
        json!({"value": "new@example.com", "primary": true})
    );
}

#[test]
fn making_a_value_primary_by_filter_clears_the_others() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
    );
    assert_eq!(patched["emails"][0].get("primary"), None);
    assert_eq!(patched["emails"][1]["primary"], true);
}

#[test]
fn two_primary_values_in_one_operation_are_invalid() {
    let error = user_error(
        &barbara(),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}]),
    );
    assert_error(
        &error,
        ScimType::InvalidValue,
        "only one value of `emails` may be primary",
    );
}

// --- the enterprise extension ----------------------------------------------

#[test]
fn entra_sets_an_enterprise_attribute_by_its_urn_path() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "701984"}]),
    );
    assert_eq!(patched[ENTERPRISE], json!({"employeeNumber": "701984"}));
    assert_eq!(
        patched["schemas"],
        json!([USER_SCHEMA, ENTERPRISE]),
        "the extension is listed"
    );
}

#[test]
fn the_manager_value_is_set_by_sub_attribute_path() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager.value"), "value": "26118915-6090-4610-87e4-49d8ca9f808d"}]),
    );
    assert_eq!(
        patched[ENTERPRISE]["manager"],
        json!({"value": "26118915-6090-4610-87e4-49d8ca9f808d"})
    );
}

#[test]
fn a_bare_id_as_the_manager_is_its_value() {
    // Entra sets the manager with its id as the whole value.
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "26118915-6090-4610-87e4-49d8ca9f808d"}]),
    );
    assert_eq!(
        patched[ENTERPRISE]["manager"],
        json!({"value": "26118915-6090-4610-87e4-49d8ca9f808d"})
    );
}

#[test]
fn an_extension_object_in_a_value_sets_its_attributes() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "value": {ENTERPRISE: {"department": "Tour Operations", "costCenter": "4130"}}}]),
    );
    assert_eq!(
        patched[ENTERPRISE],
        json!({"department": "Tour Operations", "costCenter": "4130"})
    );
}

#[test]
fn an_extension_urn_as_the_path_targets_the_whole_extension() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": ENTERPRISE, "value": {"division": "Theme Parks"}}]),
    );
    assert_eq!(patched[ENTERPRISE], json!({"division": "Theme Parks"}));
    let patched = patch_user(&patched, json!([{"op": "remove", "path": ENTERPRISE}]));
    assert_eq!(patched, bare_user());
}

#[test]
fn removing_the_last_enterprise_attribute_drops_the_extension() {
    let user = patch_user(
        &bare_user(),
        json!([{"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]),
    );
    let patched = patch_user(
        &user,
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
    );
    assert_eq!(patched, bare_user());
}

#[test]
fn removing_an_enterprise_attribute_the_user_lacks_changes_nothing() {
    let patched = patch_user(
        &bare_user(),
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager")}]),
    );
    assert_eq!(patched, bare_user());
}

// --- Entra's newer dialect and Okta -----------------------------------------

#[test]
fn entra_path_less_replace_with_attribute_paths_as_keys() {
    // Entra with `aadOptscim062020`: keys are attribute paths.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{
            "op": "replace",
            "value": {
                "displayName": "Pat Doe",
                "name.givenName": "Pat",
                "name.familyName": "Doe",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Tech Infrastructure",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "m-42",
                "emails[type eq \"work\"].value": "pat.doe@example.com",
                "active": false
            }
        }]
    });
    let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
    assert_eq!(patched["displayName"], "Pat Doe");
    assert_eq!(
        patched["name"],
        json!({"givenName": "Pat", "familyName": "Doe", "middleName": "Jane"})
    );
    assert_eq!(
        patched[ENTERPRISE],
        json!({"department": "Tech Infrastructure", "manager": {"value": "m-42"}})
    );
    assert_eq!(patched["emails"][0]["value"], "pat.doe@example.com");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["schemas"], json!([USER_SCHEMA, ENTERPRISE]));
}

#[test]
fn entra_newer_dialect_path_less_add() {
    let patched = patch_user(
        &barbara(),
        json!([{"op": "add", "value": {"nickName": "Babs"}}]),
    );
    assert_eq!(patched["nickName"], "Babs");
}

#[test]
fn okta_deactivates_and_reactivates_with_a_path_less_replace() {
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]
    });
    let patched = apply(&barbara(), &deactivate, ResourceType::User).unwrap();
    assert_eq!(patched["active"], false);
    let reactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": true}}]
    });
    assert_eq!(
        apply(&patched, &reactivate, ResourceType::User).unwrap(),
        barbara()
    );
}

#[test]
fn a_path_less_value_must_be_an_object() {
    let error = user_error(&barbara(), json!([{"op": "replace", "value": "x"}]));
    assert_error(&error, ScimType::InvalidValue, "needs an object");
}

// --- groups with members inline (apply) ---------------------------------------

fn group_with_members() -> Value {
    json!({
        "id": "g1",
        "displayName": "Tour Guides",
        "members": [
            {"value": "a", "type": "User", "display": "Ann"},
            {"value": "b", "type": "User"}
        ]
    })
}

fn patch_inline_group(operations: Value) -> Result<Value, ScimError> {
    apply(
        &group_with_members(),
        &request(operations),
        ResourceType::Group,
    )
}

#[test]
fn inline_members_are_added_removed_and_filtered() {
    let patched = patch_inline_group(json!([
        {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "c"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "a"}]},
        {"op": "remove", "path": "members[value eq \"b\"]"}
    ]))
    .unwrap();
    assert_eq!(patched["members"], json!([{"value": "c"}]));
}

#[test]
fn an_immutable_sub_attribute_cannot_change() {
    let error = patch_inline_group(
        json!([{"op": "replace", "path": "members[value eq \"a\"].value", "value": "z"}]),
    )
    .unwrap_err();
    assert_error(&error, ScimType::Mutability, "`value` is immutable");
    let error = patch_inline_group(
        json!([{"op": "replace", "path": "members[value eq \"a\"].type", "value": "Group"}]),
    )
    .unwrap_err();
    assert_eq!(error.scim_type, Some(ScimType::Mutability));
}

#[test]
fn an_immutable_sub_attribute_may_be_set_once_or_to_the_same_value() {
    let patched = patch_inline_group(json!([
        {"op": "replace", "path": "members[value eq \"a\"].value", "value": "a"},
        {"op": "add", "path": "members[value eq \"a\"].$ref", "value": "https://example.com/v2/Users/a"}
    ]))
    .unwrap();
    assert_eq!(
        patched["members"][0]["$ref"],
        "https://example.com/v2/Users/a"
    );
}

#[test]
fn a_group_display_name_is_required() {
    let error = patch_inline_group(json!([{"op": "remove", "path": "displayName"}])).unwrap_err();
    assert_error(&error, ScimType::InvalidValue, "`displayName` is required");
}

// --- groups with members stored elsewhere (apply_group) ----------------------

#[test]
fn entra_adds_members() {
    // Entra, "Update Group [Add Members]".
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{
            "op": "Add",
            "path": "members",
            "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]
        }]
    });
    let (group, change) = apply_group(&tour_guides(), &body).unwrap();
    assert_eq!(group, tour_guides());
    assert_eq!(
        change,
        MembersChange {
            add: vec![member("f648f8d5ea4e4cd38e9c")],
            ..MembersChange::default()
        }
    );
}

#[test]
fn entra_removes_only_the_listed_members() {
    // Entra, "Update Group [Remove Members]": not every member.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{
            "op": "Remove",
            "path": "members",
            "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]
        }]
    });
    let (_, change) = apply_group(&tour_guides(), &body).unwrap();
    assert_eq!(
        change,
        MembersChange {
            remove: vec!["f648f8d5ea4e4cd38e9c".into()],
            ..MembersChange::default()
        }
    );
    assert!(!change.remove_all);
}

#[test]
fn entra_newer_dialect_removes_a_member_by_filter() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "remove", "path": "members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]),
    );
    assert_eq!(change.remove, ["7f4bc1a3-285e-48ae-8202-5accb43efb0e"]);
}

#[test]
fn entra_renames_a_group() {
    // Entra, "Update Group [Non-member attributes]".
    let (group, change) = patch_group(
        &tour_guides(),
        json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]),
    );
    assert_eq!(
        group["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    assert!(change.is_empty());
}

#[test]
fn okta_renames_a_group_with_its_id_in_the_value() {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{
            "op": "replace",
            "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2"}
        }]
    });
    let (group, change) = apply_group(&tour_guides(), &body).unwrap();
    assert_eq!(group["id"], tour_guides()["id"], "id in a value is ignored");
    assert_eq!(group["displayName"], "Test SCIMv2");
    assert!(change.is_empty());
}

#[test]
fn okta_removes_and_adds_members_in_one_patch() {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
            {"op": "add", "path": "members", "value": [
                {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}
            ]}
        ]
    });
    let (_, change) = apply_group(&tour_guides(), &body).unwrap();
    assert_eq!(change.remove, ["89bb1940-b905-4575-9e7f-6f887cfb368e"]);
    assert_eq!(
        change.add,
        [Member {
            value: "23a35c27-23d3-4c03-b4c5-6443c09e7173".into(),
            r#type: None,
            display: Some("test.user@okta.local".into())
        }]
    );
}

#[test]
fn okta_replaces_the_whole_member_set() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "replace", "path": "members", "value": [{"value": "a", "type": "User"}, {"value": "b"}]}]),
    );
    let a = Member {
        r#type: Some("User".into()),
        ..member("a")
    };
    assert_eq!(
        change,
        MembersChange {
            replace_all: Some(vec![a, member("b")]),
            ..MembersChange::default()
        }
    );
}

#[test]
fn members_joined_with_or_are_all_removed() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "remove", "path": "members[value eq \"a\" or value eq \"b\" or VALUE Eq \"c\"]"}]),
    );
    assert_eq!(change.remove, ["a", "b", "c"]);
}

#[test]
fn other_member_filters_are_invalid_filters() {
    for path in [
        "members[display eq \"Ann\"]",
        "members[value co \"a\"]",
        "members[value eq \"a\" and type eq \"User\"]",
        "members[not (value eq \"a\")]",
    ] {
        let error = group_error(json!([{"op": "remove", "path": path}]));
        assert_error(
            &error,
            ScimType::InvalidFilter,
            "members can be selected only by id",
        );
    }
}

#[test]
fn remove_members_without_a_value_removes_all() {
    let (_, change) = patch_group(&tour_guides(), json!([{"op": "remove", "path": "members"}]));
    assert_eq!(
        change,
        MembersChange {
            remove_all: true,
            ..MembersChange::default()
        }
    );
}

#[test]
fn remove_members_with_an_empty_list_removes_none() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "remove", "path": "members", "value": []}]),
    );
    assert!(change.is_empty());
}

#[test]
fn replace_members_with_nothing_removes_all() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "replace", "path": "members", "value": []}]),
    );
    assert_eq!(
        change,
        MembersChange {
            remove_all: true,
            ..MembersChange::default()
        }
    );
}

#[test]
fn path_less_values_may_carry_members() {
    let (group, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "replace", "value": {"displayName": "Guides", "members": [{"value": "a"}]}},
            {"op": "add", "value": {"members": [{"value": "b"}]}}
        ]),
    );
    assert_eq!(group["displayName"], "Guides");
    assert!(group.get("members").is_none());
    assert_eq!(
        change,
        MembersChange {
            replace_all: Some(vec![member("a"), member("b")]),
            ..MembersChange::default()
        }
    );
}

#[test]
fn replace_then_add_is_a_replacement_with_both() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "replace", "path": "members", "value": [{"value": "a"}]},
            {"op": "add", "path": "members", "value": [{"value": "b"}]}
        ]),
    );
    assert_eq!(
        change,
        MembersChange {
            replace_all: Some(vec![member("a"), member("b")]),
            ..MembersChange::default()
        }
    );
}

#[test]
fn remove_then_add_of_the_same_member_leaves_it_present() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "add", "path": "members", "value": [{"value": "a"}]}
        ]),
    );
    assert_eq!(
        change,
        MembersChange {
            add: vec![member("a")],
            ..MembersChange::default()
        }
    );
}

#[test]
fn add_then_remove_of_the_same_member_leaves_it_absent() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "add", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members", "value": [{"value": "a"}]}
        ]),
    );
    assert_eq!(
        change,
        MembersChange {
            remove: vec!["a".into()],
            ..MembersChange::default()
        }
    );
}

#[test]
fn remove_all_then_add_keeps_only_the_added() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"z\"]"}
        ]),
    );
    assert_eq!(
        change,
        MembersChange {
            remove_all: true,
            add: vec![member("a")],
            ..MembersChange::default()
        }
    );
    assert_eq!(
        change.apply_to(vec![member("x"), member("z")]),
        [member("a")]
    );
}

#[test]
fn replace_then_remove_of_every_member_removes_all() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([
            {"op": "replace", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"a\"]"}
        ]),
    );
    assert_eq!(
        change,
        MembersChange {
            remove_all: true,
            ..MembersChange::default()
        }
    );
}

#[test]
fn adding_the_same_member_twice_keeps_one_with_the_latest_details() {
    let (_, change) = patch_group(
        &tour_guides(),
        json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "a", "display": "Ann"}]}]),
    );
    assert_eq!(
        change.add,
        [Member {
            display: Some("Ann".into()),
            ..member("a")
        }]
    );
}

#[test]
fn a_member_needs_a_value() {
    let error =
        group_error(json!([{"op": "add", "path": "members", "value": [{"display": "Ann"}]}]));
    assert_error(
        &error,
        ScimType::InvalidValue,
        "each member needs a `value`",
    );
    let error = group_error(json!([{"op": "add", "path": "members", "value": [{"value": 7}]}]));
    assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn member_sub_attributes_cannot_be_patched_one_by_one() {
    let error = group_error(
        json!([{"op": "replace", "path": "members[value eq \"a\"].display", "value": "Ann"}]),
    );
    assert_error(
        &error,
        ScimType::InvalidPath,
        "sub-attributes cannot be patched",
    );
    let error = group_error(
        json!([{"op": "add", "path": "members[value eq \"a\"]", "value": {"display": "Ann"}}]),
    );
    assert_error(&error, ScimType::InvalidPath, "can only be removed");
}

#[test]
fn a_failing_member_operation_fails_the_whole_group_patch() {
    let result = apply_group(
        &tour_guides(),
        &request(json!([
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "remove", "path": "members[display eq \"Ann\"]"}
        ])),
    );
    assert!(result.is_err());
}

#[test]
fn the_members_change_applies_in_its_documented_order() {
    let change = MembersChange {
        replace_all: None,
        add: vec![
            member("c"),
            Member {
                display: Some("Bee".into()),
                ..member("b")
            },
        ],
        remove: vec!["a".into()],
        remove_all: false,
    };
    let after = change.apply_to(vec![member("a"), member("b")]);
    assert_eq!(
        after,
        [
            Member {
                display: Some("Bee".into()),
                ..member("b")
            },
            member("c")
        ]
    );
}

#[test]
fn other_group_attributes_patch_as_usual() {
    let (group, change) = patch_group(
        &tour_guides(),
        json!([{"op": "add", "path": "externalId", "value": "okta-123"}]),
    );
    assert_eq!(group["externalId"], "okta-123");
    assert!(change.is_empty());
    let error = group_error(json!([{"op": "replace", "path": "id", "value": "x"}]));
    assert_eq!(error.scim_type, Some(ScimType::Mutability));
    let error = group_error(json!([{"op": "remove", "path": "displayName"}]));
    assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
}
