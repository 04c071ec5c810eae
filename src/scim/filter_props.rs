//! Property tests of the SCIM filter and PATCH path parsers over arbitrary
//! input and over random filters written the many ways clients write them.
//!
//! Never a panic (nor a stack overflow) on any text; whatever parses prints
//! back to text that parses to the same filter; a filter written with other
//! spacing, letter case and redundant parentheses parses to the same filter;
//! validating and evaluating any parsed filter against any resource never
//! panics.

use proptest::prelude::*;

use crate::property::cases;
use serde_json::{Number, Value, json};

use super::attr_path::AttrPath;
use super::filter::{CompValue, CompareOp, Filter};
use super::patch::path::PatchPath;
use super::schema::{ENTERPRISE_USER_SCHEMA, ResourceType, USER_SCHEMA};

const OPS: [CompareOp; 9] = [
    CompareOp::Eq,
    CompareOp::Ne,
    CompareOp::Co,
    CompareOp::Sw,
    CompareOp::Ew,
    CompareOp::Gt,
    CompareOp::Lt,
    CompareOp::Ge,
    CompareOp::Le,
];

/// Everything a parsed filter must survive: validation and evaluation for
/// both resource types, against `resources`; and printing, which must parse
/// back to the same filter.
fn exercise(filter: &Filter, resources: &[Value]) -> Result<(), TestCaseError> {
    for resource_type in [ResourceType::User, ResourceType::Group] {
        let _ = filter.validate(resource_type);
        let _ = filter.index_lookup(resource_type);
        let _ = filter.references(resource_type, "members");
        for resource in resources {
            let _ = filter.matches(resource, resource_type);
        }
    }
    let text = filter.to_string();
    prop_assert_eq!(
        Filter::parse(&text).map_err(|e| e.detail),
        Ok(filter.clone()),
        "printed as {}",
        text
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Filters as values, and written with noise

fn attr_path(with_sub: bool) -> impl Strategy<Value = AttrPath> {
    let name = prop_oneof![
        // Real attributes, so validation and evaluation get past resolving.
        4 => prop::sample::select(vec![
            "userName", "displayName", "active", "emails", "name", "meta", "id",
            "externalId", "title", "members", "groups", "phoneNumbers", "addresses",
            "employeeNumber", "manager", "x509Certificates", "roles",
        ])
        .prop_map(str::to_owned),
        // Words the grammar uses, and names nothing defines.
        1 => prop::sample::select(vec!["and", "or", "not", "pr", "eq", "true", "null", "$ref"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ];
    let urn = prop::option::weighted(
        0.2,
        prop::sample::select(vec![
            USER_SCHEMA,
            ENTERPRISE_USER_SCHEMA,
            "urn:example:custom",
        ]),
    );
    let sub = if with_sub {
        prop::option::weighted(
            0.3,
            prop_oneof![
                prop::sample::select(vec![
                    "value",
                    "type",
                    "primary",
                    "display",
                    "givenName",
                    "familyName",
                    "created",
                    "lastModified",
                    "$ref",
                ])
                .prop_map(str::to_owned),
                "[a-zA-Z$][a-zA-Z0-9_-]{0,6}",
            ],
        )
        .boxed()
    } else {
        Just(None).boxed()
    };
    (urn, name, sub).prop_map(|(urn, name, sub_attribute)| AttrPath {
        urn: urn.map(str::to_owned),
        name,
        sub_attribute,
    })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |n| Number::from_f64(n).map(CompValue::Number)),
        prop::sample::select(vec![
            "bjensen@example.com",
            "2011-05-13T04:42:34Z",
            "work",
            "",
            "True",
        ])
        .prop_map(|s| CompValue::String(s.to_owned())),
        any::<String>().prop_map(CompValue::String),
    ]
}

fn leaf(with_sub: bool) -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => (attr_path(with_sub), prop::sample::select(OPS.to_vec()), comp_value())
            .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        1 => attr_path(with_sub).prop_map(|path| Filter::Present { path }),
    ]
}

fn logic(leaf: BoxedStrategy<Filter>) -> impl Strategy<Value = Filter> {
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    let value_path = (attr_path(false), logic(leaf(false).boxed())).prop_map(|(path, filter)| {
        Filter::ValuePath {
            path,
            filter: Box::new(filter),
        }
    });
    logic(prop_oneof![3 => leaf(true), 1 => value_path].boxed())
}

/// Choices for the noisy writer, consumed in turn.
struct Noise {
    choices: Vec<u8>,
    next: usize,
}

impl Noise {
    fn pick(&mut self) -> u8 {
        let choice = self.choices[self.next % self.choices.len()];
        self.next += 1;
        choice
    }

    /// One or more whitespace characters.
    fn space(&mut self) -> &'static str {
        ["  ", " ", "\t", "\n ", " \u{a0}", " ", " ", " "][usize::from(self.pick() % 8)]
    }

    /// Optional whitespace.
    fn maybe_space(&mut self) -> &'static str {
        ["", "", " ", "\t"][usize::from(self.pick() % 4)]
    }

    /// `word` in lower, upper or mixed case.
    fn case(&mut self, word: &str) -> String {
        match self.pick() % 3 {
            0 => word.to_owned(),
            1 => word.to_ascii_uppercase(),
            _ => word
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
        }
    }

    /// A JSON string, with some characters written as `\u` escapes.
    fn string(&mut self, value: &str) -> String {
        let mut out = String::from('"');
        for c in value.chars() {
            let escape = self.pick() % 4 == 0;
            match c {
                '"' | '\\' => out.push_str(&format!("\\{c}")),
                c if (c as u32) < 0x20 || (escape && (c as u32) < 0x10000) => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c if escape => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn value(&mut self, value: &CompValue) -> String {
        match value {
            CompValue::String(s) => self.string(s),
            CompValue::Null => self.case("null"),
            CompValue::Bool(b) => self.case(&b.to_string()),
            CompValue::Number(n) => n.to_string(),
        }
    }

    /// `filter` as a client might write it: any spacing, keywords and
    /// operators in any case, redundant parentheses.
    fn write(&mut self, filter: &Filter) -> String {
        let text = match filter {
            Filter::Compare { path, op, value } => {
                let space = self.space();
                let op = self.case(op.as_str());
                let space2 = self.space();
                format!("{path}{space}{op}{space2}{}", self.value(value))
            }
            Filter::Present { path } => format!("{path}{}{}", self.space(), self.case("pr")),
            Filter::And(left, right) => {
                let left_text = self.operand(left, matches!(**left, Filter::Or(..)));
                let keyword = self.case("and");
                let right_text =
                    self.operand(right, matches!(**right, Filter::Or(..) | Filter::And(..)));
                format!(
                    "{left_text}{}{keyword}{}{right_text}",
                    self.space(),
                    self.space()
                )
            }
            Filter::Or(left, right) => {
                let left_text = self.operand(left, false);
                let keyword = self.case("or");
                let right_text = self.operand(right, matches!(**right, Filter::Or(..)));
                format!(
                    "{left_text}{}{keyword}{}{right_text}",
                    self.space(),
                    self.space()
                )
            }
            Filter::Not(inner) => {
                let keyword = self.case("not");
                let space = self.maybe_space();
                let inner = self.write(inner);
                let (a, b) = (self.maybe_space(), self.maybe_space());
                format!("{keyword}{space}({a}{inner}{b})")
            }
            Filter::ValuePath { path, filter } => {
                let space = self.maybe_space();
                let inner = self.write(filter);
                let (a, b) = (self.maybe_space(), self.maybe_space());
                format!("{path}{space}[{a}{inner}{b}]")
            }
        };
        // A redundant pair of parentheses now and then.
        if self.pick() % 6 == 0 {
            format!("({}{text}{})", self.maybe_space(), self.maybe_space())
        } else {
            text
        }
    }

    fn operand(&mut self, filter: &Filter, parens: bool) -> String {
        let text = self.write(filter);
        if parens { format!("({text})") } else { text }
    }
}

/// A filter and that filter written with noise.
fn noisy_filter() -> impl Strategy<Value = (Filter, String)> {
    (filter(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(filter, choices)| {
        let text = Noise { choices, next: 0 }.write(&filter);
        (filter, text)
    })
}

/// Damage to filter text: a character removed, inserted or the rest cut.
#[derive(Clone, Debug)]
enum Damage {
    Remove(usize),
    Insert(usize, char),
    Cut(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let character = prop_oneof![
        prop::sample::select(vec![
            '(', ')', '[', ']', '"', '\\', '.', ':', ' ', '-', 'e', '$'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(Damage::Remove),
        (any::<usize>(), character).prop_map(|(at, c)| Damage::Insert(at, c)),
        any::<usize>().prop_map(Damage::Cut),
    ]
}

impl Damage {
    fn apply(&self, text: &mut String) {
        let boundary = |at: usize| {
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            boundaries[at % boundaries.len()]
        };
        match *self {
            Self::Remove(at) => {
                let at = boundary(at);
                if at < text.len() {
                    text.remove(at);
                }
            }
            Self::Insert(at, c) => {
                let at = boundary(at);
                text.insert(at, c);
            }
            Self::Cut(at) => {
                let at = boundary(at);
                text.truncate(at);
            }
        }
    }
}

/// Text made of the grammar's tokens in any order.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "userName",
            "emails",
            "emails.value",
            "name.givenName",
            "members",
            "meta.created",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:",
            "urn:x",
            ":",
            ".",
            "$ref",
            "and",
            "or",
            "not",
            "pr",
            "eq",
            "ne",
            "co",
            "sw",
            "ew",
            "gt",
            "lt",
            "ge",
            "le",
            "(",
            ")",
            "[",
            "]",
            "\"x\"",
            "\"",
            "\"\\u00\"",
            "\"\\ud800\"",
            "true",
            "false",
            "null",
            "1",
            "-0",
            "1e999",
            "1.5e-3",
            "-",
            "1e",
            "0x10",
            " ",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,4}",
    ];
    prop::collection::vec(
        (token, prop::sample::select(vec!["", " ", " ", "  "])),
        0..24,
    )
    .prop_map(|tokens| tokens.into_iter().map(|(t, s)| format!("{t}{s}")).collect())
}

// ---------------------------------------------------------------------------
// Resources to evaluate against, with right and wrong types

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "bjensen@example.com",
            "work",
            "2011-05-13T04:42:34Z",
            "True"
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "value",
                    "type",
                    "primary",
                    "display",
                    "givenName",
                    "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A resource whose attributes hold random JSON (often the wrong type).
fn resource() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "userName",
            "displayName",
            "active",
            "emails",
            "name",
            "meta",
            "id",
            "members",
            "title",
            USER_SCHEMA,
            ENTERPRISE_USER_SCHEMA,
        ])
        .prop_map(str::to_owned),
        json_value(),
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn barbara() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "id": "2819c223",
        "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "meta": {"created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
        ENTERPRISE_USER_SCHEMA: {"employeeNumber": "701984", "manager": {"value": "26118915"}}
    })
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(filter) = Filter::parse(&text) {
            exercise(&filter, &[barbara()])?;
        }
        let _ = PatchPath::parse(&text);
        let _ = AttrPath::parse(&text);
    }
}

proptest! {
    #![proptest_config(cases(250))]

    #[test]
    fn parsing_token_soup_never_panics(text in token_soup(), resource in resource()) {
        if let Ok(filter) = Filter::parse(&text) {
            exercise(&filter, &[barbara(), resource])?;
        }
        if let Ok(path) = PatchPath::parse(&text) {
            let _ = path.resolve(ResourceType::User);
            let _ = path.resolve(ResourceType::Group);
        }
    }
}

proptest! {
    #![proptest_config(cases(250))]

    #[test]
    fn display_parses_back_to_the_same_filter(filter in filter()) {
        let text = filter.to_string();
        prop_assert_eq!(Filter::parse(&text).map_err(|e| e.detail), Ok(filter), "{}", text);
    }

    #[test]
    fn a_filter_written_with_noise_parses_to_the_same_filter((filter, text) in noisy_filter()) {
        prop_assert_eq!(Filter::parse(&text).map_err(|e| e.detail), Ok(filter), "{}", text);
    }
}

proptest! {
    #![proptest_config(cases(250))]

    #[test]
    fn damaged_filters_never_panic(
        (_, mut text) in noisy_filter(),
        damage in prop::collection::vec(damage(), 1..4),
        resource in resource(),
    ) {
        for damage in &damage {
            damage.apply(&mut text);
        }
        if let Ok(filter) = Filter::parse(&text) {
            exercise(&filter, &[barbara(), resource])?;
        }
        // The same text as a PATCH path's value filter.
        if let Ok(path) = PatchPath::parse(&format!("emails[{text}].value")) {
            let _ = path.resolve(ResourceType::User);
        }
    }
}

proptest! {
    #![proptest_config(cases(250))]

    #[test]
    fn evaluating_any_filter_on_any_resource_never_panics(
        filter in filter(),
        resource in resource(),
    ) {
        for resource_type in [ResourceType::User, ResourceType::Group] {
            let valid = filter.validate(resource_type).is_ok();
            let matched = filter.matches(&resource, resource_type);
            // `not` is the complement of what it wraps, even on odd data.
            let negated = Filter::Not(Box::new(filter.clone())).matches(&resource, resource_type);
            prop_assert_eq!(matched, !negated, "valid: {}", valid);
        }
    }
}

proptest! {
    #![proptest_config(cases(16))]

    /// The longest filters and deepest nesting the parser accepts are
    /// printed, validated, evaluated and dropped without exhausting the stack.
    #[test]
    fn the_largest_and_deepest_filters_never_overflow_the_stack(
        joiners in prop::collection::vec(prop::sample::select(vec![" and ", " or "]), 999),
        depth in 0usize..40,
        keyword in prop::sample::select(vec!["", "not "]),
    ) {
        let mut long = String::from("userName pr");
        for joiner in &joiners {
            long.push_str(joiner);
            long.push_str("userName pr");
        }
        let filter = Filter::parse(&long).expect("1000 expressions are allowed");
        exercise(&filter, &[barbara()])?;
        let too_long = format!("{long} or userName pr");
        prop_assert!(Filter::parse(&too_long).is_err());

        let deep = format!(
            "{}userName pr{}",
            format!("{keyword}(").repeat(depth),
            ")".repeat(depth)
        );
        match Filter::parse(&deep) {
            Ok(filter) => {
                prop_assert!(depth <= 32, "{} levels parsed", depth);
                exercise(&filter, &[barbara()])?;
            }
            Err(error) => prop_assert!(depth > 32, "{}: {}", depth, error.detail),
        }
    }
}
