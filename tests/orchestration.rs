//! The orchestration on in-memory machines: boot order, hooks, the
//! journal, resuming, removing, stop modes and per-host outcomes, for
//! machines here and on a service host alike, without QEMU.

mod common;
use common::*;
use mln::machine::fake::Fake;
use mln::machine::{Backend, MachineError, Outcome, PowerState, Status, StopMode};
use mln::plan::Plan;
use mln::progress::{Collect, Event};
use mln::runtime::hooks::{HookError, Hooks};
use mln::runtime::{BuildOptions, MoveMode, Places, Runtime, StartOptions};
use mln::state::{Phase, State};
use std::path::Path;
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<String>>>;

/// This machine and one service host, `s1`: fakes, or for `s1` anything
/// that serves as one.
struct TwoPlaces<S: Backend = Fake> {
    here: Fake,
    s1: S,
}

impl<S: Backend + Receives> Places for TwoPlaces<S> {
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError> {
        match place {
            None => Ok(&self.here),
            Some("s1") => Ok(&self.s1),
            Some(other) => Err(MachineError::Refused(format!("no place {other}"))),
        }
    }
    fn local_uri(&self) -> String {
        "fake://".into()
    }
    fn carry(&self, _: Option<&str>, to: Option<&str>, project: &str, host: &str, _: &[mln::machine::ParcelFile]) -> Result<(), MachineError> {
        match to {
            None => self.here.receive_files(project, host),
            Some("s1") => self.s1.receive(project, host),
            Some(other) => Err(MachineError::Refused(format!("no place {other}"))),
        }
    }
}

/// What takes a cold move's files at a test's service host.
trait Receives {
    fn receive(&self, project: &str, host: &str) -> Result<(), MachineError>;
}

impl Receives for Fake {
    fn receive(&self, project: &str, host: &str) -> Result<(), MachineError> {
        self.receive_files(project, host)
    }
}

/// Hooks that log where they ran and fail when told to.
struct LogHooks {
    log: Log,
    failing: Option<&'static str>,
}

impl Hooks for LogHooks {
    fn run(&self, plan: &Plan, hook: &str) -> Result<(), HookError> {
        if !plan.hooks.contains_key(hook) {
            return Ok(());
        }
        self.log.lock().unwrap().push(format!("hook {hook}"));
        if self.failing == Some(hook) {
            return Err(HookError::Failed { hook: hook.to_string(), status: "exit status: 1".into(), output: String::new() });
        }
        Ok(())
    }
}

const PROJECT: &str = "global {
    project lab
    beforeProjectStart { true }
    beforeHostsStart { true }
    afterHostsStart { true }
    afterProjectStart { true }
    beforeProjectStop { true }
    beforeHostsStop { true }
    afterHostsStop { true }
    afterProjectStop { true }
}
host router { template t\n boot_order 1 }
host a1 { template t\n boot_order 2 }
host a2 { template t\n boot_order 2\n service_host s1 }
host b1 { template t\n boot_order 3\n service_host s1 }
";

struct Rig {
    _dir: tempfile::TempDir,
    state: State,
    places: TwoPlaces,
    log: Log,
    plan: Plan,
}

fn rig() -> Rig {
    let c = compile_mem(&[("/p/lab.mln", PROJECT)]);
    assert!(c.ok(), "{}", rendered(&c));
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let log: Log = Arc::default();
    let places = TwoPlaces { here: Fake::new("here").logging_to(log.clone()), s1: Fake::new("s1").logging_to(log.clone()) };
    Rig { _dir: dir, state, places, log, plan: c.plan }
}

impl Rig {
    fn run<R>(&self, failing: Option<&'static str>, f: impl FnOnce(&Runtime) -> R) -> R {
        let hooks = LogHooks { log: self.log.clone(), failing };
        let t = Collect::default();
        f(&Runtime { state: &self.state, places: &self.places, hooks: &hooks, telemetry: &t })
    }
    fn build(&self) -> Vec<Outcome> {
        self.run(None, |rt| rt.build(&self.plan, Path::new("lab.mln"), BuildOptions::default()).unwrap())
    }
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
    fn state_of(&self, host: &str) -> PowerState {
        let h = self.plan.hosts.iter().find(|h| h.name == host).unwrap();
        match &h.service_host {
            None => self.places.here.machine("lab", host),
            Some(_) => self.places.s1.machine("lab", host),
        }
    }
}

fn pos(log: &[String], line: &str) -> usize {
    log.iter().position(|l| l == line).unwrap_or_else(|| panic!("no `{line}` in {log:#?}"))
}

#[test]
fn start_and_stop_go_by_boot_order_across_places_between_the_hooks() {
    let r = rig();
    assert!(r.build().iter().all(Outcome::ok));
    r.take_log();
    let out = r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    // Hooks in their places, machines in boot-order groups; a group's
    // hosts on both places before the next group.
    let order = ["hook beforeProjectStart", "hook beforeHostsStart", "here: start router", "hook afterHostsStart", "hook afterProjectStart"];
    for w in order.windows(2) {
        assert!(pos(&log, w[0]) < pos(&log, w[1]), "{w:?} in {log:#?}");
    }
    assert!(pos(&log, "here: start router") < pos(&log, "here: start a1"));
    assert!(pos(&log, "here: start router") < pos(&log, "s1: start a2"));
    assert!(pos(&log, "here: start a1").max(pos(&log, "s1: start a2")) < pos(&log, "s1: start b1"));
    assert!(pos(&log, "s1: start b1") < pos(&log, "hook afterHostsStart"));
    // The outcomes say where each host is.
    let b1 = out.iter().find(|o| o.host == "b1").unwrap();
    assert_eq!(b1.place.as_deref(), Some("s1"));
    assert_eq!(out.iter().find(|o| o.host == "a1").unwrap().place, None);

    let out = r.run(None, |rt| rt.stop("lab", &[], StopMode::Graceful { wait: None }).unwrap());
    assert!(out.iter().all(|o| o.status == Status::Ok), "{out:?}");
    let log = r.take_log();
    assert!(pos(&log, "hook beforeProjectStop") < pos(&log, "hook beforeHostsStop"));
    assert!(pos(&log, "hook beforeHostsStop") < pos(&log, "s1: stop b1"), "reverse boot order: b1 first");
    assert!(pos(&log, "s1: stop b1") < pos(&log, "here: stop a1"));
    assert!(pos(&log, "here: stop a1") < pos(&log, "here: stop router"));
    assert!(pos(&log, "here: stop router") < pos(&log, "hook afterHostsStop"));
    assert!(pos(&log, "hook afterHostsStop") < pos(&log, "hook afterProjectStop"));
    // Both are journaled.
    let ops: Vec<String> = r.state.journal_of("lab").unwrap().into_iter().map(|(op, _, _)| op).collect();
    assert_eq!(ops, ["build", "start", "stop"]);
}

#[test]
fn only_host_hooks_run_for_some_hosts_and_a_failing_before_hook_starts_nothing() {
    let r = rig();
    r.build();
    r.take_log();
    r.run(None, |rt| rt.start("lab", &StartOptions { hosts: vec!["a1".into()], pause: None }).unwrap());
    let log = r.take_log();
    assert_eq!(log, ["hook beforeHostsStart", "here: start a1", "hook afterHostsStart"]);
    let err = r.run(Some("beforeProjectStart"), |rt| rt.start("lab", &StartOptions::default()).unwrap_err());
    assert!(err.to_string().contains("beforeProjectStart"), "{err}");
    assert_eq!(r.take_log(), ["hook beforeProjectStart"], "nothing started");
    assert_eq!(r.state_of("router"), PowerState::ShutOff);
}

#[test]
fn a_failing_host_fails_alone_and_a_rerun_resumes_the_build() {
    let r = rig();
    r.places.s1.fail("build", "b1");
    let out = r.build();
    let failed: Vec<&str> = out.iter().filter(|o| !o.ok()).map(|o| o.host.as_str()).collect();
    assert_eq!(failed, ["b1"]);
    assert_eq!(r.state.project("lab").unwrap().unwrap().phase, Phase::Failed);
    assert_eq!(r.state_of("a2"), PowerState::ShutOff, "the other hosts were built");
    // Each host's own record: where it is, how far it got.
    let hosts: Vec<(String, Option<String>, Phase)> = r.state.hosts("lab").unwrap().into_iter().map(|h| (h.host, h.place, h.phase)).collect();
    assert_eq!(
        hosts,
        [
            ("a1".to_string(), None, Phase::Built),
            ("a2".to_string(), Some("s1".to_string()), Phase::Built),
            ("b1".to_string(), Some("s1".to_string()), Phase::Failed),
            ("router".to_string(), None, Phase::Built),
        ]
    );
    // Run again without -r: what was built stays, the rest is built.
    r.places.s1.heal("build", "b1");
    r.take_log();
    let out = r.build();
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    assert!(log.contains(&"here: build router (already built)".to_string()), "{log:#?}");
    assert!(log.contains(&"s1: build b1".to_string()), "{log:#?}");
    assert_eq!(r.state.project("lab").unwrap().unwrap().phase, Phase::Built);
    assert!(r.state.hosts("lab").unwrap().iter().all(|h| h.phase == Phase::Built));
    // Built: a plain build is refused, -r replaces.
    let err = r.run(None, |rt| rt.build(&r.plan, Path::new("lab.mln"), BuildOptions::default()).unwrap_err());
    assert!(err.to_string().contains("already built"), "{err}");
}

#[test]
fn an_interrupted_build_is_resumed_where_it_stopped() {
    let r = rig();
    // As if mln was killed after recording the project and building two
    // hosts: the record says `building`.
    r.places.here.fail("build", "a1");
    r.places.s1.fail("build", "b1");
    r.build();
    r.state.set_phase("lab", Phase::Building).unwrap();
    r.places.here.heal("build", "a1");
    r.places.s1.heal("build", "b1");
    r.take_log();
    assert!(r.build().iter().all(Outcome::ok));
    let built: Vec<String> = r.take_log().into_iter().filter(|l| l.contains(": build ") && !l.contains("already")).collect();
    assert_eq!(built.len(), 2, "only the two missing hosts: {built:?}");
}

#[test]
fn remove_after_a_partial_build_removes_what_exists_everywhere_and_forgets_the_project() {
    let r = rig();
    r.places.s1.fail("build", "b1");
    r.build();
    r.take_log();
    let out = r.run(None, |rt| rt.remove("lab").unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    for h in ["router", "a1", "a2", "b1"] {
        assert_eq!(r.state_of(h), PowerState::Absent, "{h}");
    }
    let log = r.take_log();
    assert!(log.contains(&"s1: remove a2".to_string()) && !log.iter().any(|l| l.contains("remove b1")), "{log:#?}");
    assert!(r.state.project("lab").unwrap().is_none());
    assert!(r.state.hosts("lab").unwrap().is_empty(), "host records go with the project");
}

#[test]
fn a_place_that_cannot_remove_keeps_the_record_for_a_rerun() {
    let r = rig();
    r.build();
    r.places.s1.fail("remove", "a2");
    let out = r.run(None, |rt| rt.remove("lab").unwrap());
    assert!(out.iter().any(|o| o.host == "a2" && !o.ok()), "{out:?}");
    assert!(r.state.project("lab").unwrap().is_some(), "kept: a re-run finishes");
    r.places.s1.heal("remove", "a2");
    assert!(r.run(None, |rt| rt.remove("lab").unwrap()).iter().all(Outcome::ok));
    assert!(r.state.project("lab").unwrap().is_none());
}

#[test]
fn stop_modes_and_a_forced_graceful_stop_is_a_warning() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    r.places.here.ignore_acpi("router");
    let out = r.run(None, |rt| rt.stop("lab", &["router".into(), "a1".into()], StopMode::Graceful { wait: Some(std::time::Duration::from_secs(5)) }).unwrap());
    let router = out.iter().find(|o| o.host == "router").unwrap();
    assert_eq!((router.status, router.message.as_str()), (Status::Warning, "did not shut down within 5 s: forced off"));
    assert_eq!(out.iter().find(|o| o.host == "a1").unwrap().status, Status::Ok);
    let out = r.run(None, |rt| rt.stop("lab", &["b1".into()], StopMode::Save).unwrap());
    assert_eq!(out[0].message, "saved");
    assert_eq!(r.state_of("b1"), PowerState::Saved);
    let out = r.run(None, |rt| rt.stop("lab", &["a2".into()], StopMode::Hard).unwrap());
    assert_eq!(out[0].message, "forced off");
    let out = r.run(None, |rt| rt.start("lab", &StartOptions { hosts: vec!["b1".into()], pause: None }).unwrap());
    assert_eq!(out[0].message, "restored");
    let (summary, ok) = mln::runtime::summary("stop", std::slice::from_ref(router));
    assert!(ok && summary.contains("WARNING"), "{summary}");
}

#[test]
fn status_asks_every_place_and_progress_comes_as_events() {
    let r = rig();
    r.build();
    let t = Collect::default();
    let hooks = LogHooks { log: r.log.clone(), failing: None };
    let rt = Runtime { state: &r.state, places: &r.places, hooks: &hooks, telemetry: &t };
    rt.start("lab", &StartOptions { hosts: vec!["b1".into()], pause: None }).unwrap();
    let s = rt.status("lab", &[]).unwrap();
    let states: Vec<(&str, &str, Option<&str>)> = s.iter().map(|s| (s.host.as_str(), s.state.as_str(), s.service_host.as_deref())).collect();
    assert_eq!(states, [("router", "shut off", None), ("a1", "shut off", None), ("a2", "shut off", Some("s1")), ("b1", "running", Some("s1"))]);
    let only = rt.status("lab", &["a2".into()]).unwrap();
    assert_eq!(only.len(), 1);
    assert!(rt.status("lab", &["nope".into()]).is_err());
    assert!(rt.status("nope", &[]).is_err(), "an unknown project is an error");
    let events = t.events();
    assert!(events.iter().any(|e| matches!(e, Event::Done { op, outcome } if op == "start" && outcome.host == "b1")), "{events:#?}");
    assert!(events.iter().any(|e| matches!(e, Event::Hook { name, ok: true } if name == "beforeHostsStart")));
}

#[test]
fn a_place_that_cannot_be_reached_fails_its_hosts_only() {
    let c = compile_mem(&[("/p/x.mln", "global { project x }\nhost a { template t }\nhost b { template t\n service_host gone }\n")]);
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let places = TwoPlaces { here: Fake::new("here"), s1: Fake::new("s1") };
    let t = Collect::default();
    let rt = Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };
    let out = rt.build(&c.plan, Path::new("x.mln"), BuildOptions::default()).unwrap();
    let a = out.iter().find(|o| o.host == "a").unwrap();
    let b = out.iter().find(|o| o.host == "b").unwrap();
    assert!(a.ok() && !b.ok() && b.message.contains("no place gone"), "{out:?}");
    assert_eq!(b.place.as_deref(), Some("gone"));
}

#[test]
fn start_with_a_pause_starts_one_host_at_a_time_in_boot_order() {
    let r = rig();
    r.build();
    r.take_log();
    let opts = StartOptions { hosts: vec![], pause: Some(std::time::Duration::from_millis(5)) };
    assert!(r.run(None, |rt| rt.start("lab", &opts).unwrap()).iter().all(Outcome::ok));
    let starts: Vec<String> = r.take_log().into_iter().filter(|l| l.contains(": start ")).collect();
    assert_eq!(starts.first().map(String::as_str), Some("here: start router"));
    assert_eq!(starts.last().map(String::as_str), Some("s1: start b1"));
    assert_eq!(starts.len(), 4);
}

#[test]
fn the_summary_counts_machines_not_switches() {
    let ok = |h: &str| Outcome { host: h.into(), place: None, status: Status::Ok, message: "removed".into(), retry: false };
    let (one, _) = mln::runtime::summary("remove", &[ok("a")]);
    assert!(one.starts_with("remove: 1 host\n"), "{one}");
    let (two, _) = mln::runtime::summary("remove", &[ok("a"), ok("b"), ok("switch bridge mln0123")]);
    assert!(two.starts_with("remove: 2 hosts\n"), "{two}");
    let failed = Outcome { retry: true, ..Outcome::failed("c", &MachineError::Transient("connection lost".into())) };
    let (text, all_ok) = mln::runtime::summary("start", &[failed]);
    assert!(!all_ok && text.contains("FAILED") && text.contains("worth retrying"), "{text}");
}

/// The rig's project edited: a1 with less memory (live), b1 with a user
/// (guest-config), router unchanged, a2 gone, c1 new on s1.
fn edited() -> Plan {
    let text = PROJECT
        .replace("host a1 { template t\n boot_order 2 }", "host a1 { template t\n boot_order 2\n memory 64M }")
        .replace("host a2 { template t\n boot_order 2\n service_host s1 }\n", "host c1 { template t\n service_host s1 }\n")
        .replace(
            "host b1 { template t\n boot_order 3\n service_host s1 }",
            "host b1 { template t\n boot_order 3\n service_host s1\n users { ann $6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/ } }",
        );
    let c = compile_mem(&[("/p/lab.mln", &text)]);
    assert!(c.ok(), "{}", rendered(&c));
    c.plan
}

#[test]
fn an_upgrade_does_per_host_what_its_class_says_and_nothing_for_the_unchanged() {
    use mln::upgrade::Class;
    let r = rig();
    r.build();
    r.take_log();
    let new = edited();
    // The base memory of the rig is the default; a1 goes down to 64M.
    let (u, out) = r.run(None, |rt| rt.upgrade(&new, Path::new("lab2.mln"), &Default::default()).unwrap());
    let class = |h: &str| u.hosts.iter().find(|d| d.host == h).unwrap().class;
    assert_eq!(
        [class("router"), class("a1"), class("a2"), class("b1"), class("c1")],
        [Class::Unchanged, Class::Live, Class::Remove, Class::GuestConfig, Class::Add]
    );
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    // Not one call for the unchanged host.
    assert!(!log.iter().any(|l| l.contains("router")), "{log:#?}");
    for line in ["here: update a1 live", "s1: retire a2", "s1: update b1 guest-config", "s1: build c1"] {
        pos(&log, line);
    }
    // The record is the new plan; the removed host is forgotten.
    let rec = r.state.require("lab").unwrap();
    assert_eq!(rec.plan, mln::state::redacted(&new));
    assert_eq!(rec.file, "lab2.mln");
    let hosts: Vec<String> = r.state.hosts("lab").unwrap().into_iter().map(|h| h.host).collect();
    assert!(!hosts.contains(&"a2".to_string()) && hosts.contains(&"c1".to_string()), "{hosts:?}");
    // Applied: the same file again changes nothing and calls nothing.
    let (u, out) = r.run(None, |rt| rt.upgrade(&new, Path::new("lab2.mln"), &Default::default()).unwrap());
    assert!(u.is_empty() && out.is_empty(), "{u:?} {out:?}");
    assert!(r.take_log().is_empty());
}

#[test]
fn a_failed_change_keeps_the_old_entry_and_a_rerun_finishes_it() {
    let r = rig();
    r.build();
    let new = edited();
    r.places.s1.fail("update", "b1");
    r.places.s1.fail("build", "c1");
    let (_, out) = r.run(None, |rt| rt.upgrade(&new, Path::new("lab2.mln"), &Default::default()).unwrap());
    let failed: Vec<&str> = out.iter().filter(|o| !o.ok()).map(|o| o.host.as_str()).collect();
    assert_eq!(failed, ["b1", "c1"], "{out:?}");
    let rec = r.state.require("lab").unwrap();
    let old_b1 = r.plan.hosts.iter().find(|h| h.name == "b1").unwrap();
    assert_eq!(rec.plan.hosts.iter().find(|h| h.name == "b1"), Some(old_b1), "b1 is recorded as it still is");
    assert!(!rec.plan.hosts.iter().any(|h| h.name == "c1"), "a host whose build failed is not recorded as there");
    assert!(rec.plan.hosts.iter().any(|h| h.name == "a1" && h.memory_mib == 64), "what worked is recorded");
    r.places.s1.heal("update", "b1");
    r.places.s1.heal("build", "c1");
    r.take_log();
    let (u, out) = r.run(None, |rt| rt.upgrade(&new, Path::new("lab2.mln"), &Default::default()).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let changed: Vec<&str> = u.hosts.iter().filter(|d| d.class != mln::upgrade::Class::Unchanged).map(|d| d.host.as_str()).collect();
    assert_eq!(changed, ["b1", "c1"], "only what was left is done again");
    assert_eq!(r.state.require("lab").unwrap().plan, mln::state::redacted(&new));
}

#[test]
fn an_upgrade_refuses_another_project_and_moves_a_stopped_host_with_its_files() {
    let r = rig();
    r.build();
    let other = compile_mem(&[("/p/x.mln", "global { project other }\nhost a { template t }\n")]).plan;
    let e = r.run(None, |rt| rt.upgrade(&other, Path::new("x.mln"), &Default::default())).unwrap_err();
    assert!(matches!(e, mln::runtime::RuntimeError::State(mln::state::StateError::NoProject(_))), "a file of another project finds no such project: {e}");
    // a2 moves from s1 to this machine, shut off: with its files.
    let moved = compile_mem(&[("/p/lab.mln", &PROJECT.replace("host a2 { template t\n boot_order 2\n service_host s1 }", "host a2 { template t\n boot_order 2 }"))]).plan;
    r.take_log();
    let (_, out) = r.run(None, |rt| rt.upgrade(&moved, Path::new("lab.mln"), &Default::default()).unwrap());
    let a2 = out.iter().find(|o| o.host == "a2").unwrap();
    assert!(a2.ok() && a2.message.contains("with its files") && a2.place.is_none(), "{a2:?}");
    let log = r.take_log();
    let order = ["s1: pack a2", "here: make_ready a2", "here: carry a2", "here: unpack a2", "s1: retire a2"].map(|l| pos(&log, l));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    let rec = r.state.require("lab").unwrap();
    assert_eq!(rec.plan.hosts.iter().find(|h| h.name == "a2").unwrap().service_host, None);
    assert_eq!((r.places.here.machine("lab", "a2"), r.places.s1.machine("lab", "a2")), (PowerState::ShutOff, PowerState::Absent));
}

#[test]
fn reconfigure_writes_the_chosen_hosts_again_and_restarts_only_running_ones() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions { hosts: vec!["a1".into()], pause: None }).unwrap());
    r.take_log();
    let out = r.run(None, |rt| rt.reconfigure("lab", &["a1".into(), "b1".into()]).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    let mut updates: Vec<&String> = log.iter().filter(|l| !l.ends_with("prepare lab")).collect();
    updates.sort();
    assert_eq!(updates, ["here: update a1 guest-config", "s1: update b1 guest-config"], "nothing else is touched");
    assert_eq!(r.state_of("a1"), PowerState::Running);
    assert_eq!(r.state_of("b1"), PowerState::ShutOff, "a stopped host is not started");
    assert_eq!(r.state.require("lab").unwrap().plan, mln::state::redacted(&r.plan), "the record is unchanged");
    let e = r.run(None, |rt| rt.reconfigure("lab", &["nope".into()])).unwrap_err();
    assert!(e.to_string().contains("no host nope"), "{e}");
}

/// A service host as its agent serves it: its own state and machines, and
/// the same orchestration run on the share it is sent (as `mln agent`
/// does), so its own comparison of shares is what runs.
struct AgentLike {
    _dir: tempfile::TempDir,
    state: State,
    machines: Fake,
}

struct Only<'a>(&'a Fake);

impl Places for Only<'_> {
    fn backend(&self, _: Option<&str>) -> Result<&dyn Backend, MachineError> {
        Ok(self.0)
    }
    fn local_uri(&self) -> String {
        "fake://".into()
    }
}

impl AgentLike {
    fn new() -> AgentLike {
        let dir = tempfile::tempdir().unwrap();
        AgentLike { state: State::open(dir.path()).unwrap(), _dir: dir, machines: Fake::new("agent") }
    }
    /// A share as the manager sends it: on the agent's own machine.
    fn as_sent(plan: &Plan) -> Plan {
        let mut p = plan.clone();
        for h in &mut p.hosts {
            h.service_host = None;
        }
        p
    }
    fn runtime<'a>(&'a self, only: &'a Only<'a>, t: &'a dyn mln::progress::Telemetry) -> Runtime<'a> {
        Runtime { state: &self.state, places: only, hooks: &mln::runtime::hooks::NoHooks, telemetry: t }
    }
}

impl Receives for AgentLike {
    fn receive(&self, _: &str, _: &str) -> Result<(), MachineError> {
        Err(MachineError::Refused("an agent-like place takes no files".into()))
    }
}

impl Backend for AgentLike {
    fn describe(&self) -> String {
        "an agent".into()
    }
    fn power(&self) -> Result<&dyn mln::machine::Power, MachineError> {
        self.machines.power()
    }
    fn build_all(&self, plan: &Plan, opts: BuildOptions, t: &dyn mln::progress::Telemetry) -> Vec<Outcome> {
        let only = Only(&self.machines);
        self.runtime(&only, t).build(&Self::as_sent(plan), Path::new(""), opts).unwrap()
    }
    fn upgrade_all(&self, _: &Plan, new: &Plan, _: &[(String, mln::upgrade::Class)], opts: &mln::machine::UpgradeOptions, t: &dyn mln::progress::Telemetry) -> Vec<Outcome> {
        let only = Only(&self.machines);
        self.runtime(&only, t).upgrade_or_build(&Self::as_sent(new), Path::new(""), opts).unwrap().1
    }
}

#[test]
fn a_host_that_would_move_is_left_alone_by_its_service_host_while_others_there_change() {
    let c = compile_mem(&[("/p/lab.mln", PROJECT)]);
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let places = TwoPlaces { here: Fake::new("here"), s1: AgentLike::new() };
    let hooks = LogHooks { log: Log::default(), failing: None };
    let t = Collect::default();
    let rt = Runtime { state: &state, places: &places, hooks: &hooks, telemetry: &t };
    assert!(rt.build(&c.plan, Path::new("lab.mln"), BuildOptions::default()).unwrap().iter().all(Outcome::ok));
    assert_eq!(places.s1.machines.machine("lab", "a2"), PowerState::ShutOff);
    // a2 would move from s1 to here; b1, also on s1, gets a user.
    let text = PROJECT.replace("host a2 { template t\n boot_order 2\n service_host s1 }", "host a2 { template t\n boot_order 2 }").replace(
        "host b1 { template t\n boot_order 3\n service_host s1 }",
        "host b1 { template t\n boot_order 3\n service_host s1\n users { ann $6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/ } }",
    );
    let new = compile_mem(&[("/p/lab.mln", &text)]).plan;
    let (_, out) = rt.upgrade(&new, Path::new("lab.mln"), &Default::default()).unwrap();
    let of = |h: &str| out.iter().find(|o| o.host == h).unwrap_or_else(|| panic!("no outcome for {h}: {out:?}"));
    // This place cannot send a machine with its files.
    assert!(!of("a2").ok() && of("a2").message.contains("not supported"), "{out:?}");
    assert!(of("b1").ok(), "{out:?}");
    assert_eq!(places.s1.machines.machine("lab", "a2"), PowerState::ShutOff, "the service host kept a2: {:?}", places.s1.machines.log());
    assert!(places.s1.machines.log().iter().any(|l| l == "update b1 guest-config"), "{:?}", places.s1.machines.log());
    assert!(!places.s1.machines.log().iter().any(|l| l.contains("retire")), "{:?}", places.s1.machines.log());
    // The agent's record still has a2; the manager's keeps it on s1.
    assert!(places.s1.state.require("lab").unwrap().plan.hosts.iter().any(|h| h.name == "a2"));
    let rec = state.require("lab").unwrap();
    assert_eq!(rec.plan.hosts.iter().find(|h| h.name == "a2").unwrap().service_host.as_deref(), Some("s1"));
}

/// Places that join switches across them as the fabric does, here at
/// 10.0.0.1 and s1 at 10.0.0.2.
struct Joined(TwoPlaces);

impl Places for Joined {
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError> {
        self.0.backend(place)
    }
    fn local_uri(&self) -> String {
        self.0.local_uri()
    }
    fn join_segments(&self, shares: &mut [(Option<String>, Plan)], _: &dyn mln::progress::Telemetry) {
        let at = |p: &Option<String>| Some(if p.is_none() { "10.0.0.1" } else { "10.0.0.2" }.parse().unwrap());
        let addresses: Vec<_> = shares.iter().map(|(p, _)| at(p)).collect();
        mln::fabric::segment::join(shares, &addresses);
    }
}

#[test]
fn a_switch_on_two_places_is_joined_on_both_and_an_upgrade_joins_it_anew_where_nothing_else_changed() {
    let net = |extra: &str| {
        let text = format!(
            "global {{\n project net\n}}\nswitch lan {{\n}}\nswitch solo {{\n}}\n\
             host a {{\n template t\n network eth0 {{\n switch lan\n }}\n network eth1 {{\n switch solo\n }}\n}}\n\
             host b {{\n template t\n service_host s1\n network eth0 {{\n switch lan\n }}\n}}\n{extra}"
        );
        let c = compile_mem(&[("/p/net.mln", &text)]);
        assert!(c.ok(), "{}", rendered(&c));
        c.plan
    };
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let log: Log = Arc::default();
    let places = Joined(TwoPlaces { here: Fake::new("here").logging_to(log.clone()), s1: Fake::new("s1").logging_to(log.clone()) });
    let t = Collect::default();
    let rt = Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };
    let out = rt.build(&net(""), Path::new("net.mln"), BuildOptions::default()).unwrap();
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let joins = |log: &[String]| -> Vec<String> { log.iter().filter(|l| l.contains(": join ")).cloned().collect() };
    let built = std::mem::take(&mut *log.lock().unwrap());
    for line in ["here: join lan from 10.0.0.1 to 10.0.0.2", "s1: join lan from 10.0.0.2 to 10.0.0.1"] {
        pos(&built, line);
    }
    assert_eq!(joins(&built).len(), 2, "lan on both places, solo on one only: {built:#?}");

    // A host on s1 joins switch solo: a on this machine is unchanged, but
    // its switch now spans s1 too, so this machine joins it anew.
    let new = net("host c {\n template t\n service_host s1\n network eth0 {\n switch solo\n }\n}\n");
    let (_, out) = rt.upgrade(&new, Path::new("net2.mln"), &Default::default()).unwrap();
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let upgraded = std::mem::take(&mut *log.lock().unwrap());
    for line in ["here: join solo from 10.0.0.1 to 10.0.0.2", "s1: join solo from 10.0.0.2 to 10.0.0.1", "s1: build c"] {
        pos(&upgraded, line);
    }
    assert!(!upgraded.iter().any(|l| l.contains("update a") || l.contains("build a")), "a itself is untouched: {upgraded:#?}");
    // Nothing changed: nothing is called, switches included.
    let (u, out) = rt.upgrade(&new, Path::new("net2.mln"), &Default::default()).unwrap();
    assert!(u.is_empty() && out.is_empty(), "{u:?} {out:?}");
    assert!(log.lock().unwrap().is_empty(), "{:#?}", log.lock().unwrap());
}

#[test]
fn a_running_host_moves_to_another_place_and_the_place_it_left_forgets_it() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    assert_eq!((out[0].host.as_str(), out[0].place.as_deref()), ("a1", Some("s1")));
    let log = r.take_log();
    let order = ["s1: prepare_incoming a1", "here: send a1", "s1: arrived a1"].map(|l| pos(&log, l));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    // The place it left forgets it once it runs at the receiver (while
    // the receiver takes it in).
    assert!(pos(&log, "here: send a1") < pos(&log, "here: retire a1"), "{log:#?}");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Absent, PowerState::Running));
    // The record says where it is now.
    let rec = r.state.require("lab").unwrap();
    assert_eq!(rec.plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host.as_deref(), Some("s1"));
    assert_eq!(r.state.hosts("lab").unwrap().into_iter().find(|h| h.host == "a1").unwrap().place.as_deref(), Some("s1"));
    // Again: it is there already, nothing is sent.
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out[0].ok() && out[0].message.contains("already"), "{out:?}");
    assert!(!r.take_log().iter().any(|l| l.contains("send")));
}

#[test]
fn a_failed_send_leaves_the_host_running_where_it_was_and_nothing_prepared() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    // Not running: refused before anything is done.
    r.run(None, |rt| rt.stop("lab", &["a1".to_string()], StopMode::Hard).unwrap());
    let e = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live)).unwrap_err();
    assert!(e.to_string().contains("only a running host moves live"), "{e}");
    r.run(None, |rt| rt.start("lab", &StartOptions { hosts: vec!["a1".into()], pause: None }).unwrap());
    r.take_log();
    r.places.here.fail("send", "a1");
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(!out[0].ok() && out[0].place.is_none(), "{out:?}");
    let log = r.take_log();
    pos(&log, "s1: not_arrived a1");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Running, PowerState::Absent));
    assert_eq!(r.state.require("lab").unwrap().plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host, None);
    assert!(!r.state.project_dir("lab").unwrap().join(".moving-a1").exists());
}

#[test]
fn a_move_interrupted_after_the_send_is_finished_by_a_rerun() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    r.places.s1.fail("arrived", "a1");
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(!out[0].ok() && out[0].message.contains("again"), "{out:?}");
    // The record still has it at home; the marker says a move was begun.
    assert_eq!(r.state.require("lab").unwrap().plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host, None);
    assert!(r.state.project_dir("lab").unwrap().join(".moving-a1").exists());
    r.places.s1.heal("arrived", "a1");
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    assert!(!log.iter().any(|l| l.contains("send")), "not sent twice: {log:#?}");
    pos(&log, "s1: arrived a1");
    pos(&log, "here: retire a1");
    assert_eq!(r.state.require("lab").unwrap().plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host.as_deref(), Some("s1"));
    assert!(!r.state.project_dir("lab").unwrap().join(".moving-a1").exists());
}

#[test]
fn an_upgrade_moves_the_hosts_named_live_and_applies_the_rest() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    // a1 moves to s1 and gets less memory; router moves too but is not named.
    let text = PROJECT
        .replace("host a1 { template t\n boot_order 2 }", "host a1 { template t\n boot_order 2\n service_host s1\n memory 64M }")
        .replace("host router { template t\n boot_order 1 }", "host router { template t\n boot_order 1\n service_host s1 }");
    let new = compile_mem(&[("/p/lab.mln", &text)]).plan;
    r.take_log();
    let opts = mln::machine::UpgradeOptions { live: vec!["a1".into()], ..Default::default() };
    let (_, out) = r.run(None, |rt| rt.upgrade(&new, Path::new("lab2.mln"), &opts).unwrap());
    let of = |h: &str| out.iter().filter(|o| o.host == h).collect::<Vec<_>>();
    assert!(of("a1").iter().all(|o| o.ok()) && of("a1").len() == 2, "moved, then changed: {out:?}");
    assert!(of("router").iter().all(|o| o.ok()), "{out:?}");
    let log = r.take_log();
    pos(&log, "here: send a1");
    pos(&log, "s1: update a1 live");
    // Not named with -l, and this machine cannot send live: with its files.
    let order = ["here: pack router", "s1: make_ready router", "s1: carry router", "s1: unpack router", "here: retire router"].map(|l| pos(&log, l));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    assert_eq!(r.places.s1.machine("lab", "a1"), PowerState::Running);
    assert_eq!((r.places.here.machine("lab", "router"), r.places.s1.machine("lab", "router")), (PowerState::Absent, PowerState::Running));
}

#[test]
fn a_move_interrupted_before_the_send_is_done_once_by_a_rerun() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    // Killed after the marker was written, before anything was sent.
    let marker = r.state.project_dir("lab").unwrap().join(".moving-a1");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, r#"{"from":null,"to":"s1"}"#).unwrap();
    // Meanwhile, nothing else may take a1 for gone or missing anywhere.
    let e = r.run(None, |rt| rt.remove("lab")).unwrap_err();
    assert!(e.to_string().contains("was begun and not finished"), "{e}");
    let e = r.run(None, |rt| rt.upgrade(&r.plan, Path::new("lab.mln"), &Default::default())).unwrap_err();
    assert!(e.to_string().contains("mln migrate -p lab -h a1 --to s1"), "{e}");
    let e = r.run(None, |rt| rt.migrate("lab", "a1", Some("s2"), MoveMode::Live)).unwrap_err();
    assert!(e.to_string().contains("to s1 was begun"), "{e}");
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    assert_eq!(log.iter().filter(|l| l.ends_with("send a1")).count(), 1, "sent once: {log:#?}");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Absent, PowerState::Running));
    assert!(!marker.exists());
}

#[test]
fn a_place_that_could_not_let_go_is_finished_by_a_rerun() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    // The move itself works; this machine cannot remove its copy yet.
    r.places.here.fail("retire", "a1");
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out[0].ok() && out.iter().any(|o| !o.ok() && o.host == "a1" && o.place.is_none()), "{out:?}");
    let marker = r.state.project_dir("lab").unwrap().join(".moving-a1");
    assert!(marker.exists(), "the marker stays until every place caught up");
    r.places.here.heal("retire", "a1");
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Live).unwrap());
    assert!(out.iter().all(Outcome::ok) && out[0].message.contains("already"), "{out:?}");
    pos(&r.take_log(), "here: retire a1");
    assert!(!marker.exists());
}

#[test]
fn a_saved_host_moves_with_its_files_and_is_saved_there() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    r.run(None, |rt| rt.stop("lab", &["a1".to_string()], StopMode::Save).unwrap());
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Auto).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    assert!(out[0].message.contains("with its files"), "{out:?}");
    let log = r.take_log();
    let order = ["here: pack a1", "s1: make_ready a1", "s1: carry a1", "s1: unpack a1", "here: retire a1"].map(|l| pos(&log, l));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("send")), "not live: {log:#?}");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Absent, PowerState::Saved));
    assert_eq!(r.state.require("lab").unwrap().plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host.as_deref(), Some("s1"));
    assert!(!r.state.project_dir("lab").unwrap().join(".moving-a1").exists());
    // And back to this machine, still saved.
    let out = r.run(None, |rt| rt.migrate("lab", "a1", None, MoveMode::Cold).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Saved, PowerState::Absent));
}

#[test]
fn a_failed_carry_leaves_the_host_as_it_was_where_it_was() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    r.places.s1.fail("carry", "a1");
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Cold).unwrap());
    assert!(!out[0].ok() && out[0].place.is_none() && out[0].message.contains("it stays on this machine, running"), "{out:?}");
    let log = r.take_log();
    let order = ["here: pack a1", "s1: carry a1", "s1: discard a1", "here: home a1"].map(|l| pos(&log, l));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Running, PowerState::Absent));
    assert_eq!(r.state.require("lab").unwrap().plan.hosts.iter().find(|h| h.name == "a1").unwrap().service_host, None);
    assert!(!r.state.project_dir("lab").unwrap().join(".moving-a1").exists());
}

#[test]
fn a_cold_move_interrupted_after_the_carry_is_finished_by_a_rerun_without_carrying_again() {
    let r = rig();
    r.build();
    r.run(None, |rt| rt.start("lab", &StartOptions::default()).unwrap());
    // The files arrive; unpacking fails, and so does the clean-up there:
    // as after a kill -9 between the carry and the unpack.
    r.places.s1.fail("unpack", "a1");
    r.places.s1.fail("discard", "a1");
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Cold).unwrap());
    assert!(!out[0].ok() && out[0].message.contains("again"), "{out:?}");
    let marker = r.state.project_dir("lab").unwrap().join(".moving-a1");
    assert!(marker.exists());
    assert_eq!(r.places.here.machine("lab", "a1"), PowerState::ShutOff, "packed, not running anywhere");
    let e = r.run(None, |rt| rt.remove("lab")).unwrap_err();
    assert!(e.to_string().contains("was begun and not finished"), "{e}");
    r.places.s1.heal("unpack", "a1");
    r.places.s1.heal("discard", "a1");
    r.take_log();
    let out = r.run(None, |rt| rt.migrate("lab", "a1", Some("s1"), MoveMode::Cold).unwrap());
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let log = r.take_log();
    assert!(!log.iter().any(|l| l.contains("carry") || l.contains("pack a1") && !l.contains("unpack")), "not carried again: {log:#?}");
    pos(&log, "s1: unpack a1");
    pos(&log, "here: retire a1");
    assert_eq!((r.places.here.machine("lab", "a1"), r.places.s1.machine("lab", "a1")), (PowerState::Absent, PowerState::Running));
    assert!(!marker.exists());
}
