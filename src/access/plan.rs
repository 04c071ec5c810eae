//! What an AccessGrant's RoleBindings and ClusterRoleBindings should be,
//! decided purely from the grant, the policy's naming, the group's active
//! members, the cluster's namespaces and what the deployment may bind.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::core::{Selector, SelectorExt};
use sha2::Digest;

use crate::api::{AccessGrant, AccessGrantSpec, KubernetesNames};

/// Label on every RoleBinding Roster keeps for a grant: the grant's uid.
pub const GRANT_LABEL: &str = "roster.dev/access-grant-uid";
/// Annotation naming the grant (`namespace/name`), for people and the watch.
pub const GRANT_ANNOTATION: &str = "roster.dev/access-grant";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "roster";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What the deployment allows (the chart's `accessGrants` values).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The ClusterRoles grants may bind in namespaces; Roster also needs
    /// `bind` on each.
    pub bindable_cluster_roles: BTreeSet<String>,
    /// The ClusterRoles grants may bind cluster-wide (ClusterRoleBindings);
    /// empty: none, and Roster neither reads nor writes ClusterRoleBindings.
    pub cluster_wide_roles: BTreeSet<String>,
}

/// The bindings a grant should have, and the roles it may not bind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// By (namespace, name).
    pub bindings: BTreeMap<(String, String), RoleBinding>,
    /// By name.
    pub cluster_bindings: BTreeMap<String, ClusterRoleBinding>,
    /// Roles the grant names that this deployment may not bind (where the
    /// grant asks for them).
    pub refused_roles: Vec<String>,
}

/// A RoleBinding or a ClusterRoleBinding: what Roster compares of each.
pub trait Binding {
    fn parts(&self) -> (&ObjectMeta, &RoleRef, &[Subject]);
}

impl Binding for RoleBinding {
    fn parts(&self) -> (&ObjectMeta, &RoleRef, &[Subject]) {
        (
            &self.metadata,
            &self.role_ref,
            self.subjects.as_deref().unwrap_or_default(),
        )
    }
}

impl Binding for ClusterRoleBinding {
    fn parts(&self) -> (&ObjectMeta, &RoleRef, &[Subject]) {
        (
            &self.metadata,
            &self.role_ref,
            self.subjects.as_deref().unwrap_or_default(),
        )
    }
}

/// The namespaces a grant reaches: those it lists that exist, and those its
/// selector matches. `namespaces` holds every namespace's name and labels.
pub fn namespaces(
    spec: &AccessGrantSpec,
    namespaces: &[(String, BTreeMap<String, String>)],
) -> Result<BTreeSet<String>, String> {
    let selector: Option<Selector> = spec
        .namespace_selector
        .clone()
        .map(Selector::try_from)
        .transpose()
        .map_err(|e| format!("namespaceSelector: {e}"))?;
    Ok(namespaces
        .iter()
        .filter(|(name, labels)| {
            spec.namespaces.contains(name) || selector.as_ref().is_some_and(|s| s.matches(labels))
        })
        .map(|(name, _)| name.clone())
        .collect())
}

/// A RoleBinding name unique per grant and role, stable across restarts:
/// `roster-<grant>-<role>`, or a digest of the three when that is too long
/// or the role's name is not a plain DNS label.
pub fn binding_name(grant_namespace: &str, grant: &str, role: &str) -> String {
    let plain = format!("roster-{grant}-{role}");
    let dns = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if plain.len() <= 200 && dns(role) {
        // Two grants of one name in different namespaces reaching the same
        // namespace must not share a binding: the digest tells them apart.
        let digest = sha2::Sha256::digest(format!("{grant_namespace}/{grant}").as_bytes());
        format!("{plain}-{}", hex8(&digest))
    } else {
        let digest = sha2::Sha256::digest(format!("{grant_namespace}/{grant}/{role}").as_bytes());
        format!("roster-{}", hex8(&digest))
    }
}

fn hex8(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Plans the bindings of grant `grant_namespace/grant` (uid `uid`): one per
/// reached namespace and allowed role, and one per allowed cluster-wide
/// role, whose subjects are `members` (the userNames of the group's active
/// members) with the policy's prefix, and the group itself when the policy
/// names groups.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    grant_namespace: &str,
    grant: &str,
    uid: &str,
    spec: &AccessGrantSpec,
    names: &KubernetesNames,
    members: &BTreeSet<String>,
    reached: &BTreeSet<String>,
    allowed: &Options,
) -> Plan {
    let mut subjects: Vec<Subject> = members
        .iter()
        .map(|user_name| Subject {
            kind: "User".to_owned(),
            api_group: Some(RBAC_GROUP.to_owned()),
            name: format!("{}{user_name}", names.username_prefix),
            namespace: None,
        })
        .collect();
    if let Some(prefix) = &names.groups_prefix {
        subjects.push(Subject {
            kind: "Group".to_owned(),
            api_group: Some(RBAC_GROUP.to_owned()),
            name: format!("{prefix}{}", spec.group),
            namespace: None,
        });
    }
    // An empty list is written as none: the binding then grants nobody,
    // and stays so the next member appears at once.
    let subjects = (!subjects.is_empty()).then_some(subjects);
    let metadata = |name: &str, namespace: Option<&String>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.cloned(),
        labels: Some(BTreeMap::from([
            (GRANT_LABEL.to_owned(), uid.to_owned()),
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        ])),
        annotations: Some(BTreeMap::from([(
            GRANT_ANNOTATION.to_owned(),
            format!("{grant_namespace}/{grant}"),
        )])),
        // Owned where Kubernetes allows it (the grant's own namespace): the
        // garbage collector removes it even if Roster is gone. Elsewhere the
        // label and the grant's finalizer do.
        owner_references: (namespace.map(String::as_str) == Some(grant_namespace)).then(|| {
            vec![OwnerReference {
                api_version: AccessGrant::api_version(&()).into_owned(),
                kind: AccessGrant::kind(&()).into_owned(),
                name: grant.to_owned(),
                uid: uid.to_owned(),
                ..OwnerReference::default()
            }]
        }),
        ..ObjectMeta::default()
    };
    let role_ref = |role: &str| RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: "ClusterRole".to_owned(),
        name: role.to_owned(),
    };
    let mut refused_roles = Vec::new();
    let mut bindings = BTreeMap::new();
    for role in &spec.cluster_roles {
        if !allowed.bindable_cluster_roles.contains(role) {
            refused_roles.push(role.clone());
            continue;
        }
        let name = binding_name(grant_namespace, grant, role);
        for namespace in reached {
            let binding = RoleBinding {
                metadata: metadata(&name, Some(namespace)),
                role_ref: role_ref(role),
                subjects: subjects.clone(),
            };
            bindings.insert((namespace.clone(), name.clone()), binding);
        }
    }
    let mut cluster_bindings = BTreeMap::new();
    for role in &spec.cluster_wide_roles {
        if !allowed.cluster_wide_roles.contains(role) {
            refused_roles.push(format!("{role} (cluster-wide)"));
            continue;
        }
        let name = binding_name(grant_namespace, grant, role);
        let binding = ClusterRoleBinding {
            metadata: metadata(&name, None),
            role_ref: role_ref(role),
            subjects: subjects.clone(),
        };
        cluster_bindings.insert(name, binding);
    }
    Plan {
        bindings,
        cluster_bindings,
        refused_roles,
    }
}

/// Whether `existing` already says what `wanted` says (role, subjects and
/// the grant it belongs to).
pub fn same<B: Binding>(existing: &B, wanted: &B) -> bool {
    let (existing_meta, existing_role, existing_subjects) = existing.parts();
    let (wanted_meta, wanted_role, wanted_subjects) = wanted.parts();
    let grant = |meta: &ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(GRANT_LABEL))
            .cloned()
    };
    existing_role == wanted_role
        && existing_subjects == wanted_subjects
        && grant(existing_meta) == grant(wanted_meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn spec() -> AccessGrantSpec {
        AccessGrantSpec {
            policy: "crm".into(),
            group: "Engineering".into(),
            cluster_roles: vec!["edit".into(), "cluster-admin".into()],
            cluster_wide_roles: Vec::new(),
            namespaces: vec!["team-a".into(), "gone".into()],
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("team".into(), "eng".into())])),
                ..Default::default()
            }),
        }
    }

    fn cluster() -> Vec<(String, BTreeMap<String, String>)> {
        vec![
            ("team-a".into(), BTreeMap::new()),
            (
                "team-b".into(),
                BTreeMap::from([("team".into(), "eng".into())]),
            ),
            ("other".into(), BTreeMap::new()),
        ]
    }

    #[test]
    fn listed_namespaces_that_exist_and_selected_ones_are_reached() {
        let reached = namespaces(&spec(), &cluster()).unwrap();
        assert_eq!(
            reached,
            BTreeSet::from(["team-a".to_owned(), "team-b".to_owned()])
        );
    }

    #[test]
    fn members_become_prefixed_users_and_only_bindable_roles_are_bound() {
        let names = KubernetesNames {
            username_prefix: "oidc:".into(),
            groups_prefix: Some("oidc:".into()),
        };
        let members = BTreeSet::from(["ada@example.com".to_owned()]);
        let reached = namespaces(&spec(), &cluster()).unwrap();
        let bindable = Options {
            bindable_cluster_roles: BTreeSet::from(["edit".to_owned(), "view".to_owned()]),
            ..Default::default()
        };
        let plan_in = |reached: &BTreeSet<String>| {
            plan(
                "roster",
                "eng",
                "uid-1",
                &spec(),
                &names,
                &members,
                reached,
                &bindable,
            )
        };
        let plan = plan(
            "roster",
            "eng",
            "uid-1",
            &spec(),
            &names,
            &members,
            &reached,
            &bindable,
        );
        assert_eq!(plan.refused_roles, vec!["cluster-admin".to_owned()]);
        assert_eq!(plan.bindings.len(), 2, "edit in team-a and team-b");
        let binding = plan.bindings.values().next().unwrap();
        assert_eq!(binding.role_ref.name, "edit");
        let subjects: Vec<(&str, &str)> = binding
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            subjects,
            vec![
                ("User", "oidc:ada@example.com"),
                ("Group", "oidc:Engineering")
            ]
        );
        assert_eq!(
            binding.metadata.labels.as_ref().unwrap()[GRANT_LABEL],
            "uid-1"
        );
        // Owned only in the grant's own namespace.
        assert!(
            plan.bindings
                .values()
                .all(|b| b.metadata.owner_references.is_none())
        );
        let own = BTreeSet::from(["roster".to_owned()]);
        let local = plan_in(&own);
        let owner = &local
            .bindings
            .values()
            .next()
            .unwrap()
            .metadata
            .owner_references;
        assert_eq!(owner.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(owner.as_ref().unwrap()[0].kind, "AccessGrant");
    }

    #[test]
    fn no_members_leaves_a_binding_of_nobody() {
        let names = KubernetesNames {
            username_prefix: "oidc:".into(),
            groups_prefix: None,
        };
        let reached = BTreeSet::from(["team-a".to_owned()]);
        let bindable = Options {
            bindable_cluster_roles: BTreeSet::from(["edit".to_owned()]),
            ..Default::default()
        };
        let plan = plan(
            "roster",
            "eng",
            "u",
            &spec(),
            &names,
            &BTreeSet::new(),
            &reached,
            &bindable,
        );
        assert_eq!(plan.bindings.values().next().unwrap().subjects, None);
    }

    #[test]
    fn cluster_wide_roles_are_bound_only_where_the_deployment_allows_them() {
        let names = KubernetesNames {
            username_prefix: "oidc:".into(),
            groups_prefix: None,
        };
        let mut spec = spec();
        spec.cluster_roles.clear();
        spec.cluster_wide_roles = vec!["view".into(), "cluster-admin".into()];
        let members = BTreeSet::from(["ada@example.com".to_owned()]);
        let allowed = Options {
            bindable_cluster_roles: BTreeSet::from(["view".to_owned()]),
            cluster_wide_roles: BTreeSet::from(["view".to_owned()]),
        };
        let reached = BTreeSet::from(["team-a".to_owned()]);
        let planned = plan(
            "roster", "eng", "u", &spec, &names, &members, &reached, &allowed,
        );
        assert!(planned.bindings.is_empty());
        assert_eq!(planned.cluster_bindings.len(), 1);
        let binding = planned.cluster_bindings.values().next().unwrap();
        assert_eq!(binding.role_ref.name, "view");
        assert_eq!(binding.metadata.namespace, None);
        assert_eq!(
            binding.subjects.as_ref().unwrap()[0].name,
            "oidc:ada@example.com"
        );
        assert_eq!(
            planned.refused_roles,
            vec!["cluster-admin (cluster-wide)".to_owned()]
        );
        // Bindable in namespaces is not bindable cluster-wide.
        let namespaced_only = Options {
            bindable_cluster_roles: BTreeSet::from(["view".to_owned()]),
            ..Default::default()
        };
        let planned = plan(
            "roster",
            "eng",
            "u",
            &spec,
            &names,
            &members,
            &reached,
            &namespaced_only,
        );
        assert!(planned.cluster_bindings.is_empty());
        assert_eq!(planned.refused_roles.len(), 2);
    }

    #[test]
    fn binding_names_are_stable_and_tell_grants_of_other_namespaces_apart() {
        let a = binding_name("team-x", "eng", "edit");
        assert_eq!(a, binding_name("team-x", "eng", "edit"));
        assert!(a.starts_with("roster-eng-edit-"), "{a}");
        assert_ne!(a, binding_name("team-y", "eng", "edit"));
        let odd = binding_name("ns", "eng", "system:aggregate-to-edit");
        assert!(odd.starts_with("roster-") && !odd.contains(':'), "{odd}");
    }
}
