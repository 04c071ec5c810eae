//! `ProvisioningPolicy`: one application's identity directory and how it is fed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ConfigMapKeyRef, SecretKeyRef, SecretRef};

/// How one application's users and groups are provisioned. The namespace plus
/// the policy's name is the application's identity directory: every User and
/// Group names the policy it belongs to.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "ProvisioningPolicy",
    plural = "provisioningpolicies",
    namespaced,
    status = "ProvisioningPolicyStatus",
    derive = "PartialEq",
    shortname = "ppol",
    category = "roster",
    doc = "How one application's users and groups are provisioned: by SCIM pushes from the identity provider or just in time at SAML login, never both.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Scim or Jit: which of the two models feeds the application"
    ),
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application.kind",
        description = "Kind of connector the accounts are provisioned through"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the policy is complete and serving"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the policy is or is not ready (the Ready condition's reason)"
    ),
    printcolumn(
        name = "Quarantined",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Quarantined\")].status",
        description = "True while the circuit breaker holds mass deprovisioning for approval"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.mode != 'Jit' || has(self.saml)").message("a Jit policy must set spec.saml: JIT logins are checked against that IdP trust").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("self.mode != 'Scim' || has(self.scim)").message("a Scim policy must set spec.scim with the Secret holding the IdP's bearer tokens").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningPolicySpec {
    /// Which model feeds this application, exactly one of: `Scim` (the identity
    /// provider pushes users and groups to Roster's SCIM service; SAML logins
    /// never change identity attributes) or `Jit` (users are created and updated
    /// at SAML login; the SCIM service refuses requests).
    pub mode: Mode,
    /// Where accounts are provisioned and what deprovisioning means there.
    pub application: ApplicationSpec,
    /// The inbound SCIM service: which bearer tokens the identity provider may use.
    /// Required in `Scim` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<ScimService>,
    /// Trust in the SAML identity provider. Required in `Jit` mode; in `Scim` mode
    /// it lets known, active users sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlTrust>,
    /// Options for just-in-time provisioning. Used only in `Jit` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jit: Option<JitOptions>,
    /// Who may pass the SSO gate in front of the application, and what the
    /// application learns about them. Unset: any active user of the policy,
    /// with oauth2-proxy's header names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessSpec>,
    /// How the policy's Users and Groups are named to Kubernetes, for
    /// AccessGrants. Unset: the policy's Groups cannot be granted access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<super::access::KubernetesNames>,
    /// Holds mass deprovisioning for an operator's approval. On by default.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
}

/// How many deprovisioning actions may reach the application within a
/// sliding window before the policy is quarantined: further deactivations,
/// deletions and member removals are held (creates and updates go on) until
/// an operator approves them or the identity provider takes them back.
/// Account actions (deactivations and deletions) and member removals are
/// counted separately, each against `max(maxActions, maxPercent % of the
/// policy's active users)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Whether the breaker is on. Default true. Turning it off releases
    /// everything it holds.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Actions always allowed within the window. Default 20.
    #[serde(default = "default_max_actions")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_actions: i32,
    /// Actions allowed within the window as a percentage of the policy's
    /// active users, when that is more than `maxActions`. Default 10.
    #[serde(default = "default_max_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub max_percent: i32,
    /// The sliding window, in seconds. Default 600.
    #[serde(default = "default_window")]
    #[schemars(range(min = 10, max = 604800))]
    pub window_seconds: i32,
}

fn default_true() -> bool {
    true
}
fn default_max_actions() -> i32 {
    20
}
fn default_max_percent() -> i32 {
    10
}
fn default_window() -> i32 {
    600
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            enabled: true,
            max_actions: default_max_actions(),
            max_percent: default_max_percent(),
            window_seconds: default_window(),
        }
    }
}

/// The SSO gate's rules for one application (`/gate/{namespace}/{policy}/...`).
/// Every check evaluates them against the directory as it is now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Display names of this policy's Groups whose members may pass. Empty:
    /// every active user of the policy may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_groups: Vec<String>,
    /// Domain of the session cookie, e.g. `example.com`, so the browser sends
    /// it to applications on hosts under that domain as well as to Roster.
    /// Unset: the cookie is Roster's host's only, which serves applications
    /// reached on Roster's host (path routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$')").message("cookieDomain must be a lower-case DNS domain without a leading dot"))]
    #[schemars(length(min = 1, max = 253))]
    pub cookie_domain: Option<String>,
    /// Names of the identity headers an allowed check answers with.
    #[serde(default)]
    pub headers: IdentityHeaders,
}

/// Header names of the identity a check passes to the application. The
/// defaults are oauth2-proxy's `X-Auth-Request-*`, so applications written
/// for it work unchanged. Every one is sent on each allowed check, empty when
/// the user has no value, so a proxy that copies them overwrites any header
/// of the same name the client sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityHeaders {
    /// The userName. Default `X-Auth-Request-User`.
    #[serde(default = "default_user_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]+$')").message("a header name is letters, digits and dashes"))]
    #[schemars(length(min = 1, max = 128))]
    pub user: String,
    /// The primary (or first) email address. Default `X-Auth-Request-Email`.
    #[serde(default = "default_email_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]+$')").message("a header name is letters, digits and dashes"))]
    #[schemars(length(min = 1, max = 128))]
    pub email: String,
    /// The display name. Default `X-Auth-Request-Name` (oauth2-proxy has none).
    #[serde(default = "default_display_name_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]+$')").message("a header name is letters, digits and dashes"))]
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,
    /// The display names of the policy's Groups the user belongs to,
    /// comma-separated. Default `X-Auth-Request-Groups`.
    #[serde(default = "default_groups_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]+$')").message("a header name is letters, digits and dashes"))]
    #[schemars(length(min = 1, max = 128))]
    pub groups: String,
    /// The User's id (its object name, the SCIM id). Default `X-Auth-Request-User-Id`.
    #[serde(default = "default_id_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]+$')").message("a header name is letters, digits and dashes"))]
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
}

fn default_user_header() -> String {
    "X-Auth-Request-User".to_owned()
}
fn default_email_header() -> String {
    "X-Auth-Request-Email".to_owned()
}
fn default_display_name_header() -> String {
    "X-Auth-Request-Name".to_owned()
}
fn default_groups_header() -> String {
    "X-Auth-Request-Groups".to_owned()
}
fn default_id_header() -> String {
    "X-Auth-Request-User-Id".to_owned()
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user: default_user_header(),
            email: default_email_header(),
            display_name: default_display_name_header(),
            groups: default_groups_header(),
            id: default_id_header(),
        }
    }
}

impl IdentityHeaders {
    /// Every name, in a fixed order.
    pub fn names(&self) -> [&str; 5] {
        [
            &self.user,
            &self.email,
            &self.display_name,
            &self.groups,
            &self.id,
        ]
    }
}

/// The provisioning model of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// The identity provider pushes users and groups over SCIM 2.0.
    Scim,
    /// Users are created and updated at their SAML login.
    Jit,
}

/// The application accounts are provisioned into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("self.kind != 'Scim' || (has(self.scim) && !has(self.webhook) && !has(self.postgres) && !has(self.argocdRbac))").message("application.kind Scim needs application.scim and no other connector's settings").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.kind != 'Webhook' || (has(self.webhook) && !has(self.scim) && !has(self.postgres) && !has(self.argocdRbac))").message("application.kind Webhook needs application.webhook and no other connector's settings").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.kind != 'Postgres' || (has(self.postgres) && !has(self.scim) && !has(self.webhook) && !has(self.argocdRbac))").message("application.kind Postgres needs application.postgres and no other connector's settings").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("self.kind != 'ArgoCDRBAC' || (has(self.argocdRbac) && !has(self.scim) && !has(self.webhook) && !has(self.postgres))").message("application.kind ArgoCDRBAC needs application.argocdRbac and no other connector's settings").reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The connector that talks to the application: `Scim` (the application
    /// speaks SCIM 2.0 and Roster is its client) or `Webhook` (signed JSON events).
    pub kind: ApplicationKind,
    /// Settings of the `Scim` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<ScimConnector>,
    /// Settings of the `Webhook` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConnector>,
    /// Settings of the `Postgres` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConnector>,
    /// Settings of the `ArgoCDRBAC` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argocd_rbac: Option<ArgoCdRbacConnector>,
    /// What happens to the application account when its User is deleted:
    /// `Disable` (keep it, inactive) or `Delete` (remove it). Default `Disable`.
    #[serde(default)]
    pub deprovision: DeprovisionAction,
    /// With `deprovision: Delete`, how long a deleted User's account is kept
    /// disabled before it is deleted, in seconds. A User of the policy with
    /// the same userName that comes back within the period (re-pushed by
    /// the identity provider, or a login) takes the account over, enabled
    /// again with its data. Default 86400 (a day); 0 deletes at once.
    #[serde(default = "default_delete_after")]
    #[schemars(range(min = 0, max = 31536000))]
    pub delete_after_seconds: i32,
    /// Plan only: compute what provisioning would do (accounts to create,
    /// adopt, update, disable or delete; groups and member changes) and show
    /// it in the policy's `status.plan` and each object's Synced condition,
    /// without writing to the application. Setting it back to false performs
    /// the plan. How an application that already has accounts is onboarded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn default_delete_after() -> i32 {
    86_400
}

impl ApplicationSpec {
    /// The roles the `groupRoles` map of the settings of this kind gives
    /// the group named `display_name`, sorted: where two entries name the
    /// group, the last wins, as in the connectors. Empty for kinds without
    /// such a map.
    pub fn mapped_roles(&self, display_name: &str) -> Vec<String> {
        let entries: Vec<(&str, &[String])> = match self.kind {
            ApplicationKind::Postgres => self
                .postgres
                .iter()
                .flat_map(|s| &s.group_roles)
                .map(|e| (e.group.as_str(), e.roles.as_slice()))
                .collect(),
            ApplicationKind::ArgoCdRbac => self
                .argocd_rbac
                .iter()
                .flat_map(|s| &s.group_roles)
                .map(|e| (e.group.as_str(), e.roles.as_slice()))
                .collect(),
            ApplicationKind::Scim | ApplicationKind::Webhook => Vec::new(),
        };
        let mut roles: Vec<String> = entries
            .into_iter()
            .rev()
            .find(|(group, _)| *group == display_name)
            .map(|(_, roles)| roles.to_vec())
            .unwrap_or_default();
        roles.sort();
        roles.dedup();
        roles
    }
}

/// Connector kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApplicationKind {
    /// The application is a SCIM 2.0 service provider.
    Scim,
    /// The application receives signed JSON events.
    Webhook,
    /// A PostgreSQL server: Users become LOGIN roles, Groups NOLOGIN roles,
    /// memberships role grants.
    Postgres,
    /// Argo CD's RBAC: one key of its `argocd-rbac-cm` ConfigMap, with a
    /// `g, <userName>, <role>` line per active member of a mapped group.
    #[serde(rename = "ArgoCDRBAC")]
    #[schemars(rename = "ArgoCDRBAC")]
    ArgoCdRbac,
}

/// What deprovisioning means in the application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeprovisionAction {
    /// Deactivate the account and keep it.
    #[default]
    Disable,
    /// Delete the account.
    Delete,
}

/// An application that speaks SCIM 2.0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimConnector {
    /// The application's SCIM base URL, e.g. `https://app.example.com/scim/v2`.
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("baseUrl must be an http or https URL"))]
    #[schemars(length(max = 2048))]
    pub base_url: String,
    /// The Secret key holding the bearer token Roster presents to the application.
    pub token_secret_ref: SecretKeyRef,
}

/// A PostgreSQL server whose roles Roster keeps: Users as LOGIN roles
/// without passwords (authentication stays with the server's own method),
/// Groups as NOLOGIN roles, memberships as grants. Only roles Roster created
/// (marked by their comment) are ever altered or dropped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConnector {
    /// The server's host name or address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// The server's port. Default 5432.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The role Roster connects as: a superuser, or a role with CREATEROLE.
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// The Secret key holding `user`'s password.
    pub password_secret_ref: SecretKeyRef,
    /// The database Roster connects to. Default `postgres`.
    #[serde(default = "default_postgres_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// The role that receives what a deleted role owned (`REASSIGN OWNED`)
    /// in each of `databases` before the role is dropped.
    #[schemars(length(min = 1, max = 63))]
    pub fallback_owner: String,
    /// The databases a deleted role's objects are reassigned and dropped
    /// in. Default: `database` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub databases: Vec<String>,
    /// Roles never altered or dropped, beside `postgres`, `pg_*` and `user`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub protected_roles: Vec<String>,
    /// Existing roles (made by your DBAs, not by Roster) each Group's role
    /// is granted, by the Group's displayName: its members inherit them,
    /// and lose them with the membership. Superuser roles are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub group_roles: Vec<PostgresGroupRoles>,
    /// TLS to the server: `VerifyFull` (default) or `Disable`.
    #[serde(default)]
    pub tls_mode: PostgresTlsMode,
    /// The Secret key holding the CA certificate (PEM) that signed the
    /// server's certificate. Unset: the system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// Argo CD's RBAC, kept in one key of its RBAC ConfigMap that Roster owns
/// (server-side apply, field manager `roster-argocd`); the other keys are
/// never touched. Argo CD appends every `policy.<name>.csv` key to
/// `policy.csv`. Subjects are userNames: with Argo CD's default `scopes:
/// '[groups]'`, set `scopes: '[groups, email]'` in the ConfigMap when the
/// userNames are the emails the IdP sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdRbacConnector {
    /// The namespace Argo CD runs in. Default `argocd`.
    #[serde(default = "default_argocd_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Argo CD's RBAC ConfigMap. Default `argocd-rbac-cm`.
    #[serde(default = "default_argocd_config_map")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
    /// The key Roster owns. Default `policy.roster.csv`.
    #[serde(default = "default_argocd_key")]
    #[x_kube(validation = Rule::new(r"self.matches('^policy\\.[-._a-zA-Z0-9]+\\.csv$') && self != 'policy.csv'").message("key must be policy.<name>.csv, other than policy.csv: Argo CD appends those keys to policy.csv"))]
    #[schemars(length(max = 253))]
    pub key: String,
    /// Which Argo CD roles each Group's active members get, by the Group's
    /// displayName. Groups not listed give no role.
    #[schemars(length(max = 256))]
    pub group_roles: Vec<ArgoCdGroupRoles>,
}

/// The Argo CD roles of one Group's members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdGroupRoles {
    /// The Group's displayName.
    #[schemars(length(min = 1, max = 256))]
    pub group: String,
    /// Argo CD roles, e.g. `role:readonly` (built in) or a role the
    /// ConfigMap's `policy.csv` defines.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(inner(
        length(max = 128),
        regex(pattern = r##"^[^\s,"#]([^\r\n,"]*[^\s,"])?$"##)
    ))]
    pub roles: Vec<String>,
}

fn default_argocd_namespace() -> String {
    "argocd".to_owned()
}

fn default_argocd_config_map() -> String {
    "argocd-rbac-cm".to_owned()
}

fn default_argocd_key() -> String {
    "policy.roster.csv".to_owned()
}

/// The existing PostgreSQL roles one Group's role is granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresGroupRoles {
    /// The Group's displayName.
    #[schemars(length(min = 1, max = 63))]
    pub group: String,
    /// Existing roles, e.g. `read_only` or `pg_read_all_data`.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub roles: Vec<String>,
}

/// How Roster talks to a PostgreSQL server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PostgresTlsMode {
    /// Encrypted, the server's certificate checked against the CA and its
    /// name against `host`, as libpq's `sslmode=verify-full`.
    #[default]
    VerifyFull,
    /// Plain TCP: only for a server on a network you trust.
    Disable,
}

fn default_postgres_port() -> u16 {
    5432
}

fn default_postgres_database() -> String {
    "postgres".to_owned()
}

/// An application that receives signed JSON events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConnector {
    /// The URL events are POSTed to.
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("url must be an http or https URL"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// The Secret key holding the HMAC-SHA256 signing key. With
    /// `signatureScheme: StandardWebhooks` its value is the Standard
    /// Webhooks secret, `whsec_` and the base64 key, as the receiver's
    /// library takes it.
    pub signing_secret_ref: SecretKeyRef,
    /// How requests are signed: `Roster` (default: `Roster-Signature:
    /// v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` with `Roster-Timestamp`
    /// and `Roster-Event-Id`) or `StandardWebhooks` (the Standard Webhooks
    /// specification: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`,
    /// which the maintained libraries in every major language verify).
    #[serde(default)]
    pub signature_scheme: SignatureScheme,
}

/// How webhook requests are signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SignatureScheme {
    #[default]
    Roster,
    StandardWebhooks,
}

/// The inbound SCIM service of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimService {
    /// The Secret whose values are the bearer tokens the identity provider may
    /// present. Every key counts, so a token is rotated by adding the new key,
    /// switching the IdP over, then removing the old key.
    pub token_secret_ref: SecretRef,
    /// How fast the identity provider may call, per Roster replica. Beyond it
    /// requests get 429 with `Retry-After`. Default 50 requests/s, burst 100
    /// (Entra ID needs at least 25/s).
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// A token bucket: `requestsPerSecond` refill, `burst` capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per second.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: i32,
    /// Requests allowed at once above the sustained rate.
    #[schemars(range(min = 1, max = 100000))]
    pub burst: i32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            burst: 100,
        }
    }
}

/// Trust in one SAML 2.0 identity provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.idpMetadata) || has(self.idpMetadataUrl) || has(self.idpMetadataConfigMapRef) || (has(self.idpEntityId) && has(self.idpSsoUrl) && size(self.idpCertificates) > 0)").message("saml needs idpMetadata, idpMetadataUrl or idpMetadataConfigMapRef, or idpEntityId with idpSsoUrl and at least one of idpCertificates").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("[has(self.idpMetadata), has(self.idpMetadataUrl), has(self.idpMetadataConfigMapRef)].filter(x, x).size() <= 1").message("set at most one of idpMetadata, idpMetadataUrl and idpMetadataConfigMapRef").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct SamlTrust {
    /// The IdP's SAML metadata XML. When set, the IdP's entity ID, SSO URL and
    /// signing certificates are read from it; fields below override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub idp_metadata: Option<String>,
    /// Where the IdP publishes its SAML metadata (https only; the
    /// certificate is verified). Read when first needed and again every
    /// `--idp-metadata-refresh-seconds` (default an hour), so a signing key
    /// rollover at the IdP needs no edit here; the last good copy is kept
    /// while the URL fails. At most 256 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("idpMetadataUrl must be an https URL"))]
    pub idp_metadata_url: Option<String>,
    /// A ConfigMap key holding the IdP's SAML metadata XML (e.g. kept current
    /// by a GitOps pipeline); read again within the refresh interval, at
    /// most every 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_config_map_ref: Option<ConfigMapKeyRef>,
    /// The IdP's entity ID, the expected `Issuer` of every response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub idp_entity_id: Option<String>,
    /// The IdP's single sign-on URL (HTTP-Redirect binding), where SP-initiated
    /// logins are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub idp_sso_url: Option<String>,
    /// PEM certificates whose keys may sign responses and assertions. Several
    /// are allowed so a signing key can be rolled over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub idp_certificates: Vec<String>,
    /// The entity ID Roster presents as service provider. Defaults to the
    /// policy's SAML metadata URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub sp_entity_id: Option<String>,
    /// Which assertion attributes fill which User fields.
    #[serde(default)]
    pub attribute_mapping: AttributeMapping,
    /// Clock skew tolerated when checking the assertion's time window, in
    /// seconds. Default 120, at most 600.
    #[serde(default = "default_clock_skew")]
    #[schemars(range(min = 0, max = 600))]
    pub clock_skew_seconds: i32,
    /// Whether logins the IdP starts (unsolicited responses, no InResponseTo)
    /// are accepted. Default false: only logins Roster started are.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Where the browser may be sent after a login (RelayState). An entry
    /// ending in `/` admits every URL below it on the same origin; any other
    /// entry admits exactly that URL. Anything else is never redirected to
    /// (no open redirect): the login ends on Roster's own page instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(u, isURL(u) && (u.startsWith('https://') || u.startsWith('http://')))").message("allowedRedirectUrls must be http or https URLs"))]
    pub allowed_redirect_urls: Vec<String>,
    /// Lifetime of the session cookie set after a successful login, in
    /// seconds. Default 3600, between 60 and 86400.
    #[serde(default = "default_session_lifetime")]
    #[schemars(range(min = 60, max = 86400))]
    pub session_lifetime_seconds: i32,
}

fn default_session_lifetime() -> i32 {
    3600
}

fn default_clock_skew() -> i32 {
    120
}

/// Assertion attribute names for each User field. The defaults accept both
/// Okta's short names and Entra ID's claim URIs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeMapping {
    /// Attribute holding the immutable subject users are keyed on (e.g. Entra's
    /// `http://schemas.microsoft.com/identity/claims/objectidentifier`). Unset
    /// means the NameID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Attribute holding the userName. Unset means the NameID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Attribute holding the primary email address. Unset: `email`, `mail`,
    /// or Entra ID's `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Attribute holding the given name. Unset: `firstName`, `givenName`, or
    /// Entra ID's `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Attribute holding the family name. Unset: `lastName`, `surname`, `sn`, or
    /// Entra ID's `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Attribute holding the display name. Unset: `displayName`, or Entra ID's
    /// `http://schemas.microsoft.com/identity/claims/displayname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Attribute holding group names or ids. Unset: `groups`, or Entra ID's
    /// `http://schemas.microsoft.com/ws/2008/06/identity/claims/groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
}

/// Options for just-in-time provisioning.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JitOptions {
    /// Display names of Groups every JIT-created user joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_groups: Vec<String>,
    /// Email domains allowed to be provisioned, e.g. `example.com`. Empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    /// Deactivate a JIT user after this many days without a login. Unset means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub deprovision_after_days: Option<i32>,
    /// The only group values of an assertion that become Group memberships.
    /// Values not listed are ignored. Empty means no group is taken from
    /// assertions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub allowed_groups: Vec<AllowedGroup>,
    /// What a login does when the assertion says the user's groups did not
    /// fit (Entra ID's groups-overage claim, sent above 150 groups): `Keep`
    /// (default: memberships stay as they are, nothing is removed) or `Refuse`
    /// (the login is refused). Never treated as "no groups".
    #[serde(default)]
    pub groups_overage: GroupsOverage,
}

/// One group value an assertion may carry and the Group it grants.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedGroup {
    /// The value as the IdP sends it: a group name (Okta) or a group object
    /// id (Entra ID). Compared exactly.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
    /// Display name of the Group, in this policy, the value grants. Unset
    /// means the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub group: Option<String>,
}

/// Handling of an assertion whose group list was replaced by an overage claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GroupsOverage {
    /// Keep the user's current memberships unchanged.
    #[default]
    Keep,
    /// Refuse the login.
    Refuse,
}

/// Observed state of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` summarises the others; one condition per aspect says what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The SCIM base URL to configure in the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_base_url: Option<String>,
    /// The URL of this policy's SAML service provider metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_metadata_url: Option<String>,
    /// How many users and groups belong to the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<PolicyCounts>,
    /// Set while the circuit breaker holds deprovisioning actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
    /// With `spec.application.dryRun`: what provisioning would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ProvisioningPlan>,
}

/// What a dry-run policy would do in its application. The full list:
/// `roster plan --namespace NS POLICY`, or each User's and Group's Synced
/// condition (reason `Planned`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningPlan {
    /// Planned actions by kind: `createAccount`, `adoptAccount`,
    /// `updateAccount`, `disableAccount`, `deleteAccount`, `createGroup`,
    /// `adoptGroup`, `updateGroup`, `addMember`, `removeMember`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, i64>,
    /// The first planned actions, e.g. `User u-1: adopt account 42`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<String>,
}

/// Deprovisioning held by the circuit breaker. Approve with
/// `kubectl annotate ppol NAME roster.dev/approve-deprovisioning=TOKEN`;
/// an approval names one quarantine, so an old one never releases a new.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// The value that approves the held actions, as the annotation
    /// `roster.dev/approve-deprovisioning`.
    pub token: String,
    /// When the breaker tripped.
    pub since: Time,
    /// What tripped it.
    pub reason: String,
    /// Deactivations and deletions held.
    pub held_accounts: i64,
    /// Member removals held.
    pub held_member_removals: i64,
    /// The first held actions, e.g. `User alice: Disable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// Counts of a policy's objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounts {
    /// Users belonging to the policy.
    pub users: i64,
    /// Users with `active: true`.
    pub active_users: i64,
    /// Groups belonging to the policy.
    pub groups: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn application(value: serde_json::Value) -> ApplicationSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn mapped_roles_are_the_last_entry_naming_the_group_sorted() {
        let postgres = application(serde_json::json!({
            "kind": "Postgres",
            "postgres": {"host": "db", "user": "roster", "passwordSecretRef": {"name": "s", "key": "k"},
                "fallbackOwner": "app", "groupRoles": [
                {"group": "ops", "roles": ["b", "a"]},
                {"group": "dev", "roles": ["x"]},
                {"group": "ops", "roles": ["z", "c", "z"]},
            ]},
        }));
        assert_eq!(postgres.mapped_roles("ops"), ["c", "z"]);
        assert_eq!(postgres.mapped_roles("dev"), ["x"]);
        assert!(
            postgres.mapped_roles("Ops").is_empty(),
            "names compare exactly"
        );
        let argo = application(serde_json::json!({
            "kind": "ArgoCDRBAC",
            "argocdRbac": {"groupRoles": [{"group": "ops", "roles": ["role:admin"]}]},
        }));
        assert_eq!(argo.mapped_roles("ops"), ["role:admin"]);
        // Settings of another kind give nothing.
        let mut webhook = postgres.clone();
        webhook.kind = ApplicationKind::Webhook;
        assert!(webhook.mapped_roles("ops").is_empty());
    }
}
