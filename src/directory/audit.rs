//! Audit trail: a Kubernetes Event on the User or Group for each change the
//! SCIM service or a JIT login makes, naming the SCIM request's id or the
//! SAML assertion's id, so `kubectl describe` says who changed what.
//! Published in the background: an Event failing must not fail the change
//! it describes.
//!
//! Bursts are aggregated, as client-go's EventAggregator does: per policy,
//! the first [`BURST`] changes of a [`WINDOW`] get an Event each; the rest
//! are counted and summed up in one Event per reason on the policy when the
//! window ends. An IdP's initial push of 10,000 users thus costs the API
//! server a few dozen Events, not 10,000 (a third of a SCIM POST's writes).
//! Every change is also logged at INFO with its request id: the log is the
//! complete trail, the Events what an operator reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;

use crate::api::{API_VERSION, ProvisioningPolicy};
use crate::directory::events::{Note, Publisher};

/// Per-object Events per policy within one [`WINDOW`].
pub const BURST: usize = 10;
/// The aggregation window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Object names a summary Event lists.
const NAMED: usize = 5;

/// Publishes audit Events for one writer.
#[derive(Clone)]
pub struct Audit {
    events: Publisher,
    writer: Writer,
    windows: Arc<Mutex<HashMap<PolicyKey, Window>>>,
}

type PolicyKey = (String, String);

/// One policy's current window: how many Events it published, and the
/// changes held for its summary, by reason.
struct Window {
    started: Instant,
    published: usize,
    held: BTreeMap<String, Held>,
}

#[derive(Default)]
struct Held {
    action: &'static str,
    count: usize,
    names: Vec<String>,
}

/// What [`Window::admit`] decided for one change.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Publish its own Event.
    Publish,
    /// Held for the summary; the first held change of a window schedules it.
    Held { schedule_summary: bool },
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            published: 0,
            held: BTreeMap::new(),
        }
    }

    fn admit(&mut self, now: Instant, reason: &str, action: &'static str, name: &str) -> Admission {
        if now.duration_since(self.started) >= WINDOW && self.held.is_empty() {
            *self = Self::new(now);
        }
        if self.published < BURST {
            self.published += 1;
            return Admission::Publish;
        }
        let schedule_summary = self.held.is_empty();
        let held = self.held.entry(reason.to_owned()).or_default();
        held.action = action;
        held.count += 1;
        if held.names.len() < NAMED {
            held.names.push(name.to_owned());
        }
        Admission::Held { schedule_summary }
    }
}

/// The summary of `count` held changes named (in part) by `names`.
fn summary_note(origin: &str, reason: &str, held: &Held) -> String {
    let more = if held.count > held.names.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "{} more {reason} changes by {origin} within {} s ({}{more}); each is in Roster's log with its request id",
        held.count,
        WINDOW.as_secs(),
        held.names.join(", ")
    )
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
    pub fn of(writer: Writer, client: kube::Client, instance: Option<String>) -> Self {
        let controller = match writer {
            Writer::Scim => crate::directory::writers::SCIM_MANAGER,
            Writer::Jit => crate::directory::writers::JIT_MANAGER,
        };
        Self {
            events: Publisher::new(client, controller, instance),
            writer,
            windows: Arc::default(),
        }
    }

    fn origin(&self) -> &'static str {
        match self.writer {
            Writer::Scim => "SCIM request",
            Writer::Jit => "SAML login, assertion",
        }
    }

    fn origins(&self) -> &'static str {
        match self.writer {
            Writer::Scim => "SCIM requests",
            Writer::Jit => "SAML logins",
        }
    }

    /// Records `change` on `object` of `policy`, made by the SCIM request or
    /// the SAML assertion with id `request_id`; `note` must hold no secret.
    pub fn record<K>(
        &self,
        object: &K,
        policy: &str,
        change: Change,
        request_id: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let namespace = reference.namespace.clone().unwrap_or_default();
        let reason = change.reason(self.writer);
        let name = reference.name.clone().unwrap_or_default();
        let key = (namespace, policy.to_owned());
        let admission = {
            let mut windows = self.windows.lock().expect("audit lock");
            let now = Instant::now();
            // Forget idle policies now and then, so the map stays small.
            if windows.len() > 1_000 {
                windows.retain(|_, w| !w.held.is_empty() || now.duration_since(w.started) < WINDOW);
            }
            windows
                .entry(key.clone())
                .or_insert_with(|| Window::new(now))
                .admit(now, &reason, change.action(), &name)
        };
        match admission {
            Admission::Publish => {
                let events = self.events.clone();
                let note = format!("{} {request_id}: {note}", self.origin());
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
            Admission::Held { schedule_summary } => {
                if schedule_summary {
                    tokio::spawn(self.clone().summarize(key));
                }
            }
        }
    }

    /// At the end of `key`'s window, publishes one Event per held reason
    /// on the policy, and starts a new window.
    async fn summarize(self, key: PolicyKey) {
        let wait = {
            let windows = self.windows.lock().expect("audit lock");
            windows
                .get(&key)
                .map(|w| WINDOW.saturating_sub(w.started.elapsed()))
                .unwrap_or_default()
        };
        tokio::time::sleep(wait).await;
        let held = {
            let mut windows = self.windows.lock().expect("audit lock");
            let Some(window) = windows.get_mut(&key) else {
                return;
            };
            let held = std::mem::take(&mut window.held);
            *window = Window::new(Instant::now());
            held
        };
        let (namespace, policy) = key;
        for (reason, held) in held {
            let regarding = ObjectReference {
                api_version: Some(API_VERSION.to_owned()),
                kind: Some(ProvisioningPolicy::kind(&()).into_owned()),
                namespace: Some(namespace.clone()),
                name: Some(policy.clone()),
                ..Default::default()
            };
            let note = Note {
                warning: false,
                reason: &reason,
                action: held.action,
                note: summary_note(self.origins(), &reason, &held),
            };
            self.events.publish(regarding, note).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_limit_is_held_for_one_summary_per_window() {
        let start = Instant::now();
        let mut window = Window::new(start);
        for i in 0..BURST {
            assert_eq!(
                window.admit(start, "ScimCreated", "Create", &format!("u-{i}")),
                Admission::Publish
            );
        }
        assert_eq!(
            window.admit(start, "ScimCreated", "Create", "u-a"),
            Admission::Held {
                schedule_summary: true
            }
        );
        for i in 0..20 {
            assert_eq!(
                window.admit(start, "ScimCreated", "Create", &format!("u-b{i}")),
                Admission::Held {
                    schedule_summary: false
                }
            );
        }
        let held = &window.held["ScimCreated"];
        assert_eq!(held.count, 21);
        assert_eq!(held.names.len(), NAMED);
        let note = summary_note("SCIM requests", "ScimCreated", held);
        assert!(note.starts_with("21 more ScimCreated changes"), "{note}");
        assert!(note.contains("u-a, u-b0"), "{note}");
    }

    #[test]
    fn a_new_window_publishes_again_once_the_summary_is_out() {
        let start = Instant::now();
        let mut window = Window::new(start);
        for i in 0..BURST {
            window.admit(start, "ScimUpdated", "Update", &format!("u-{i}"));
        }
        let later = start + WINDOW;
        // Held changes not yet summarised keep the window.
        window.admit(start, "ScimUpdated", "Update", "u-x");
        assert!(matches!(
            window.admit(later, "ScimUpdated", "Update", "u-y"),
            Admission::Held { .. }
        ));
        // Summarised (held taken): the next change opens a new window.
        window.held.clear();
        assert_eq!(
            window.admit(later, "ScimUpdated", "Update", "u-z"),
            Admission::Publish
        );
    }
}
