//! The one orchestration of a project's machines: build, start, stop,
//! status and remove, for machines here and on service hosts alike. It
//! knows places only through [`Places`] and machines only through the
//! traits of [`crate::machine`]: boot-order groups, hooks, the journal,
//! parallel work per place and per-host outcomes live here, once.
//!
//! Every operation can be run again after an interruption: a build records
//! the project (its plan, its places) before anything is made, each backend
//! records what it makes before making it, and `remove` forgets the
//! project only when every place is done.

mod error;
pub mod hooks;
mod cold;
mod migrate;
pub use migrate::{MoveMode, TIMING as MIGRATE_TIMING};
pub mod places;
mod status;
mod upgrade;

pub use error::RuntimeError;
pub use places::{LocalPlaces, Places};
pub use status::HostStatus;

pub use crate::machine::BuildOptions;
use crate::machine::{Backend, MachineError, Outcome, Status, StopMode};
use crate::plan::{Host, Plan};
use crate::progress::{Event, Telemetry};
use crate::state::{HostRecord, Phase, ProjectRecord, State};
use hooks::Hooks;
use indexmap::IndexMap;
use std::path::Path;
use std::time::Duration;

/// One machine's state, or why it could not be asked.
type PowerAnswer = Result<crate::machine::PowerState, MachineError>;
/// A place's hosts and what the place said of them.
type PlaceAnswer<'p> = (Option<String>, Vec<&'p Host>, Result<Vec<PowerAnswer>, MachineError>);

pub struct Runtime<'a> {
    pub state: &'a State,
    pub places: &'a dyn Places,
    pub hooks: &'a dyn Hooks,
    pub telemetry: &'a dyn Telemetry,
}

#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Only these hosts (all when empty; project hooks only for all).
    pub hosts: Vec<String>,
    /// MLN's `start -s`: one host at a time, this long apart.
    pub pause: Option<Duration>,
}

/// A project's share for one place: its hosts, the switches they use, no
/// hooks (those run where the orchestration runs).
pub fn share(plan: &Plan, hosts: &[&Host]) -> Plan {
    let mut p = plan.clone();
    p.hooks.clear();
    p.hosts = hosts.iter().map(|h| (*h).clone()).collect();
    p.switches.retain(|s| p.hosts.iter().any(|h| h.interfaces.iter().any(|i| i.switch.as_deref() == Some(&s.name))));
    p
}

/// Hosts by place, in plan order; `None` is this machine.
fn by_place<'p>(hosts: &[&'p Host]) -> IndexMap<Option<String>, Vec<&'p Host>> {
    let mut m: IndexMap<Option<String>, Vec<&Host>> = IndexMap::new();
    for h in hosts {
        m.entry(h.service_host.clone()).or_default().push(h);
    }
    m
}

/// Boot-order groups of `hosts`, ascending.
fn groups<'p>(hosts: &[&'p Host]) -> Vec<Vec<&'p Host>> {
    let mut hosts = hosts.to_vec();
    hosts.sort_by_key(|h| h.boot_order);
    let mut out: Vec<Vec<&Host>> = Vec::new();
    for h in hosts {
        match out.last_mut() {
            Some(g) if g[0].boot_order == h.boot_order => g.push(h),
            _ => out.push(vec![h]),
        }
    }
    out
}

fn tag(mut outcomes: Vec<Outcome>, place: &Option<String>) -> Vec<Outcome> {
    for o in &mut outcomes {
        if o.place.is_none() {
            o.place = place.clone();
        }
    }
    outcomes
}

fn all_failed(hosts: &[&Host], place: &Option<String>, e: &crate::machine::MachineError) -> Vec<Outcome> {
    tag(hosts.iter().map(|h| Outcome::failed(&h.name, e)).collect(), place)
}

impl Runtime<'_> {
    /// Runs `f` on every place's hosts at once, each place on its own
    /// thread; a place that cannot be reached fails its hosts only.
    fn per_place(&self, hosts: &[&Host], f: impl Fn(&dyn Backend, &[&Host]) -> Vec<Outcome> + Sync) -> Vec<Outcome> {
        let places = by_place(hosts);
        std::thread::scope(|s| {
            let running: Vec<_> = places
                .iter()
                .map(|(place, hs)| {
                    let f = &f;
                    s.spawn(move || match self.places.backend(place.as_deref()) {
                        Ok(b) => tag(f(b, hs), place),
                        Err(e) => all_failed(hs, place, &e),
                    })
                })
                .collect();
            running.into_iter().flat_map(|r| r.join().unwrap_or_default()).collect()
        })
    }

    fn hook(&self, plan: &Plan, name: &str) -> Result<(), RuntimeError> {
        let r = self.hooks.run(plan, name);
        if plan.hooks.contains_key(name) {
            self.telemetry.event(&Event::Hook { name: name.to_string(), ok: r.is_ok() });
        }
        Ok(r?)
    }

    /// Builds every host of `plan` in its place. A project built before is
    /// refused unless `replace`; one whose build did not finish is resumed.
    pub fn build(&self, plan: &Plan, file: &Path, opts: BuildOptions) -> Result<Vec<Outcome>, RuntimeError> {
        crate::name::check_plan(plan).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        let _lock = self.state.lock(&plan.project)?;
        self.build_locked(plan, file, opts)
    }

    /// `build`, the project's lock held by the caller.
    fn build_locked(&self, plan: &Plan, file: &Path, opts: BuildOptions) -> Result<Vec<Outcome>, RuntimeError> {
        self.no_unfinished_moves(&plan.project, &[])?;
        let old = self.state.project(&plan.project)?;
        let mut outcomes = Vec::new();
        if let Some(old) = &old {
            if old.phase == Phase::Built && !opts.replace {
                if opts.resume && old.plan == crate::state::redacted(plan) {
                    return Ok(plan.hosts.iter().map(|h| Outcome::of(&h.name, Ok(crate::machine::Done::ok("already built")))).collect());
                }
                return Err(RuntimeError::Refused(format!(
                    "project {} is already built (from {}); `mln build -r` replaces it, `mln remove -p {}` removes it",
                    plan.project, old.file, plan.project
                )));
            }
            if opts.replace {
                // Gone first, everywhere it was; what cannot be removed
                // now is reported, and its record kept for a re-run.
                outcomes.extend(self.remove_locked(old)?.into_iter().filter(|o| !o.ok()));
            }
        }
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        let places = by_place(&hosts);
        let mut recorded: Vec<String> = old.as_ref().filter(|_| !opts.replace).map(|o| o.places.clone()).unwrap_or_default();
        for p in places.keys().flatten() {
            if !recorded.contains(p) {
                recorded.push(p.clone());
            }
        }
        // Recorded before anything is made, so `remove` finds every place.
        self.state.save_project(&ProjectRecord {
            name: plan.project.clone(),
            phase: Phase::Building,
            file: file.display().to_string(),
            connect: self.places.local_uri(),
            plan: plan.clone(),
            places: recorded,
        })?;
        // Each host where it goes, before anything is made there; hosts
        // already built keep their phase until this build says otherwise.
        let known: std::collections::HashMap<String, Phase> = self.state.hosts(&plan.project)?.into_iter().map(|h| (h.host, h.phase)).collect();
        let records: Vec<HostRecord> = plan
            .hosts
            .iter()
            .map(|h| HostRecord { host: h.name.clone(), place: h.service_host.clone(), phase: known.get(&h.name).copied().unwrap_or(Phase::Building) })
            .collect();
        self.state.record_hosts(&plan.project, &records)?;
        let mut shares: Vec<(Option<String>, Plan)> = places.iter().map(|(p, hs)| (p.clone(), share(plan, hs))).collect();
        self.places.join_segments(&mut shares, self.telemetry);
        let ready = self.places.before_build(&shares, self.telemetry);
        let resume = opts.resume || old.as_ref().is_some_and(|o| o.phase != Phase::Built);
        std::thread::scope(|s| {
            let running: Vec<_> = shares
                .iter()
                .zip(ready)
                .map(|((place, share), ready)| {
                    s.spawn(move || {
                        let hs: Vec<&Host> = share.hosts.iter().collect();
                        if let Err(e) = ready {
                            return all_failed(&hs, place, &e);
                        }
                        match self.places.backend(place.as_deref()) {
                            Ok(b) => tag(b.build_all(share, BuildOptions { replace: opts.replace, resume }, self.telemetry), place),
                            Err(e) => all_failed(&hs, place, &e),
                        }
                    })
                })
                .collect();
            for r in running {
                outcomes.extend(r.join().unwrap_or_default());
            }
        });
        let done: Vec<HostRecord> = plan
            .hosts
            .iter()
            .filter_map(|h| {
                let o = outcomes.iter().find(|o| o.host == h.name)?;
                Some(HostRecord { host: h.name.clone(), place: h.service_host.clone(), phase: if o.ok() { Phase::Built } else { Phase::Failed } })
            })
            .collect();
        self.state.record_hosts(&plan.project, &done)?;
        let ok = outcomes.iter().all(Outcome::ok);
        self.state.journal(&plan.project, "build", None, ok, if ok { "built" } else { "some hosts failed" });
        self.state.set_phase(&plan.project, if ok { Phase::Built } else { Phase::Failed })?;
        Ok(outcomes)
    }

    /// What `build` would do for every host of `plan`, doing nothing.
    pub fn check_build(&self, plan: &Plan) -> Vec<Outcome> {
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        self.per_place(&hosts, |b, hs| b.check_all(plan, hs, self.telemetry))
    }

    /// The recorded project and the chosen hosts (all when `only` is empty).
    fn chosen<'r>(&self, rec: &'r ProjectRecord, only: &[String]) -> Result<Vec<&'r Host>, RuntimeError> {
        for o in only {
            if !rec.plan.hosts.iter().any(|h| &h.name == o) {
                return Err(RuntimeError::Refused(format!("project {} has no host {o}", rec.name)));
            }
        }
        Ok(rec.plan.hosts.iter().filter(|h| only.is_empty() || only.contains(&h.name)).collect())
    }

    /// Start or stop in boot order (reversed to stop), between the hooks:
    /// each group on every place at once, one group after the other.
    fn in_order(&self, project: &str, only: &[String], verb: &str, f: impl Fn(&dyn Backend, &[&Host]) -> Vec<Outcome> + Sync) -> Result<Vec<Outcome>, RuntimeError> {
        let _lock = self.state.lock(project)?;
        let rec = self.state.require(project)?;
        let chosen = self.chosen(&rec, only)?;
        let whole = only.is_empty();
        if whole {
            self.hook(&rec.plan, &format!("beforeProject{verb}"))?;
        }
        self.hook(&rec.plan, &format!("beforeHosts{verb}"))?;
        let mut gs = groups(&chosen);
        if verb == "Stop" {
            gs.reverse();
        }
        let mut outcomes = Vec::new();
        for g in gs {
            outcomes.extend(self.per_place(&g, &f));
        }
        let op = verb.to_lowercase();
        let ok = outcomes.iter().all(Outcome::ok);
        self.state.journal(project, &op, None, ok, &format!("{} hosts, {} failed", outcomes.len(), outcomes.iter().filter(|o| !o.ok()).count()));
        self.hook(&rec.plan, &format!("afterHosts{verb}"))?;
        if whole {
            self.hook(&rec.plan, &format!("afterProject{verb}"))?;
        }
        Ok(outcomes)
    }

    pub fn start(&self, project: &str, opts: &StartOptions) -> Result<Vec<Outcome>, RuntimeError> {
        let t = self.telemetry;
        match opts.pause {
            None => self.in_order(project, &opts.hosts, "Start", |b, hs| b.start_all(project, hs, t)),
            // One host at a time, `pause` apart (MLN's `start -s`).
            Some(pause) => {
                let first = std::sync::atomic::AtomicBool::new(true);
                let one_at_a_time = std::sync::Mutex::new(());
                self.in_order(project, &opts.hosts, "Start", |b, hs| {
                    let mut out = Vec::new();
                    for h in hs {
                        let _turn = one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
                        if !first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            std::thread::sleep(pause);
                        }
                        out.extend(b.start_all(project, &[*h], t));
                    }
                    out
                })
            }
        }
    }

    pub fn stop(&self, project: &str, hosts: &[String], mode: StopMode) -> Result<Vec<Outcome>, RuntimeError> {
        let t = self.telemetry;
        self.in_order(project, hosts, "Stop", |b, hs| b.stop_all(project, hs, mode, t))
    }

    /// Every chosen host with its state, every place asked at once; a host
    /// whose place cannot be asked shows why.
    pub fn status(&self, project: &str, only: &[String]) -> Result<Vec<HostStatus>, RuntimeError> {
        let rec = self.state.require(project)?;
        let chosen = self.chosen(&rec, only)?;
        let places = by_place(&chosen);
        let answers: Vec<PlaceAnswer> =
            std::thread::scope(|s| {
                let running: Vec<_> = places
                    .iter()
                    .map(|(place, hs)| {
                        s.spawn(move || {
                            let r = match self.places.glance(place.as_deref(), project, hs) {
                                Some(states) => Ok(states.into_iter().map(Ok).collect()),
                                None => self.places.backend(place.as_deref()).map(|b| b.states(project, hs)),
                            };
                            (place.clone(), hs.clone(), r)
                        })
                    })
                    .collect();
                running.into_iter().filter_map(|r| r.join().ok()).collect()
            });
        let mut by_host: std::collections::HashMap<String, HostStatus> = std::collections::HashMap::new();
        for (place, hs, r) in answers {
            for (i, h) in hs.iter().enumerate() {
                let state = match &r {
                    Ok(states) => states.get(i).cloned().unwrap_or_else(|| Err(MachineError::Failed("no answer".into()))),
                    Err(e) => Err(e.clone()),
                };
                by_host.insert(h.name.clone(), HostStatus::new(project, h, place.clone(), state));
            }
        }
        let phases: std::collections::HashMap<String, Phase> = self.state.hosts(project)?.into_iter().map(|h| (h.host, h.phase)).collect();
        Ok(chosen
            .iter()
            .filter_map(|h| by_host.remove(&h.name))
            .map(|mut s| {
                s.phase = phases.get(&s.host).copied();
                s
            })
            .collect())
    }

    /// Removes everything of the project from every place that may hold
    /// part of it; the record goes only when all of them are done, so a
    /// re-run finishes the job.
    pub fn remove(&self, project: &str) -> Result<Vec<Outcome>, RuntimeError> {
        let lock = self.state.lock(project)?;
        let rec = self.state.require(project)?;
        let outcomes = self.remove_locked(&rec)?;
        if outcomes.iter().all(Outcome::ok) {
            // Nothing of the project is left, its lock file included
            // (deleted while held: see `ProjectLock::acquire`).
            self.state.drop_lock_file(project);
        }
        drop(lock);
        Ok(outcomes)
    }

    fn remove_locked(&self, rec: &ProjectRecord) -> Result<Vec<Outcome>, RuntimeError> {
        self.no_unfinished_moves(&rec.name, &[])?;
        let project = rec.name.as_str();
        let mut places: Vec<Option<String>> = rec.places.iter().cloned().map(Some).collect();
        // Here: the plan's hosts without a service host, and whatever this
        // state directory recorded for the project.
        if rec.plan.hosts.iter().any(|h| h.service_host.is_none()) || !self.state.resources(project)?.is_empty() {
            places.insert(0, None);
        }
        let outcomes: Vec<Outcome> = std::thread::scope(|s| {
            let running: Vec<_> = places
                .iter()
                .map(|place| {
                    s.spawn(move || match self.places.backend(place.as_deref()) {
                        Ok(b) => tag(b.remove_all(project, self.telemetry), place),
                        Err(e) => tag(vec![Outcome::failed("(all)", &e)], place),
                    })
                })
                .collect();
            running.into_iter().flat_map(|r| r.join().unwrap_or_default()).collect()
        });
        if outcomes.iter().all(Outcome::ok) {
            self.state.forget_project(project)?;
            self.state.journal(project, "remove", None, true, "removed");
        } else {
            self.state.journal(project, "remove", None, false, "some places failed");
        }
        Ok(outcomes)
    }
}

/// The per-host summary table, and whether every host succeeded.
pub fn summary(op: &str, outcomes: &[Outcome]) -> (String, bool) {
    let width = outcomes.iter().map(|o| o.label().len()).max().unwrap_or(4).max(4);
    let machines = outcomes.iter().filter(|o| !o.host.starts_with("switch ")).count();
    let mut s = format!("{op}: {machines} host{}\n", if machines == 1 { "" } else { "s" });
    let mut failed = 0;
    for o in outcomes {
        let word = match o.status {
            Status::Ok => "ok",
            Status::Warning => "WARNING",
            Status::Failed => {
                failed += 1;
                "FAILED"
            }
        };
        s += &format!("  {:width$}  {word:7} {}{}\n", o.label(), o.message, if o.retry { " (worth retrying)" } else { "" });
    }
    if failed > 0 {
        let n = outcomes.len();
        s += &format!("{failed} of {n} {} failed\n", if machines == n { if n == 1 { "host" } else { "hosts" } } else { "steps" });
    }
    (crate::term::escape_lines(&s).into_owned(), failed == 0)
}
