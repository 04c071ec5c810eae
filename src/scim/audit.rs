//! Audit trail: a Kubernetes Event on the User or Group for every SCIM
//! change, naming the request's id, so `kubectl describe` says who changed
//! what. Published in the background: an Event failing must not fail the
//! change it describes.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes SCIM audit Events.
#[derive(Clone)]
pub struct Audit {
    recorder: Recorder,
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
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: crate::policy::SCIM_MANAGER.to_owned(),
                    instance,
                },
            ),
        }
    }

    /// Records `change` on `object`; `note` must hold no secret.
    pub fn record<K>(&self, object: &K, change: Change, request_id: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let event = Event {
            type_: EventType::Normal,
            reason: change.reason().to_owned(),
            note: Some(format!("SCIM request {request_id}: {note}")),
            action: change.action().to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, "could not record a SCIM audit Event");
            }
        });
    }
}
