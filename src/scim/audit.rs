//! Audit trail: a Kubernetes Event on the User or Group for every SCIM
//! change, naming the request's id, so `kubectl describe` says who changed
//! what. Published in the background: an Event failing must not fail the
//! change it describes.
//!
//! Each change is its own Event, created directly: kube-runtime's `Recorder`
//! keeps every Event of the last 6 minutes and scans them all on each
//! publish, which at SCIM ingest rates cost more CPU and memory than the
//! request itself, for series aggregation that distinct changes never use.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, PostParams};

/// Publishes SCIM audit Events.
#[derive(Clone)]
pub struct Audit {
    client: kube::Client,
    /// This replica, as the Events' reporting instance.
    instance: String,
}

/// What a SCIM request did, for the Event's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    /// A user JIT created, taken over when the policy switched to Scim.
    Adopted,
    Updated,
    Deactivated,
    Reactivated,
    Deleted,
    MembersChanged,
}

impl Change {
    fn reason(self) -> &'static str {
        match self {
            Self::Created => "ScimCreated",
            Self::Adopted => "ScimAdoptedFromJit",
            Self::Updated => "ScimUpdated",
            Self::Deactivated => "ScimDeactivated",
            Self::Reactivated => "ScimReactivated",
            Self::Deleted => "ScimDeleted",
            Self::MembersChanged => "ScimMembersChanged",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Created => "Create",
            Self::Deleted => "Delete",
            _ => "Update",
        }
    }
}

impl Audit {
    pub fn new(client: kube::Client, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| crate::policy::SCIM_MANAGER.to_owned()),
        }
    }

    /// Records `change` on `object`; `note` must hold no secret.
    pub fn record<K>(&self, object: &K, change: Change, request_id: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let namespace = reference.namespace.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    reference.name.as_deref().unwrap_or("scim"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Normal".to_owned()),
            reason: Some(change.reason().to_owned()),
            action: Some(change.action().to_owned()),
            note: Some(format!("SCIM request {request_id}: {note}")),
            reporting_controller: Some(crate::policy::SCIM_MANAGER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(reference),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(error) = events.create(&PostParams::default(), &event).await {
                tracing::warn!(%error, "could not record a SCIM audit Event");
            }
        });
    }
}
