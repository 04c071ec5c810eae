//! Just-in-time provisioning: what a verified login says about its user
//! (pure), and the writes a login makes (I/O, at the bottom).
//!
//! Users are keyed on an immutable subject (the NameID, or a configured
//! attribute such as Entra ID's object id), never linked by email; a
//! deactivated user is refused, never reactivated; and in Scim mode a login
//! never creates or changes a user (only `status.lastLogin`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use samael::schema::Assertion;
use serde_json::json;

use super::checks::Padded;
use crate::api::API_VERSION;
use crate::api::{
    AllowedGroup, AttributeMapping, GroupsOverage, JitOptions, Mode, MultiValuedAttribute,
    PersonName, User, UserNameClaim, UserSpec, claim_name,
};
use crate::deadline::Deadline;
use crate::directory::membership::MembershipIndex;
use crate::directory::writers::{self, JIT_MANAGER, SOURCE_LABEL, Writer};
use crate::directory::{ClaimError, UserNames};
use crate::identity::{self, Refusal, same_user_name};

pub use crate::api::LAST_MODIFIED_ANNOTATION;
/// Annotation on Users a login wrote: the ID of the assertion that wrote them.
pub const ASSERTION_ANNOTATION: &str = "roster.dev/saml-assertion";

/// How stale `status.lastLogin` may be: a login within this long of the
/// recorded one makes no status write.
pub const LAST_LOGIN_PRECISION: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(60);

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

// Default attribute names: Okta's usual short names, LDAP-ish ones, the
// X.500 OIDs, and Entra ID's claim URIs.
const EMAIL: &[&str] = &[
    "email",
    "mail",
    "emailAddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];
const GIVEN_NAME: &[&str] = &[
    "firstName",
    "givenName",
    "given_name",
    "urn:oid:2.5.4.42",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
];
const FAMILY_NAME: &[&str] = &[
    "lastName",
    "surname",
    "sn",
    "family_name",
    "urn:oid:2.5.4.4",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
];
const DISPLAY_NAME: &[&str] = &[
    "displayName",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
];
const GROUPS: &[&str] = &[
    "groups",
    "memberOf",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
];
/// Entra ID sends this instead of the groups claim above 150 groups.
pub const GROUPS_OVERAGE: &str = "http://schemas.microsoft.com/claims/groups.link";

/// Why a verified login cannot be mapped to a user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the assertion has no NameID")]
    NoNameId,
    #[error("the subject attribute {0:?} is missing or not single-valued")]
    NoSubject(String),
    #[error("the NameID is transient, so it cannot key a user; map the subject to an attribute")]
    TransientSubject,
    #[error("the userName attribute {0:?} is missing")]
    NoUserName(String),
    // Escaped to ASCII, so the log shows a Kelvin sign as \u{212a}, not as K.
    #[error("the subject \"{}\" {}", .0.escape_default(), .1)]
    BadSubject(String, Refusal),
    #[error("the userName \"{}\" {}", .0.escape_default(), .1)]
    BadUserName(String, Refusal),
    #[error("the email domain of {0:?} is not allowed by the policy")]
    EmailDomain(String),
    #[error(
        "the assertion's groups did not fit (overage claim) and the policy refuses such logins"
    )]
    GroupsOverage,
}

/// The identity a verified assertion carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    pub name_id: Option<String>,
    pub name_id_format: Option<String>,
    /// Attribute values by attribute `Name`.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Values the XML parser trimmed (found on the raw XML by the checks).
    pub padded: Padded,
}

impl Login {
    pub fn from_assertion(assertion: &Assertion, padded: &Padded) -> Self {
        let name_id = assertion.subject.as_ref().and_then(|s| s.name_id.as_ref());
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for attribute in assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| &s.attributes)
        {
            let Some(name) = &attribute.name else {
                continue;
            };
            // Values as the IdP signed them: never trimmed, so a padded
            // look-alike of a subject or userName is refused, not matched.
            let values = attribute
                .values
                .iter()
                .filter_map(|v| v.value.clone())
                .filter(|v| !v.is_empty());
            attributes.entry(name.clone()).or_default().extend(values);
        }
        Self {
            name_id: name_id.map(|n| n.value.clone()).filter(|v| !v.is_empty()),
            name_id_format: name_id.and_then(|n| n.format.clone()),
            attributes,
            padded: padded.clone(),
        }
    }

    /// The whitespace the parser trimmed from the NameID (`None`) or from a
    /// value of the attribute `name`, if any.
    fn trimmed(&self, name: Option<&String>) -> Option<char> {
        match name {
            None => self.padded.name_id,
            Some(name) => self.padded.attributes.get(name).copied(),
        }
    }

    fn single(&self, name: &str) -> Option<&str> {
        match self.attributes.get(name).map(Vec::as_slice) {
            Some([one]) => Some(one.as_str()),
            _ => None,
        }
    }

    /// The first value of the configured attribute, or of the first default
    /// name present.
    fn first(&self, configured: Option<&String>, defaults: &[&str]) -> Option<String> {
        match configured {
            Some(name) => self.attributes.get(name)?.first().cloned(),
            None => defaults
                .iter()
                .find_map(|name| self.attributes.get(*name)?.first().cloned()),
        }
    }
}

/// What a login says about its group memberships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupClaim {
    /// The assertion carries no group attribute: memberships stay as they are.
    Absent,
    /// The complete list of group values.
    Listed(Vec<String>),
    /// The list did not fit (Entra ID's overage claim): it is unknown.
    Overage,
}

/// The user a login describes, after the policy's mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub subject: String,
    pub user_name: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: GroupClaim,
}

/// Maps a login through the policy's attribute mapping.
pub fn map(login: &Login, mapping: &AttributeMapping) -> Result<Mapped, MappingError> {
    let subject = match &mapping.subject {
        Some(name) => login
            .single(name)
            .map(str::to_owned)
            .ok_or_else(|| MappingError::NoSubject(name.clone()))?,
        None => {
            if login.name_id_format.as_deref() == Some(TRANSIENT) {
                return Err(MappingError::TransientSubject);
            }
            login.name_id.clone().ok_or(MappingError::NoNameId)?
        }
    };
    let user_name = match &mapping.user_name {
        Some(name) => login
            .first(Some(name), &[])
            .ok_or_else(|| MappingError::NoUserName(name.clone()))?,
        None => login.name_id.clone().ok_or(MappingError::NoNameId)?,
    };
    // The subject is compared byte-exact and the userName by its fold
    // (crate::identity); either one that could pass for another is refused.
    login
        .trimmed(mapping.subject.as_ref())
        .map_or_else(
            || identity::validate_subject(&subject),
            |c| Err(Refusal::EdgeWhitespace(c)),
        )
        .map_err(|refusal| MappingError::BadSubject(subject.clone(), refusal))?;
    login
        .trimmed(mapping.user_name.as_ref())
        .map_or_else(
            || identity::validate_user_name(&user_name),
            |c| Err(Refusal::EdgeWhitespace(c)),
        )
        .map_err(|refusal| MappingError::BadUserName(user_name.clone(), refusal))?;
    let groups = match &mapping.groups {
        Some(name) => login.attributes.get(name).cloned(),
        None => GROUPS
            .iter()
            .find_map(|n| login.attributes.get(*n).cloned()),
    };
    let groups = match groups {
        Some(list) => GroupClaim::Listed(list),
        None if login.attributes.contains_key(GROUPS_OVERAGE) => GroupClaim::Overage,
        None => GroupClaim::Absent,
    };
    Ok(Mapped {
        subject,
        user_name,
        email: login.first(mapping.email.as_ref(), EMAIL),
        given_name: login.first(mapping.given_name.as_ref(), GIVEN_NAME),
        family_name: login.first(mapping.family_name.as_ref(), FAMILY_NAME),
        display_name: login.first(mapping.display_name.as_ref(), DISPLAY_NAME),
        groups,
    })
}

/// The policy's rules on a mapped login: allowed email domains, and the
/// overage rule. (Checked before anything is written.)
pub fn admit(mapped: &Mapped, options: &JitOptions) -> Result<(), MappingError> {
    if !options.allowed_email_domains.is_empty() {
        let domain = mapped
            .email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_lowercase());
        let allowed = domain.is_some_and(|d| {
            options
                .allowed_email_domains
                .iter()
                .any(|a| a.trim_start_matches('@').eq_ignore_ascii_case(&d))
        });
        if !allowed {
            return Err(MappingError::EmailDomain(
                mapped.email.clone().unwrap_or_default(),
            ));
        }
    }
    if mapped.groups == GroupClaim::Overage && options.groups_overage == GroupsOverage::Refuse {
        return Err(MappingError::GroupsOverage);
    }
    Ok(())
}

/// The User spec fields a JIT login owns. `active` is never among them: a
/// login neither deactivates nor reactivates anyone.
pub fn spec(mapped: &Mapped, policy: &str) -> UserSpec {
    let name = (mapped.given_name.is_some() || mapped.family_name.is_some()).then(|| PersonName {
        given_name: mapped.given_name.clone(),
        family_name: mapped.family_name.clone(),
        ..Default::default()
    });
    UserSpec {
        policy: policy.to_owned(),
        user_name: mapped.user_name.clone(),
        subject: Some(mapped.subject.clone()),
        name,
        display_name: mapped.display_name.clone(),
        emails: mapped
            .email
            .iter()
            .map(|e| MultiValuedAttribute {
                value: e.clone(),
                kind: Some("work".into()),
                primary: Some(true),
                display: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// The Group display names a login's group values grant: only allowlisted
/// values count, unknown ones are ignored. `None` means "leave memberships
/// as they are" (no group attribute, or an overage claim).
pub fn granted_groups(claim: &GroupClaim, allowlist: &[AllowedGroup]) -> Option<BTreeSet<String>> {
    let GroupClaim::Listed(values) = claim else {
        return None;
    };
    Some(
        allowlist
            .iter()
            .filter(|a| values.contains(&a.value))
            .map(|a| a.group.clone().unwrap_or_else(|| a.value.clone()))
            .collect(),
    )
}

/// Field selector values escape `\`, `,` and `=` (apimachinery's EscapeValue).
fn field_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

// ----- I/O ---------------------------------------------------------------------

/// Why a login wrote nothing, or could not finish writing.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(
        "no user of this policy has subject or userName of this login (Scim mode never creates users)"
    )]
    UnknownUser,
    #[error("user {0} is deactivated")]
    Inactive(String),
    #[error("userName {0:?} belongs to another user of the policy; logins never link accounts")]
    UserNameTaken(String),
    #[error("the Kubernetes API failed: {0}")]
    Api(#[from] kube::Error),
}

/// What a login does to its user.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Jit: create a user for an unknown subject.
    Create,
    /// Jit: update a known, active user's mapped attributes.
    Update(Box<User>),
    /// Scim: a known, active user; record the login only.
    Touch(Box<User>),
}

/// What a login wrote to its user's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    /// Nothing (Scim mode, or no mapped attribute changed).
    Unchanged,
}

/// A policy's users, as a login sees them.
pub struct Users {
    api: Api<User>,
    claims: Api<UserNameClaim>,
    names: UserNames,
    index: MembershipIndex,
    namespace: String,
    policy: String,
    /// The login's deadline, recorded in the userName claims it writes.
    deadline: Timestamp,
}

impl Users {
    pub fn new(
        client: kube::Client,
        index: MembershipIndex,
        namespace: &str,
        policy: &str,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client.clone(), namespace),
            names: UserNames::new(client, namespace, policy),
            index,
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            deadline: Deadline::from_now().wall,
        }
    }

    /// For a login that stops waiting at `deadline`.
    pub fn until(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline.wall;
        self
    }

    /// The user of this policy keyed on `subject`. The index names it for a
    /// known person, confirmed by one read of the API server's watch cache;
    /// otherwise (a first login, or a User the watch has not shown yet) one
    /// list by field selector.
    pub async fn by_subject(&self, subject: &str) -> Result<Option<User>, kube::Error> {
        // Compared byte for byte: the key is exactly what the IdP sent.
        let keyed = |u: &User| {
            u.metadata.deletion_timestamp.is_none()
                && u.spec.policy == self.policy
                && u.spec.subject.as_deref() == Some(subject)
        };
        if let Some(id) = self
            .index
            .user_by_subject(&self.namespace, &self.policy, subject)
            && let Some(user) = recent(&self.api, &id).await?.filter(keyed)
        {
            return Ok(Some(user));
        }
        let params = ListParams::default().fields(&format!(
            "spec.policy={},spec.subject={}",
            field_value(&self.policy),
            field_value(subject)
        ));
        let list = self.api.list(&params).await?;
        Ok(list.items.into_iter().find(keyed))
    }

    /// The user holding `user_name` through its claim (case-insensitive).
    async fn by_user_name(&self, user_name: &str) -> Result<Option<User>, kube::Error> {
        let Some(claim) = self
            .claims
            .get_opt(&claim_name(&self.policy, user_name))
            .await?
        else {
            return Ok(None);
        };
        let user = self.api.get_opt(&claim.spec.user).await?;
        Ok(user.filter(|u| {
            u.spec.policy == self.policy
                && u.metadata.deletion_timestamp.is_none()
                && same_user_name(&u.spec.user_name, user_name)
        }))
    }

    /// Decides what a login under a policy in `mode` does, reading only.
    ///
    /// Jit: an unknown subject is created, a known active one updated.
    /// Scim: the user must exist (by subject, else by the IdP's userName when
    /// it carries no other subject) and be active; it is only touched.
    /// A deactivated user is refused in both modes.
    pub async fn decide(
        &self,
        mode: Mode,
        mapped: &Mapped,
        options: &JitOptions,
    ) -> Result<Decision, LoginError> {
        let known = self.by_subject(&mapped.subject).await?;
        if let Some(user) = known.as_ref().filter(|u| !u.spec.is_active()) {
            return Err(LoginError::Inactive(user.name_any()));
        }
        match writers::may_write(mode, Writer::Jit) {
            Ok(()) => {
                admit(mapped, options)?;
                // The userName must be free or this user's own: checked here,
                // before anything is written, and again by the claim itself.
                // A known user keeping its userName holds its claim already.
                let renamed = known
                    .as_ref()
                    .is_none_or(|k| !same_user_name(&k.spec.user_name, &mapped.user_name));
                if renamed {
                    let holder = self.by_user_name(&mapped.user_name).await?;
                    let own =
                        |u: &User| known.as_ref().is_some_and(|k| k.name_any() == u.name_any());
                    if holder.is_some_and(|h| !own(&h)) {
                        return Err(LoginError::UserNameTaken(mapped.user_name.clone()));
                    }
                }
                Ok(match known {
                    Some(user) => Decision::Update(Box::new(user)),
                    None => Decision::Create,
                })
            }
            Err(_) => {
                let user = match known {
                    Some(user) => user,
                    None => self
                        .by_user_name(&mapped.user_name)
                        .await?
                        .filter(|u| u.spec.subject.is_none())
                        .ok_or(LoginError::UnknownUser)?,
                };
                if !user.spec.is_active() {
                    return Err(LoginError::Inactive(user.name_any()));
                }
                Ok(Decision::Touch(Box::new(user)))
            }
        }
    }

    /// Carries out a decision: the spec through server-side apply as
    /// `roster-jit` (Jit mode only), then `status.lastLogin`.
    pub async fn execute(
        &self,
        decision: Decision,
        mapped: &Mapped,
        assertion_id: &str,
    ) -> Result<(User, Written), LoginError> {
        let (user, written) = match decision {
            Decision::Create => (self.create(mapped, assertion_id).await?, Written::Created),
            Decision::Update(user) => self.update(&user, mapped, assertion_id).await?,
            Decision::Touch(user) => (*user, Written::Unchanged),
        };
        Ok((self.touch(&user).await?, written))
    }

    async fn create(&self, mapped: &Mapped, assertion_id: &str) -> Result<User, LoginError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.claim(&mapped.user_name, &id).await?;
        match self.apply(&id, mapped, assertion_id).await {
            Ok(user) => Ok(user),
            Err(error) => {
                self.names.release(&mapped.user_name, &id).await;
                Err(error.into())
            }
        }
    }

    async fn update(
        &self,
        current: &User,
        mapped: &Mapped,
        assertion_id: &str,
    ) -> Result<(User, Written), LoginError> {
        let id = current.name_any();
        let wanted = spec(mapped, &self.policy);
        let current_spec = UserSpec {
            active: None,
            ..current.spec.clone()
        };
        if jit_fields(&current_spec) == jit_fields(&wanted) {
            return Ok((current.clone(), Written::Unchanged)); // no write
        }
        let renamed = !same_user_name(&current.spec.user_name, &mapped.user_name);
        if renamed {
            self.claim(&mapped.user_name, &id).await?;
        }
        match self.apply(&id, mapped, assertion_id).await {
            Ok(user) => {
                if renamed {
                    self.names.release(&current.spec.user_name, &id).await;
                }
                Ok((user, Written::Updated))
            }
            Err(error) => {
                if renamed {
                    self.names.release(&mapped.user_name, &id).await;
                }
                Err(error.into())
            }
        }
    }

    async fn claim(&self, user_name: &str, id: &str) -> Result<(), LoginError> {
        self.names
            .claim(user_name, id, self.deadline)
            .await
            .map_err(|error| match error {
                ClaimError::Taken(name) => LoginError::UserNameTaken(name),
                // Another person's abandoned user: the same person's would
                // have been found by subject.
                ClaimError::Abandoned(_) => LoginError::UserNameTaken(user_name.to_owned()),
                ClaimError::Conflict => LoginError::UserNameTaken(user_name.to_owned()),
                ClaimError::Api(error) => LoginError::Api(error),
            })
    }

    async fn apply(
        &self,
        id: &str,
        mapped: &Mapped,
        assertion_id: &str,
    ) -> Result<User, kube::Error> {
        let object = json!({
            "apiVersion": API_VERSION,
            "kind": "User",
            "metadata": {
                "name": id,
                "labels": { SOURCE_LABEL: "jit" },
                "annotations": {
                    LAST_MODIFIED_ANNOTATION: now(),
                    ASSERTION_ANNOTATION: assertion_id,
                },
            },
            "spec": spec(mapped, &self.policy),
        });
        // JIT is the source of truth wherever it is on (as SCIM is in Scim mode).
        let params = PatchParams::apply(JIT_MANAGER).force();
        self.api.patch(id, &params, &Patch::Apply(&object)).await
    }

    /// Records the login: `status.lastLogin` only, by a merge patch that
    /// touches nothing else. Accurate to [`LAST_LOGIN_PRECISION`]: a login
    /// soon after the last one writes nothing (each login is in the log and
    /// the audit Events; lastLogin only feeds inactivity, counted in days).
    async fn touch(&self, user: &User) -> Result<User, LoginError> {
        let jit_created = user.labels().get(SOURCE_LABEL).map(String::as_str) == Some("jit");
        let status = user.status.as_ref();
        let needs_source = jit_created && status.and_then(|s| s.source).is_none();
        let now = k8s_openapi::jiff::Timestamp::now();
        let recent = status
            .and_then(|s| s.last_login.as_ref())
            .is_some_and(|at| now.duration_since(at.0) < LAST_LOGIN_PRECISION);
        if recent && !needs_source {
            return Ok(user.clone());
        }
        let mut status = json!({ "lastLogin": now.to_string() });
        if needs_source {
            status["source"] = json!("Jit");
        }
        let params = PatchParams {
            field_manager: Some(JIT_MANAGER.to_owned()),
            ..Default::default()
        };
        Ok(self
            .api
            .patch_status(
                &user.name_any(),
                &params,
                &Patch::Merge(&json!({ "status": status })),
            )
            .await?)
    }
}

/// The User named `id` as the API server's watch cache holds it
/// (`resourceVersion=0`): no etcd read, and at most as stale as the index
/// that named it. A login decided on it writes by server-side apply, never
/// by a conditional update, so staleness can't lose a change.
async fn recent(api: &Api<User>, id: &str) -> Result<Option<User>, kube::Error> {
    match api.get_with(id, &kube::api::GetParams::any()).await {
        Ok(user) => Ok(Some(user)),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The spec fields a login writes, for comparison.
fn jit_fields(spec: &UserSpec) -> serde_json::Value {
    json!({
        "userName": spec.user_name,
        "subject": spec.subject,
        "name": spec.name,
        "displayName": spec.display_name,
        "emails": spec.emails,
    })
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(name_id: &str, attributes: &[(&str, &[&str])]) -> Login {
        Login {
            name_id: Some(name_id.into()),
            name_id_format: None,
            padded: Padded::default(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn okta_attribute_names_map_by_default() {
        let l = login(
            "alice@example.com",
            &[
                ("email", &["alice@example.com"]),
                ("firstName", &["Alice"]),
                ("lastName", &["Liddell"]),
                ("groups", &["Engineering", "Everyone"]),
            ],
        );
        let m = map(&l, &AttributeMapping::default()).unwrap();
        assert_eq!(m.subject, "alice@example.com");
        assert_eq!(m.user_name, "alice@example.com");
        assert_eq!(m.email.as_deref(), Some("alice@example.com"));
        assert_eq!(m.given_name.as_deref(), Some("Alice"));
        assert_eq!(m.family_name.as_deref(), Some("Liddell"));
        assert_eq!(
            m.groups,
            GroupClaim::Listed(vec!["Engineering".into(), "Everyone".into()])
        );
    }

    #[test]
    fn entra_claims_map_by_default_and_the_subject_can_be_the_object_id() {
        let l = login(
            "bob@contoso.com",
            &[
                (
                    "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    &["6f1c-oid"],
                ),
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                    &["bob@contoso.com"],
                ),
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
                    &["Bob"],
                ),
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
                    &["Builder"],
                ),
                (
                    "http://schemas.microsoft.com/identity/claims/displayname",
                    &["Bob Builder"],
                ),
            ],
        );
        let mapping = AttributeMapping {
            subject: Some("http://schemas.microsoft.com/identity/claims/objectidentifier".into()),
            ..Default::default()
        };
        let m = map(&l, &mapping).unwrap();
        assert_eq!(m.subject, "6f1c-oid");
        assert_eq!(m.user_name, "bob@contoso.com");
        assert_eq!(m.email.as_deref(), Some("bob@contoso.com"));
        assert_eq!(m.display_name.as_deref(), Some("Bob Builder"));
        assert_eq!(m.groups, GroupClaim::Absent);
    }

    #[test]
    fn a_missing_or_multi_valued_subject_attribute_is_refused() {
        let mapping = AttributeMapping {
            subject: Some("oid".into()),
            ..Default::default()
        };
        assert_eq!(
            map(&login("a", &[]), &mapping),
            Err(MappingError::NoSubject("oid".into()))
        );
        assert_eq!(
            map(&login("a", &[("oid", &["1", "2"])]), &mapping),
            Err(MappingError::NoSubject("oid".into()))
        );
    }

    #[test]
    fn a_transient_name_id_never_keys_a_user() {
        let mut l = login("x1", &[]);
        l.name_id_format = Some(TRANSIENT.into());
        assert_eq!(
            map(&l, &AttributeMapping::default()),
            Err(MappingError::TransientSubject)
        );
    }

    #[test]
    fn the_email_domain_allowlist_is_enforced() {
        let options = JitOptions {
            allowed_email_domains: vec!["example.com".into()],
            ..Default::default()
        };
        let mut m = map(
            &login("a", &[("email", &["a@Example.COM"])]),
            &AttributeMapping::default(),
        )
        .unwrap();
        assert_eq!(admit(&m, &options), Ok(()));
        m.email = Some("a@evil.com".into());
        assert!(matches!(
            admit(&m, &options),
            Err(MappingError::EmailDomain(_))
        ));
        m.email = None;
        assert!(matches!(
            admit(&m, &options),
            Err(MappingError::EmailDomain(_))
        ));
    }

    #[test]
    fn only_allowlisted_groups_are_granted() {
        let allow = vec![
            AllowedGroup {
                value: "Engineering".into(),
                group: None,
            },
            AllowedGroup {
                value: "0b7e-oid".into(),
                group: Some("admins".into()),
            },
            AllowedGroup {
                value: "Sales".into(),
                group: None,
            },
        ];
        let claim = GroupClaim::Listed(vec![
            "Engineering".into(),
            "0b7e-oid".into(),
            "Unknown".into(),
        ]);
        assert_eq!(
            granted_groups(&claim, &allow),
            Some(BTreeSet::from([
                "Engineering".to_owned(),
                "admins".to_owned()
            ]))
        );
        assert_eq!(
            granted_groups(&GroupClaim::Listed(vec![]), &allow),
            Some(BTreeSet::new())
        );
    }

    #[test]
    fn an_overage_claim_is_never_an_empty_group_list() {
        let l = login(
            "a",
            &[(
                GROUPS_OVERAGE,
                &["https://graph.microsoft.com/v1.0/users/x/getMemberObjects"],
            )],
        );
        let m = map(&l, &AttributeMapping::default()).unwrap();
        assert_eq!(m.groups, GroupClaim::Overage);
        assert_eq!(
            granted_groups(
                &m.groups,
                &[AllowedGroup {
                    value: "x".into(),
                    group: None
                }]
            ),
            None
        );
        let keep = JitOptions::default();
        assert_eq!(admit(&m, &keep), Ok(()));
        let refuse = JitOptions {
            groups_overage: GroupsOverage::Refuse,
            ..Default::default()
        };
        assert_eq!(admit(&m, &refuse), Err(MappingError::GroupsOverage));
    }

    #[test]
    fn a_jit_spec_never_sets_active() {
        let m = map(
            &login("a", &[("email", &["a@example.com"])]),
            &AttributeMapping::default(),
        )
        .unwrap();
        let s = spec(&m, "crm");
        assert_eq!(s.active, None);
        assert_eq!(s.subject.as_deref(), Some("a"));
        assert_eq!(s.emails[0].primary, Some(true));
    }

    #[test]
    fn padded_or_invisible_subjects_and_user_names_are_refused() {
        let default = AttributeMapping::default();
        for name_id in [
            "admin@corp.com\u{A0}",
            "admin@corp.com\t",
            "\u{2003}admin@corp.com",
            "ad\u{200B}min@corp.com",
        ] {
            assert!(
                matches!(
                    map(&login(name_id, &[]), &default),
                    Err(MappingError::BadSubject(..))
                ),
                "{name_id:?}"
            );
        }
        // The NameID is the userName by default: a look-alike one is refused.
        for name_id in ["\u{212A}evin@corp.com", "\u{FF41}dmin@corp.com"] {
            assert!(
                matches!(
                    map(&login(name_id, &[]), &default),
                    Err(MappingError::BadUserName(_, Refusal::NotNfkc))
                ),
                "{name_id:?}"
            );
        }
        let error = map(&login("\u{212A}evin@corp.com", &[]), &default).unwrap_err();
        assert!(error.to_string().contains(r"\u{212a}evin"), "{error}");
        // A configured subject attribute is checked the same way.
        let by_oid = AttributeMapping {
            subject: Some("oid".into()),
            ..Default::default()
        };
        assert!(matches!(
            map(&login("a@corp.com", &[("oid", &["6f1c \n"])]), &by_oid),
            Err(MappingError::BadSubject(..))
        ));
    }

    #[test]
    fn a_value_the_xml_parser_trimmed_is_refused() {
        let mut l = login("admin@corp.com", &[("oid", &["6f1c"])]);
        l.padded.name_id = Some('\t');
        assert_eq!(
            map(&l, &AttributeMapping::default()),
            Err(MappingError::BadSubject(
                "admin@corp.com".into(),
                Refusal::EdgeWhitespace('\t')
            ))
        );
        // Keyed on the object id, the padded NameID is still the userName.
        let by_oid = AttributeMapping {
            subject: Some("oid".into()),
            ..Default::default()
        };
        assert!(matches!(
            map(&l, &by_oid),
            Err(MappingError::BadUserName(_, Refusal::EdgeWhitespace('\t')))
        ));
        l.padded.name_id = None;
        l.padded.attributes.insert("oid".into(), ' ');
        assert!(matches!(
            map(&l, &by_oid),
            Err(MappingError::BadSubject(_, Refusal::EdgeWhitespace(' ')))
        ));
    }

    #[test]
    fn values_are_kept_as_the_idp_signed_them() {
        let m = map(
            &login("adm\u{131}n@corp.com", &[("firstName", &[" Al "])]),
            &AttributeMapping::default(),
        )
        .unwrap();
        assert_eq!(m.subject, "adm\u{131}n@corp.com");
        assert_eq!(m.given_name.as_deref(), Some(" Al "));
    }

    #[test]
    fn field_selector_values_are_escaped() {
        assert_eq!(field_value(r"a,b=c\d"), r"a\,b\=c\\d");
    }
}
