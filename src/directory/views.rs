//! Projections: what the watch-fed caches keep of an object, so 100,000
//! Users cost little memory. Each holds the fields decisions read; a
//! reconcile that must act reads the whole object from the API.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

use crate::api::{
    API_VERSION, Account, GROUP, Group, MultiValuedAttribute, SESSIONS_NOT_BEFORE_ANNOTATION,
    Source, User, VERSION,
};
use crate::directory::writers::SOURCE_LABEL;

/// A User as the controllers' cache keeps it (100,000 of them): the
/// metadata decisions and the watch read (name, namespace, resourceVersion,
/// generation, timestamps, finalizers; no uid, which the cache's key would
/// copy again, labels or annotations), the source label as a value, the policy
/// and `active` of its spec, and its status with the conditions reduced to
/// digests.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "RawUserView")]
pub struct UserView {
    /// Without finalizers: `holds_finalizer` says whether Roster's is there
    /// (a list of one string would cost about 90 bytes per User).
    pub metadata: ObjectMeta,
    pub holds_finalizer: bool,
    pub source: Source,
    pub spec: UserViewSpec,
    pub status: Option<UserViewStatus>,
}

#[derive(Deserialize)]
struct RawUserView {
    metadata: TrimmedMetadata,
    spec: UserViewSpec,
    #[serde(default)]
    status: Option<UserViewStatus>,
}

impl From<RawUserView> for UserView {
    fn from(raw: RawUserView) -> Self {
        let m = raw.metadata;
        let source = source_of_labels(m.labels.as_ref());
        let holds_finalizer = m
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == crate::api::DEPROVISION_FINALIZER);
        Self {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                // The watch resumes from the last object's resourceVersion.
                resource_version: m.resource_version,
                generation: m.generation,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                ..ObjectMeta::default()
            },
            holds_finalizer,
            source,
            spec: raw.spec,
            status: raw.status,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserViewSpec {
    #[serde(deserialize_with = "crate::directory::intern::interned")]
    pub policy: Arc<str>,
    #[serde(default)]
    pub active: Option<bool>,
}

impl UserViewSpec {
    /// As [`crate::api::UserSpec::is_active`]: unset means active.
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserViewStatus {
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub last_login: Option<Time>,
    #[serde(default)]
    pub account: Option<Account>,
    #[serde(default, deserialize_with = "condition_digests")]
    pub conditions: Box<[ConditionDigest]>,
}

/// A digest of a condition's type and of what a status write would set
/// (status, reason, message, observed generation): enough to tell whether a
/// write would change it, in 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionDigest(pub u64);

/// The digest of a condition's written fields; the same function digests
/// what the controller decides, so equal digests mean an unchanged condition.
pub fn condition_digest(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
) -> ConditionDigest {
    let mut hasher = DefaultHasher::new();
    (type_, status, reason, message, observed_generation).hash(&mut hasher);
    ConditionDigest(hasher.finish())
}

fn condition_digests<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Box<[ConditionDigest]>, D::Error> {
    let conditions = Option::<Vec<Condition>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(conditions.iter().map(ConditionDigest::of).collect())
}

impl ConditionDigest {
    /// The digest of a written condition.
    pub fn of(condition: &Condition) -> Self {
        condition_digest(
            &condition.type_,
            &condition.status,
            &condition.reason,
            &condition.message,
            condition.observed_generation,
        )
    }
}

/// The metadata fields decisions read; the rest (managed fields above all,
/// the bulk of a watch event) is skipped while parsing, never allocated.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
}

fn trimmed_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = TrimmedMetadata::deserialize(deserializer)?;
    let labels = m.labels.map(|mut labels| {
        labels.retain(|key, _| key == SOURCE_LABEL);
        labels
    });
    // Only the one annotation the gate reads, and only where it is set.
    let annotations = m.annotations.and_then(|mut annotations| {
        annotations.retain(|key, _| key == SESSIONS_NOT_BEFORE_ANNOTATION);
        (!annotations.is_empty()).then_some(annotations)
    });
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels,
        annotations,
        finalizers: m.finalizers,
        ..ObjectMeta::default()
    })
}

impl UserView {
    /// Who wrote the User, from its source label.
    pub fn source(&self) -> Source {
        self.source
    }
}

/// Who wrote a User or Group, from its source label.
pub fn source_of(metadata: &ObjectMeta) -> Source {
    source_of_labels(metadata.labels.as_ref())
}

fn source_of_labels(labels: Option<&BTreeMap<String, String>>) -> Source {
    match labels
        .and_then(|labels| labels.get(SOURCE_LABEL))
        .map(String::as_str)
    {
        Some("scim") => Source::Scim,
        Some("jit") => Source::Jit,
        _ => Source::Manual,
    }
}

/// A User as the SSO gate and the membership index read it: who the person
/// is, whether they may sign in, and since when their sessions count.
#[derive(Clone, Debug, Deserialize)]
pub struct PersonView {
    #[serde(deserialize_with = "trimmed_metadata")]
    pub metadata: ObjectMeta,
    pub spec: PersonViewSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonViewSpec {
    pub policy: String,
    pub user_name: String,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub emails: Vec<MultiValuedAttribute>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// What a process keeps of each User for the gate: a few short strings
/// (boxed: 8 bytes less each than a `String`; the policy name shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub policy: Arc<str>,
    pub uid: Box<str>,
    pub user_name: Box<str>,
    pub display_name: Option<Box<str>>,
    /// The primary email address, or the first.
    pub email: Option<Box<str>>,
    pub active: bool,
    /// Sessions issued before this second (Unix time) are ended.
    pub sessions_not_before: Option<i64>,
    /// The SAML subject a login finds the User by.
    pub subject: Option<Box<str>>,
}

impl Person {
    fn new(
        metadata: &ObjectMeta,
        policy: &str,
        user_name: &str,
        active: Option<bool>,
        display_name: Option<&String>,
        emails: &[MultiValuedAttribute],
        subject: Option<&str>,
    ) -> Self {
        let email = emails
            .iter()
            .find(|e| e.primary == Some(true))
            .or_else(|| emails.first())
            .map(|e| Box::from(e.value.as_str()));
        Self {
            policy: crate::directory::intern::intern(policy),
            uid: Box::from(metadata.uid.as_deref().unwrap_or_default()),
            user_name: Box::from(user_name),
            display_name: display_name.map(|d| Box::from(d.as_str())),
            email,
            active: active != Some(false),
            sessions_not_before: sessions_not_before(metadata),
            subject: subject.map(Box::from),
        }
    }

    pub fn of_view(view: &PersonView) -> Self {
        let spec = &view.spec;
        Self::new(
            &view.metadata,
            &spec.policy,
            &spec.user_name,
            spec.active,
            spec.display_name.as_ref(),
            &spec.emails,
            spec.subject.as_deref(),
        )
    }

    pub fn of_user(user: &User) -> Self {
        let spec = &user.spec;
        Self::new(
            &user.metadata,
            &spec.policy,
            &spec.user_name,
            spec.active,
            spec.display_name.as_ref(),
            &spec.emails,
            spec.subject.as_deref(),
        )
    }
}

/// The User's `roster.dev/sessions-not-before` as Unix seconds. An
/// annotation that does not parse ends every session: whoever set it meant
/// to end some, and failing closed is the safe reading.
fn sessions_not_before(metadata: &ObjectMeta) -> Option<i64> {
    let value = metadata
        .annotations
        .as_ref()?
        .get(SESSIONS_NOT_BEFORE_ANNOTATION)?;
    Some(
        value
            .trim()
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map_or(i64::MAX, |t| t.as_second()),
    )
}

/// A User as the one watch of Users delivers it: what the controllers'
/// [`UserView`] and the index's [`PersonView`] read, parsed once and split
/// ([`UserWatch::split`]) before either is kept.
#[derive(Clone, Debug, Deserialize)]
pub struct UserWatch {
    #[serde(deserialize_with = "trimmed_metadata")]
    pub metadata: ObjectMeta,
    spec: UserWatchSpec,
    #[serde(default)]
    status: Option<UserViewStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserWatchSpec {
    policy: String,
    user_name: String,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    emails: Vec<MultiValuedAttribute>,
    #[serde(default)]
    subject: Option<String>,
}

impl UserWatch {
    /// The index's view and the controllers' view of the User.
    pub fn split(mut self) -> (PersonView, UserView) {
        let m = &self.metadata;
        let view = UserView {
            metadata: ObjectMeta {
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                resource_version: m.resource_version.clone(),
                generation: m.generation,
                creation_timestamp: m.creation_timestamp.clone(),
                deletion_timestamp: m.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            holds_finalizer: m
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == crate::api::DEPROVISION_FINALIZER),
            source: source_of_labels(m.labels.as_ref()),
            spec: UserViewSpec {
                policy: crate::directory::intern::intern(&self.spec.policy),
                active: self.spec.active,
            },
            status: self.status.take(),
        };
        (self.into_person(), view)
    }

    /// The index's view alone (a process that keeps no objects).
    pub fn into_person(self) -> PersonView {
        PersonView {
            metadata: self.metadata,
            spec: PersonViewSpec {
                policy: self.spec.policy,
                user_name: self.spec.user_name,
                active: self.spec.active,
                display_name: self.spec.display_name,
                emails: self.spec.emails,
                subject: self.spec.subject,
            },
        }
    }
}

/// A GroupMemberSlice as its watch delivers it, parsed without the
/// metadata nobody reads: managed fields above all, where a slice written
/// by server-side apply lists each of its members once more.
#[derive(Clone, Debug, Deserialize)]
pub struct SliceWatch {
    #[serde(deserialize_with = "trimmed_metadata")]
    pub metadata: ObjectMeta,
    spec: crate::api::GroupMemberSliceSpec,
    #[serde(default)]
    status: Option<crate::api::GroupMemberSliceStatus>,
}

impl SliceWatch {
    /// The slice, without labels (nothing reads them: its group is in its
    /// spec) or annotations.
    pub fn into_slice(self) -> crate::api::GroupMemberSlice {
        let mut metadata = self.metadata;
        metadata.labels = None;
        metadata.annotations = None;
        crate::api::GroupMemberSlice {
            metadata,
            spec: self.spec,
            status: self.status,
        }
    }
}

/// A Group as the membership index reads it: its policy, display name and
/// the members its spec declares (a Group kept in git).
#[derive(Clone, Debug, Deserialize)]
pub struct GroupNameView {
    #[serde(deserialize_with = "trimmed_metadata")]
    pub metadata: ObjectMeta,
    pub spec: GroupNameViewSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupNameViewSpec {
    pub policy: String,
    pub display_name: String,
    #[serde(default)]
    pub members: Vec<crate::api::GroupMember>,
}

impl GroupNameView {
    /// What the index reads of `group`.
    pub fn of_group(group: &Group) -> Self {
        let m = &group.metadata;
        Self {
            metadata: ObjectMeta {
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                resource_version: m.resource_version.clone(),
                generation: m.generation,
                ..ObjectMeta::default()
            },
            spec: GroupNameViewSpec {
                policy: group.spec.policy.clone(),
                display_name: group.spec.display_name.clone(),
                members: group.spec.members.clone(),
            },
        }
    }
}

/// A projection watched as the kind `$kind` it projects.
macro_rules! projection_of {
    ($view:ty, $kind:ty) => {
        impl kube::Resource for $view {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                VERSION.into()
            }
            fn api_version(_: &()) -> Cow<'_, str> {
                API_VERSION.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$kind as kube::Resource>::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

projection_of!(UserView, User);
projection_of!(PersonView, User);
projection_of!(UserWatch, User);
projection_of!(SliceWatch, crate::api::GroupMemberSlice);
projection_of!(GroupNameView, Group);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_user() -> serde_json::Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "User",
            "metadata": {
                "name": "u-1", "namespace": "ns", "generation": 3, "uid": "abc", "resourceVersion": "7",
                "labels": {SOURCE_LABEL: "jit", "team": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["roster.dev/deprovision"],
                "managedFields": [{"manager": "roster-scim", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "policy": "wiki", "userName": "pat@example.com", "active": false,
                "displayName": "Pat", "emails": [{"value": "pat@example.com"}],
            },
            "status": {
                "source": "Jit",
                "account": {"remoteId": "r-1", "state": "Disabled", "syncedGeneration": 3},
                "conditions": [{
                    "type": "Synced", "status": "True", "reason": "Synced",
                    "message": "the account matches the spec", "observedGeneration": 3,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }],
            },
        })
    }

    #[test]
    fn a_view_keeps_what_decisions_read_and_digests_conditions() {
        let view: UserView = serde_json::from_value(full_user()).unwrap();
        assert_eq!(&*view.spec.policy, "wiki");
        assert!(!view.spec.is_active());
        assert_eq!(view.source(), Source::Jit);
        assert!(view.metadata.annotations.is_none());
        assert!(view.metadata.managed_fields.is_none());
        assert_eq!(view.metadata.generation, Some(3));
        assert!(view.holds_finalizer);
        assert!(view.metadata.finalizers.is_none());
        // The cache's key would copy the uid: the view has none.
        assert!(view.metadata.labels.is_none());
        assert!(view.metadata.uid.is_none());
        assert!(view.metadata.resource_version.is_some());
        let status = view.status.unwrap();
        assert_eq!(status.account.unwrap().remote_id.as_deref(), Some("r-1"));
        let synced = |generation| {
            condition_digest(
                "Synced",
                "True",
                "Synced",
                "the account matches the spec",
                Some(generation),
            )
        };
        assert_eq!(&*status.conditions, &[synced(3)]);
        assert_ne!(status.conditions[0], synced(4));
        assert_ne!(
            status.conditions[0],
            condition_digest(
                "Ready",
                "True",
                "Synced",
                "the account matches the spec",
                Some(3)
            )
        );
    }

    #[test]
    fn a_person_keeps_identity_and_the_sessions_not_before_annotation_only() {
        let mut user = full_user();
        user["metadata"]["annotations"][SESSIONS_NOT_BEFORE_ANNOTATION] =
            json!("2026-12-01T10:00:00Z");
        user["spec"]["emails"] = json!([
            {"value": "home@example.com"},
            {"value": "work@example.com", "primary": true},
        ]);
        let view: PersonView = serde_json::from_value(user).unwrap();
        assert_eq!(view.metadata.annotations.as_ref().unwrap().len(), 1);
        let person = Person::of_view(&view);
        assert_eq!(
            person,
            Person {
                policy: "wiki".into(),
                uid: "abc".into(),
                user_name: "pat@example.com".into(),
                display_name: Some("Pat".into()),
                email: Some("work@example.com".into()),
                active: false,
                sessions_not_before: Some(1_796_119_200),
                subject: None,
            }
        );
        let mut garbled = full_user();
        garbled["metadata"]["annotations"][SESSIONS_NOT_BEFORE_ANNOTATION] = json!("yesterday");
        let view: PersonView = serde_json::from_value(garbled).unwrap();
        assert_eq!(Person::of_view(&view).sessions_not_before, Some(i64::MAX));
        let view: PersonView = serde_json::from_value(full_user()).unwrap();
        assert_eq!(Person::of_view(&view).sessions_not_before, None);
    }

    #[test]
    fn one_parsed_user_gives_the_controllers_view_and_the_index_view() {
        let mut user = full_user();
        user["metadata"]["annotations"][SESSIONS_NOT_BEFORE_ANNOTATION] =
            json!("2026-12-01T10:00:00Z");
        let watched: UserWatch = serde_json::from_value(user.clone()).unwrap();
        let (person, view) = watched.split();
        let (expected_person, expected_view): (PersonView, UserView) = (
            serde_json::from_value(user.clone()).unwrap(),
            serde_json::from_value(user).unwrap(),
        );
        assert_eq!(Person::of_view(&person), Person::of_view(&expected_person));
        assert_eq!(view.metadata, expected_view.metadata);
        assert_eq!(
            (view.holds_finalizer, view.source, &*view.spec.policy),
            (true, Source::Jit, "wiki")
        );
        assert_eq!(
            view.status.unwrap().conditions,
            expected_view.status.unwrap().conditions
        );
    }

    #[test]
    fn a_watched_slice_keeps_its_members_and_status_not_its_managed_fields() {
        let watched: SliceWatch = serde_json::from_value(json!({
            "metadata": {
                "name": "g-0", "namespace": "ns", "resourceVersion": "9",
                "labels": {"roster.dev/group": "g"},
                "managedFields": [{"manager": "roster-scim", "operation": "Update",
                    "fieldsV1": {"f:spec": {"f:members": {"f:u-1": {}}}}}],
            },
            "spec": {"group": "g", "members": {"u-1": {}}},
            "status": {"syncedMembers": {"u-1": "r-1"}},
        }))
        .unwrap();
        let slice = watched.into_slice();
        assert!(slice.metadata.managed_fields.is_none());
        assert!(slice.metadata.labels.is_none());
        assert_eq!(slice.metadata.resource_version.as_deref(), Some("9"));
        assert_eq!(slice.spec.members.keys().collect::<Vec<_>>(), ["u-1"]);
        assert_eq!(slice.status.unwrap().synced_members["u-1"], "r-1");
    }

    #[test]
    fn a_user_without_status_or_active_is_active_and_unsynced() {
        let view: UserView = serde_json::from_value(json!({
            "metadata": {"name": "u"},
            "spec": {"policy": "p", "userName": "u@example.com"},
        }))
        .unwrap();
        assert!(view.spec.is_active());
        assert!(view.status.is_none());
        assert_eq!(view.source(), Source::Manual);
    }
}
