//! Kubernetes Events (events.k8s.io/v1), created directly.
//!
//! kube-runtime's `Recorder` keeps every Event of the last 6 minutes and
//! scans them all on each publish, to aggregate repeats into series. At
//! ingest and sync rates (thousands of distinct changes a minute) that scan
//! and that cache cost more than the work the Events describe. Distinct
//! changes never repeat, so each is its own Event; only repeated Warnings
//! (a failing object retried with backoff) are held back, per object and
//! reason, for [`REPEAT_WARNING_AFTER`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// A repeated Warning about one object, for one reason, is published again
/// only after this long.
pub const REPEAT_WARNING_AFTER: Duration = Duration::from_secs(600);

/// Publishes the Events of one component (`reportingController`) and replica.
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
    /// (object uid or name, reason) -> when its last Warning went out.
    warned: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

/// One Event to publish.
pub struct Note<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl Publisher {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            warned: Arc::default(),
        }
    }

    /// Publishes `note` about `regarding`; a failure is logged, never
    /// returned (an Event must not fail what it describes).
    pub async fn publish(&self, regarding: ObjectReference, note: Note<'_>) {
        if note.warning && self.recently_warned(&regarding, note.reason) {
            return;
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // Unique per object and instant, like client-go's recorder.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("roster"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(note.reason.to_owned()),
            action: Some(note.action.to_owned()),
            note: Some(truncate(note.note)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, reason = note.reason, "could not publish an Event");
        }
    }

    fn recently_warned(&self, regarding: &ObjectReference, reason: &str) -> bool {
        let object = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let mut warned = self.warned.lock().expect("warned lock");
        let now = Instant::now();
        // Forget old entries now and then, so the map stays small.
        if warned.len() > 10_000 {
            warned.retain(|_, at| now.duration_since(*at) < REPEAT_WARNING_AFTER);
        }
        match warned.get(&(object.clone(), reason.to_owned())) {
            Some(at) if now.duration_since(*at) < REPEAT_WARNING_AFTER => true,
            _ => {
                warned.insert((object, reason.to_owned()), now);
                false
            }
        }
    }
}

/// The API server refuses notes over 1 KiB.
fn truncate(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_the_api_servers_limit_on_a_char_boundary() {
        let long = "é".repeat(700);
        let cut = truncate(long);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate("short".into()), "short");
    }
}
