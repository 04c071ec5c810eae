//! Audit trail: a Kubernetes Event on the User or Group for every change
//! the SCIM service or a JIT login makes, naming the SCIM request's id or
//! the SAML assertion's id, so `kubectl describe` says who changed what.
//! Published in the background: an Event failing must not fail the change
//! it describes.

use kube::Resource;

use crate::directory::events::{Note, Publisher};

/// Publishes audit Events for one writer.
#[derive(Clone)]
pub struct Audit {
    events: Publisher,
    writer: Writer,
}

/// Who made the change: prefixes the Event's reason and names the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    Scim,
    Jit,
}

/// What a SCIM request or a login did, for the Event's reason.
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
    fn reason(self, writer: Writer) -> String {
        let change = match self {
            Self::Created => "Created",
            Self::Adopted => "AdoptedFromJit",
            Self::Updated => "Updated",
            Self::Deactivated => "Deactivated",
            Self::Reactivated => "Reactivated",
            Self::Deleted => "Deleted",
            Self::MembersChanged => "MembersChanged",
        };
        let prefix = match writer {
            Writer::Scim => "Scim",
            Writer::Jit => "Jit",
        };
        format!("{prefix}{change}")
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
    /// The SCIM service's audit trail.
    pub fn new(client: kube::Client, instance: Option<String>) -> Self {
        Self::of(Writer::Scim, client, instance)
    }

    pub fn of(writer: Writer, client: kube::Client, instance: Option<String>) -> Self {
        let controller = match writer {
            Writer::Scim => crate::directory::writers::SCIM_MANAGER,
            Writer::Jit => crate::directory::writers::JIT_MANAGER,
        };
        Self {
            events: Publisher::new(client, controller, instance),
            writer,
        }
    }

    /// Records `change` on `object`, made by the SCIM request or the SAML
    /// assertion with id `request_id`; `note` must hold no secret.
    pub fn record<K>(&self, object: &K, change: Change, request_id: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let origin = match self.writer {
            Writer::Scim => "SCIM request",
            Writer::Jit => "SAML login, assertion",
        };
        let events = self.events.clone();
        let reason = change.reason(self.writer);
        let note = format!("{origin} {request_id}: {note}");
        tokio::spawn(async move {
            let note = Note {
                warning: false,
                reason: &reason,
                action: change.action(),
                note,
            };
            events.publish(reference, note).await;
        });
    }
}
