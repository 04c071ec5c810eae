//! `User`: one person's identity in one application's directory.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ObjectRef;

/// A person's identity in one application's directory, written by the SCIM
/// service, by JIT login, or by hand. The object's name is its SCIM `id`.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "rsu",
    category = "roster",
    doc = "A person's identity in one application's directory, provisioned into that application as an account.",
    printcolumn(
        name = "UserName",
        type_ = "string",
        json_path = ".spec.userName",
        description = "The unique, case-insensitive user name"
    ),
    printcolumn(
        name = "Active",
        type_ = "boolean",
        json_path = ".status.active",
        description = "Whether Roster treats the user as active (spec.active; unset means true)"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.source",
        description = "Who created the user: Scim, Jit or Manual"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the account matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the account does or does not match (the Ready condition's reason)"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.policy",
        priority = 1,
        description = "The ProvisioningPolicy the user belongs to"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.policy",
    selectable = ".spec.subject"
)]
#[x_kube(validation = Rule::new("!has(oldSelf.subject) || (has(self.subject) && self.subject == oldSelf.subject)").message("subject is immutable once set: users are keyed on it").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// Name of the ProvisioningPolicy, in this namespace, whose application
    /// this user belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("policy is immutable: a user cannot move to another application").reason(Reason::FieldValueForbidden))]
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// The unique identifier the user signs in with, often an email address.
    /// Unique within the policy, compared case-insensitively.
    #[x_kube(validation = Rule::new("self.matches('\\\\S')").message("userName must not be empty").reason(Reason::FieldValueRequired))]
    #[schemars(length(max = 512))]
    pub user_name: String,
    /// The identity provider's own identifier for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub external_id: Option<String>,
    /// The immutable SAML subject (NameID or a configured attribute) a JIT user is keyed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,
    /// Whether the user may sign in and the application account is enabled.
    /// Unset means active (SCIM lets an identity provider leave it unassigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// The components of the user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// The name shown for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A casual name for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    /// The user's job title, e.g. "Vice President".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The relationship to the organisation, e.g. "Employee" or "Contractor".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Preferred written or spoken language, e.g. "en-US".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    /// Default location for localisation, e.g. "en-US".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Time zone in IANA form, e.g. "Europe/Berlin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<MultiValuedAttribute>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<MultiValuedAttribute>,
    /// Postal addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Attributes of the SCIM enterprise user extension
    /// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<EnterpriseAttributes>,
    /// Further attributes, by name, that the identity provider sends and the
    /// schema above does not name. Kept and returned as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::common::free_form_map")]
    pub extra_attributes: BTreeMap<String, serde_json::Value>,
}

impl UserSpec {
    /// Whether the user is active: unset counts as active.
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }
}

/// The components of a person's name (RFC 7643 section 4.1.1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonName {
    /// The full name, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    /// The family name, or last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// The given name, or first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// The middle name(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Honorific prefix, e.g. "Ms.".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    /// Honorific suffix, e.g. "III".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
}

/// One value of a multi-valued attribute such as an email or phone number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiValuedAttribute {
    /// The value, e.g. "alice@example.com".
    pub value: String,
    /// A label for the value, e.g. "work" or "home".
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether this is the preferred value. At most one value is primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// A human-readable form of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// A postal address (RFC 7643 section 4.1.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// A label for the address, e.g. "work".
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The full address, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    /// Street address, including house number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    /// City or locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country, ISO 3166-1 alpha-2, e.g. "DE".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Whether this is the preferred address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// The SCIM enterprise user extension (RFC 7643 section 4.3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseAttributes {
    /// The organisation's identifier for the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    /// The cost centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    /// The organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The division.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    /// The department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The user's manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ObjectRef>,
}

/// Observed state of a user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// Who created the user: `Scim`, `Jit` or `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Whether Roster treats the user as active: `spec.active`, where unset
    /// (SCIM lets an identity provider leave it out) means true. What the
    /// ACTIVE column of `kubectl get users` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// When the user last signed in through SAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<Time>,
    /// The user's account in the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// The generation of the spec the controller last acted on: with the
    /// Ready condition, what GitOps tools (kstatus, Argo CD) read as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` summarises the others; one condition per aspect says what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Who created a User or Group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Source {
    /// Pushed by the identity provider through the SCIM service.
    Scim,
    /// Created at SAML login.
    Jit,
    /// Written directly to the Kubernetes API (kubectl, GitOps).
    Manual,
}

/// An account in the application, as last synced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The application's id for the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// The state of the account in the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AccountState>,
    /// The spec generation last synced to the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_generation: Option<i64>,
    /// When the account was last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// Set while the User is being deleted under a grace period: the
    /// account is disabled and will be deleted at this time, unless a User
    /// with the same userName comes back first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<Time>,
}

/// States of an application account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountState {
    /// The account exists and is enabled.
    Active,
    /// The account exists and is disabled.
    Disabled,
    /// The account was deleted.
    Deleted,
}
