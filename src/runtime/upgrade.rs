//! `upgrade`: a built project brought to a new plan, host by host, through
//! the same places and machines as a build. The comparison is
//! `crate::upgrade`'s; here each place gets its part at once (a service
//! host's agent runs this same code on its share), and the record says
//! after each run what is deployed: a host whose change failed keeps its
//! old entry, so a re-run tries it again and nothing is done twice.

use super::{all_failed, by_place, share, tag, Runtime, RuntimeError};
use crate::machine::{Outcome, UpgradeOptions};
use crate::plan::{Host, Plan};
use crate::state::{HostRecord, Phase, ProjectRecord};
use crate::upgrade::{Class, Upgrade};
use std::path::Path;

impl Runtime<'_> {
    /// Applies `new` to the project it names, built before; returns what
    /// was compared and each changed host's outcome.
    pub fn upgrade(&self, new: &Plan, file: &Path, opts: &UpgradeOptions) -> Result<(Upgrade, Vec<Outcome>), RuntimeError> {
        self.upgrade_share(&new.project, Some((new, file)), opts, false)
    }

    /// Brings built hosts back to the recorded plan: their configuration
    /// written anew (seed, or filesystem template), their definition too,
    /// running ones restarted to apply it.
    pub fn reconfigure(&self, project: &str, only: &[String]) -> Result<Vec<Outcome>, RuntimeError> {
        let rec = self.state.require(project)?;
        let hosts: Vec<String> = self.chosen(&rec, only)?.iter().map(|h| h.name.clone()).collect();
        let opts = UpgradeOptions { reconfigure: hosts, ..Default::default() };
        // The plan is read again under the lock: an upgrade finished in
        // between is not undone.
        Ok(self.upgrade_share(project, None, &opts, false)?.1)
    }

    /// `upgrade` of a service host's share: a host that has none of the
    /// project yet builds it (its first hosts are new).
    pub fn upgrade_or_build(&self, new: &Plan, file: &Path, opts: &UpgradeOptions) -> Result<(Upgrade, Vec<Outcome>), RuntimeError> {
        self.upgrade_share(&new.project, Some((new, file)), opts, true)
    }

    /// `to`: the new plan and its file; None: the recorded ones, as read
    /// under the lock.
    fn upgrade_share(&self, project: &str, to: Option<(&Plan, &Path)>, opts: &UpgradeOptions, or_build: bool) -> Result<(Upgrade, Vec<Outcome>), RuntimeError> {
        if let Some((new, _)) = to {
            crate::name::check_plan(new).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        }
        let _lock = self.state.lock(project)?;
        // A host being moved by this upgrade (`-l`) finishes its move here.
        self.no_unfinished_moves(project, &opts.live)?;
        let rec = match (self.state.project(project)?, to) {
            (Some(rec), _) => rec,
            (None, Some((new, file))) if or_build && !new.hosts.is_empty() => {
                let mut outcomes = self.build_locked(new, file, Default::default())?;
                if opts.start_changed {
                    let built: Vec<&Host> = new.hosts.iter().filter(|h| outcomes.iter().any(|o| o.host == h.name && o.ok())).collect();
                    let started = self.per_place(&built, |b, hs| b.start_all(&new.project, hs, self.telemetry));
                    for s in started {
                        if let Some(o) = outcomes.iter_mut().find(|o| o.host == s.host) {
                            o.message = format!("{}; {}", o.message, s.message);
                            if !s.ok() {
                                o.status = s.status;
                                o.retry = s.retry;
                            }
                        }
                    }
                }
                let u = crate::upgrade::diff(&Plan { hosts: vec![], ..new.clone() }, new).map_err(RuntimeError::Upgrade)?;
                return Ok((u, outcomes));
            }
            // A share with nothing, where nothing is: nothing to do.
            (None, Some((new, _))) if or_build => return Ok((crate::upgrade::diff(new, new).map_err(RuntimeError::Upgrade)?, Vec::new())),
            (None, _) => return Err(crate::state::StateError::NoProject(project.to_string()).into()),
        };
        let (recorded_plan, recorded_file) = (rec.plan.clone(), std::path::PathBuf::from(&rec.file));
        let (new, file): (&Plan, &Path) = match to {
            Some(t) => t,
            None => (&recorded_plan, &recorded_file),
        };
        if rec.phase == Phase::Building {
            return Err(RuntimeError::Refused(format!("project {} is still being built: finish that first (mln build -f {})", rec.name, rec.file)));
        }
        let mut u = crate::upgrade::diff(&rec.plan, new).map_err(RuntimeError::Upgrade)?;
        // Hosts that move go first, each as `mln migrate` moves it (live
        // when asked with `-l`, or when it runs between two service hosts;
        // with its files otherwise); the rest of their change is then an
        // upgrade like any other.
        let mut outcomes: Vec<Outcome> = Vec::new();
        let moving: Vec<(String, Option<String>)> = u
            .hosts
            .iter()
            .filter(|d| d.class == Class::Migrate)
            .map(|d| (d.host.clone(), new.hosts.iter().find(|h| h.name == d.host).and_then(|h| h.service_host.clone())))
            .collect();
        let rec = if moving.is_empty() {
            rec
        } else {
            for (h, to) in &moving {
                let mode = if opts.live.contains(h) { super::MoveMode::Live } else { super::MoveMode::Auto };
                let moved = self.migrate_locked(project, h, to.as_deref(), mode);
                match moved {
                    Ok(o) => outcomes.extend(o),
                    Err(e) => outcomes.push(Outcome::failed(h, &crate::machine::MachineError::from(e))),
                }
            }
            let rec = self.state.require(project)?;
            u = crate::upgrade::diff(&rec.plan, new).map_err(RuntimeError::Upgrade)?;
            rec
        };
        for d in u.hosts.iter_mut().filter(|d| d.class == Class::Unchanged && opts.reconfigure.contains(&d.host)) {
            d.class = Class::GuestConfig;
            d.why = "configured again from the recorded plan".into();
        }
        let u = u;
        // A moving host stays where it is, as it is, in every share (an
        // agent must not take it for removed): unchanged there.
        let classes: std::collections::HashMap<&str, Class> = u.hosts.iter().map(|d| (d.host.as_str(), d.class)).collect();
        let class_of = |h: &str| match classes.get(h).copied().unwrap_or(Class::Unchanged) {
            Class::Migrate => Class::Unchanged,
            c => c,
        };
        // A host that moves stays where it is, as it was, for now.
        let moving: Vec<&str> = u.hosts.iter().filter(|d| d.class == Class::Migrate).map(|d| d.host.as_str()).collect();
        let told: Vec<String> = outcomes.iter().map(|o| o.host.clone()).collect();
        for h in moving.iter().filter(|h| !told.iter().any(|t| t == *h)) {
            let from = rec.plan.hosts.iter().find(|x| x.name == *h).and_then(|x| x.service_host.clone());
            outcomes.extend(tag(
                vec![Outcome::failed(h, &crate::machine::MachineError::Failed("it moves to another place, and did not move".into()))],
                &from,
            ));
        }
        let old_hosts: Vec<&Host> = rec.plan.hosts.iter().collect();
        let mut new_hosts: Vec<&Host> = new.hosts.iter().filter(|h| !moving.contains(&h.name.as_str())).collect();
        new_hosts.extend(rec.plan.hosts.iter().filter(|h| moving.contains(&h.name.as_str())));
        let (old_places, new_places) = (by_place(&old_hosts), by_place(&new_hosts));
        let mut places: Vec<Option<String>> = old_places.keys().cloned().collect();
        places.extend(new_places.keys().filter(|p| !old_places.contains_key(*p)).cloned());
        // The new place's share is recorded before anything is made there.
        let mut recorded = rec.places.clone();
        for p in places.iter().flatten() {
            if !recorded.contains(p) {
                recorded.push(p.clone());
            }
        }
        self.state.save_project(&ProjectRecord { places: recorded.clone(), ..rec.clone() })?;
        // Each place's share before and after, its switches joined to the
        // same switches elsewhere as they were and as they are to be: a
        // place whose hosts stay as they are still gets its part when a
        // switch of its gains or loses another place.
        let joined = |plan: &Plan, at: &indexmap::IndexMap<Option<String>, Vec<&Host>>, t: &dyn crate::progress::Telemetry| {
            let mut shares: Vec<(Option<String>, Plan)> = places.iter().map(|p| (p.clone(), share(plan, at.get(p).map(Vec::as_slice).unwrap_or(&[])))).collect();
            self.places.join_segments(&mut shares, t);
            shares.into_iter().map(|(_, s)| s)
        };
        let parts: Vec<Part> = places
            .iter()
            .zip(joined(&rec.plan, &old_places, &crate::progress::Quiet).zip(joined(new, &new_places, self.telemetry)))
            .map(|(p, (old, new))| {
                let mut names: Vec<&str> = old.hosts.iter().map(|h| h.name.as_str()).collect();
                names.extend(new.hosts.iter().map(|h| h.name.as_str()).filter(|h| !old.hosts.iter().any(|x| x.name == *h)));
                let classes = names.into_iter().map(|h| (h.to_string(), class_of(h))).collect();
                Part { place: p.clone(), old, new, classes }
            })
            .collect();
        // Places that get new hosts get what a build needs first (the
        // templates they lack).
        let adding: Vec<(Option<String>, Plan)> = parts
            .iter()
            .filter(|p| p.classes.iter().any(|(_, c)| *c == Class::Add))
            .map(|p| {
                let mut only = p.new.clone();
                only.hosts.retain(|h| p.classes.iter().any(|(x, c)| *x == h.name && *c == Class::Add));
                (p.place.clone(), only)
            })
            .collect();
        let ready = self.places.before_build(&adding, self.telemetry);
        std::thread::scope(|s| {
            let running: Vec<_> = parts
                .iter()
                .map(|part| {
                    let not_ready = adding.iter().zip(&ready).find(|((p, _), _)| *p == part.place).and_then(|(_, r)| r.as_ref().err().cloned());
                    s.spawn(move || {
                        let changed = part.changed();
                        if changed.is_empty() && part.old.switches == part.new.switches {
                            return Vec::new();
                        }
                        if let Some(e) = not_ready {
                            return all_failed(&changed, &part.place, &e);
                        }
                        match self.places.backend(part.place.as_deref()) {
                            Ok(b) => tag(b.upgrade_all(&part.old, &part.new, &part.classes, opts, self.telemetry), &part.place),
                            Err(e) => all_failed(&changed, &part.place, &e),
                        }
                    })
                })
                .collect();
            for (r, part) in running.into_iter().zip(&parts) {
                match r.join() {
                    Ok(got) => outcomes.extend(got),
                    // Whatever that place did is unknown: none of its
                    // changes counts as made.
                    Err(_) => outcomes.extend(all_failed(
                        &part.changed(),
                        &part.place,
                        &crate::machine::MachineError::Failed("the work on this place stopped unexpectedly".into()),
                    )),
                }
            }
        });
        self.record_upgrade(&rec, new, file, &u, &outcomes, recorded)?;
        Ok((u, outcomes))
    }

    /// What is deployed now: the new plan's entries for hosts whose change
    /// worked (or that had none), the old ones for the rest; an added host
    /// that failed is left out, so the next run builds it again.
    fn record_upgrade(&self, rec: &ProjectRecord, new: &Plan, file: &Path, u: &Upgrade, outcomes: &[Outcome], places: Vec<String>) -> Result<(), RuntimeError> {
        // A changed host worked when it has outcomes and all are ok (no
        // outcome at all: nothing is known to have been done).
        let mut all_ok: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for o in outcomes {
            *all_ok.entry(o.host.as_str()).or_insert(true) &= o.ok();
        }
        let worked = |h: &str, class: Class| class == Class::Unchanged || all_ok.get(h).copied().unwrap_or(false);
        let (old_at, new_at) = (rec.plan.hosts_by_name(), new.hosts_by_name());
        let order: std::collections::HashMap<&str, usize> = new.hosts.iter().enumerate().map(|(i, h)| (h.name.as_str(), i)).collect();
        let mut plan = new.clone();
        plan.hosts.clear();
        let mut gone = Vec::new();
        for d in &u.hosts {
            let old = old_at.get(d.host.as_str()).copied();
            let newh = new_at.get(d.host.as_str()).copied();
            match (d.class, worked(&d.host, d.class)) {
                (Class::Remove, true) => gone.push(d.host.clone()),
                (Class::Add, false) => {}
                (_, true) => plan.hosts.extend(newh.cloned()),
                (_, false) => plan.hosts.extend(old.cloned()),
            }
        }
        // Plan order: the new file's, then hosts kept from the old one.
        plan.hosts.sort_by_key(|h| order.get(h.name.as_str()).copied().unwrap_or(usize::MAX));
        let ok = outcomes.iter().all(Outcome::ok);
        if plan.hosts.is_empty() && ok {
            // A service host whose whole share went away.
            self.state.forget_project(&rec.name)?;
            return Ok(());
        }
        self.state.save_project(&ProjectRecord {
            name: rec.name.clone(),
            phase: rec.phase,
            file: if ok { file.display().to_string() } else { rec.file.clone() },
            connect: rec.connect.clone(),
            plan: plan.clone(),
            places,
        })?;
        let phases: std::collections::HashMap<String, Phase> = self.state.hosts(&rec.name)?.into_iter().map(|h| (h.host, h.phase)).collect();
        let records: Vec<HostRecord> = plan
            .hosts
            .iter()
            .map(|h| HostRecord { host: h.name.clone(), place: h.service_host.clone(), phase: phases.get(&h.name).copied().unwrap_or(Phase::Built) })
            .collect();
        self.state.record_hosts(&rec.name, &records)?;
        self.state.forget_hosts(&rec.name, &gone)?;
        let changed = u.hosts.iter().filter(|d| d.class != Class::Unchanged).count();
        let failed = outcomes.iter().filter(|o| !o.ok()).count();
        self.state.journal(&rec.name, "upgrade", None, ok, &format!("{changed} hosts changed, {failed} failed"));
        Ok(())
    }
}

/// One place's part of an upgrade: its share as built and as it is to be,
/// and each of its hosts' class.
struct Part {
    place: Option<String>,
    old: Plan,
    new: Plan,
    classes: Vec<(String, Class)>,
}

impl Part {
    /// The hosts something is done to, each once: changed or added ones as
    /// they are to be, removed ones as they were.
    fn changed(&self) -> Vec<&Host> {
        let classes: std::collections::HashMap<&str, Class> = self.classes.iter().map(|(h, c)| (h.as_str(), *c)).collect();
        let class = |h: &Host| classes.get(h.name.as_str()).copied().unwrap_or(Class::Unchanged);
        let mut out: Vec<&Host> = self.new.hosts.iter().filter(|h| class(h) != Class::Unchanged).collect();
        out.extend(self.old.hosts.iter().filter(|h| class(h) == Class::Remove));
        out
    }
}
