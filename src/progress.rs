//! Progress as events. The library never prints: it tells a [`Telemetry`]
//! what happens, and the caller decides what to do with it (the CLI draws
//! progress bars or plain lines or JSON lines; the agent forwards the
//! events to the managing machine; tests collect them).

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// One thing that happened during an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An operation on `total` machines begins (one boot-order group, or
    /// all hosts of a place).
    Begin { op: String, total: usize },
    /// One machine is done, well or not.
    Done { op: String, outcome: crate::machine::Outcome },
    /// A hook script ran.
    Hook { name: String, ok: bool },
    /// Something people should know that is not one machine's outcome
    /// (KVM does not work here; a bridge could not be made; a template
    /// was sent).
    Note { place: Option<String>, message: String },
    /// The operation on every machine has finished.
    End { op: String },
}

pub trait Telemetry: Sync {
    fn event(&self, e: &Event);
    fn note(&self, place: Option<&str>, message: &str) {
        self.event(&Event::Note { place: place.map(str::to_string), message: message.to_string() });
    }
}

/// Drops every event.
pub struct Quiet;

impl Telemetry for Quiet {
    fn event(&self, _: &Event) {}
}

/// Keeps every event, in order (for tests).
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl Telemetry for Collect {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e.clone());
    }
}

impl Collect {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Events of another place (a service host's agent) passed on with the
/// place named, so the manager's telemetry tells where they happened.
pub struct Tagged<'a> {
    pub place: String,
    pub inner: &'a dyn Telemetry,
}

impl Telemetry for Tagged<'_> {
    fn event(&self, e: &Event) {
        let e = match e.clone() {
            Event::Done { op, mut outcome } => {
                outcome.place.get_or_insert_with(|| self.place.clone());
                Event::Done { op, outcome }
            }
            Event::Note { place: None, message } => Event::Note { place: Some(self.place.clone()), message },
            other => other,
        };
        self.inner.event(&e)
    }
}
