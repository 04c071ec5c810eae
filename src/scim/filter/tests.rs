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
fn a_sub_attribute_after_a_value_filter_as_entra_sends_it_means_the_same_element() {
    let text = r#"emails[type eq "work"].value eq "bjensen@example.com""#;
    assert_eq!(
        parse(text),
        Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(and(eq("type", "work"), eq("value", "bjensen@example.com"))),
        }
    );
    assert!(matches_barbara(text));
    // The same element must satisfy both: her home address is not "work".
    assert!(!matches_barbara(
        r#"emails[type eq "work"].value eq "babs@jensen.org""#
    ));
    assert!(matches_barbara(r#"emails[type eq "home"].value pr"#));
    assert!(matches_barbara(
        r#"userName sw "bj" and emails[type eq "work"].value ew "example.com""#
    ));
    // The sub-attribute is checked against the schema like any other.
    invalid_for_users(r#"emails[type eq "work"].nonsense eq "x""#);
}

#[test]
fn value_paths_combine_with_other_expressions() {
    let filter = parse(
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    );
    assert!(matches!(filter, Filter::And(..)));
    let filter =
        parse(r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#);
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
            r#"emails[type eq "work"]. eq "x""#,
            "expected a sub-attribute name after `emails[...].`",
        ),
        (r#"emails[type eq "work"].value"#, "expected an operator"),
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
