{{/*
The rules for Roster's namespaced resources: in the ClusterRole (rbac.scope=cluster) or in a Role
per watched namespace (rbac.scope=namespaced). Each rule grants exactly the verbs the code uses,
and says where. Nothing here is wildcarded, and no rule lets Roster list or watch Secrets.
*/}}
{{- define "roster.rbac.namespacedRules" -}}
# ProvisioningPolicies are written by people and GitOps; Roster only reads them. list/watch: the
# policy cache every replica keeps for SCIM and SAML (scim/policies.rs) and the controllers' cache
# (controller/mod.rs); get: a policy too new for the cache (PolicyCache::get).
- apiGroups: ["roster.dev"]
  resources: ["provisioningpolicies"]
  verbs: ["get", "list", "watch"]
# Users and Groups are what SCIM requests and SAML logins write (scim/store.rs, saml/jit.rs,
# saml/groups.rs): read by id (get) and by policy (list), written with server-side apply (patch;
# an apply that creates the object also needs create), removed by SCIM DELETE (delete). The
# controllers watch them and set their finalizer with an apply (controller/context.rs). No update:
# nothing replaces a whole object.
- apiGroups: ["roster.dev"]
  resources: ["users", "groups"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# GroupMemberSlices hold group membership, so no object outgrows etcd's limit (scim/store.rs): a
# group's slices are listed by label, created, merge-patched and deleted with their group
# (deletecollection); the membership index (scim/membership.rs) and the controllers watch them.
# Never read one by name.
- apiGroups: ["roster.dev"]
  resources: ["groupmemberslices"]
  verbs: ["list", "watch", "create", "patch", "deletecollection"]
# UserNameClaims keep userNames unique per policy (directory/claims.rs): created before their
# User, read by name when the name is taken, deleted when stale or released, and patched when a
# retried creation takes over a User its first request wrote too late. Never listed.
- apiGroups: ["roster.dev"]
  resources: ["usernameclaims"]
  verbs: ["get", "create", "patch", "delete"]
# ConsumedAssertions record every SAML assertion and request id a login consumes, so a replay is
# refused on every replica (create; a conflict is a replay); expired ones are listed and deleted
# (saml/replay.rs, controller/mod.rs).
- apiGroups: ["roster.dev"]
  resources: ["consumedassertions"]
  verbs: ["list", "create", "delete"]
# Status, written with server-side apply and only there: the controllers' conditions, remote ids
# and synced members (controller/context.rs apply_status), a SAML login's lastLogin (saml/jit.rs).
- apiGroups: ["roster.dev"]
  resources: ["provisioningpolicies/status", "users/status", "groups/status", "groupmemberslices/status"]
  verbs: ["patch"]
# SCIM bearer tokens and connector credentials: the Secrets policies name, read by name only
# (scim/store.rs, controller/context.rs, controller/policy.rs). Never listed, watched or written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# IdP metadata kept in a ConfigMap (spec.saml.idpMetadataConfigMapRef), read by name when a login
# or the policy's SamlTrust condition needs it (saml/idp_metadata.rs). Never listed or written.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
{{- if .Values.accessGrants.enabled }}
# AccessGrants are written by people and GitOps; the leader's grant controller reads them, sets and
# removes its finalizer (patch) and writes their status (access/mod.rs).
- apiGroups: ["roster.dev"]
  resources: ["accessgrants"]
  verbs: ["get", "list", "watch", "patch"]
# Their status: the bindings kept and the Ready/Synced conditions, merge-patched (access/mod.rs).
- apiGroups: ["roster.dev"]
  resources: ["accessgrants/status"]
  verbs: ["patch"]
{{- end }}
# Events (events.k8s.io/v1) on the objects Roster changes and on failures: each is created once,
# never patched into a series (events.rs).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
The one cluster-scoped read: Roster waits until its own CRDs are established before it starts
(cluster.rs), reading those six by name. The chart, not Roster, installs them.
*/}}
{{- define "roster.rbac.crdRule" -}}
# Roster waits until its CRDs are established (cluster.rs): it reads exactly these, by name.
# Read-only: the chart, not Roster, installs them. Discovery needs no grant.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames:
    - provisioningpolicies.roster.dev
    - users.roster.dev
    - groups.roster.dev
    - groupmemberslices.roster.dev
    - usernameclaims.roster.dev
    - consumedassertions.roster.dev
    - accessgrants.roster.dev
  verbs: ["get"]
{{- end }}

{{/*
AccessGrants (accessGrants.enabled): RoleBindings in any namespace a grant reaches,
ClusterRoleBindings only with accessGrants.clusterWideRoles, and `bind` on exactly the ClusterRoles
the chart allows, so Roster can grant those and nothing more.
*/}}
{{- define "roster.rbac.accessRules" -}}
# Namespaces are matched by a grant's list or label selector, including those created later
# (access/mod.rs watches them). Read-only.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
# The RoleBindings Roster keeps (labelled app.kubernetes.io/managed-by=roster): watched, written
# with server-side apply (patch; create for a new one) and deleted when a grant stops reaching a
# namespace. Never update: a binding another manager wrote is refused, not taken over.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["list", "watch", "create", "patch", "delete"]
{{- with .Values.accessGrants.clusterWideRoles }}
# ClusterRoleBindings, only when some role may be bound cluster-wide: the same verbs, for the
# bindings Roster keeps (labelled as above).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterrolebindings"]
  verbs: ["list", "watch", "create", "patch", "delete"]
{{- end }}
{{- with concat .Values.accessGrants.bindableClusterRoles (.Values.accessGrants.clusterWideRoles | default list) | uniq }}
# The API server lets a binding name a ClusterRole only if its writer may `bind` it. Never
# rendered without names: an empty resourceNames would mean every ClusterRole.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/* The Lease leader election uses: one per release. */}}
{{- define "roster.leaseName" -}}
{{- include "roster.fullname" . }}
{{- end }}

{{/* Whether the namespaced mode is on; it needs the namespaces to watch. */}}
{{- define "roster.rbac.namespaced" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.watchNamespaces }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the namespaces that get a Role" }}
{{- end }}
{{- "true" }}
{{- end }}
{{- end }}
