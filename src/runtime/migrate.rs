//! `migrate`: one host of a built project moved, running, to another
//! place. The receiving place prepares (its files, the switches it now
//! carries), the sending place sends (memory and the machine's own disks
//! go straight between the two), the receiving place takes the host into
//! its record; then the record here says where the host is, and every
//! place is brought to the project as it is now: the sender forgets the
//! host and its files, switches are joined anew where they gained or lost
//! a place.
//!
//! A marker in the project's directory says a move was begun, so a re-run
//! after an interruption (kill -9 included) first finds out where the
//! machine is: arrived (it is taken in and the rest finished), or still
//! at home (what the receiver prepared is removed and the move is done
//! again). There is one running copy at every moment: libvirt stops the
//! sender's only once the receiver's runs.

use super::{all_failed, share, tag, Runtime, RuntimeError};
use crate::machine::{Done, Machine, MachineError, Outcome, PowerState, UpgradeOptions};
use crate::plan::{Host, Plan};
use crate::state::{HostRecord, Phase, ProjectRecord};
use crate::upgrade::Class;

/// Where a move's time goes (`MLN_LOG=mln::migrate::timing=debug`): one
/// line per phase, in ms since the command began.
pub const TIMING: &str = "mln::migrate::timing";

fn phase(t0: std::time::Instant, what: &str) {
    tracing::debug!(target: TIMING, ms = t0.elapsed().as_millis() as u64, "{what}");
}

/// How a host moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveMode {
    /// Live while it runs between two service hosts; otherwise with its
    /// files (a running host frozen for the move and resumed there).
    Auto,
    /// While it runs: refused for a host that does not run.
    Live,
    /// With its files, as it is (running, saved or shut off).
    Cold,
}

impl Runtime<'_> {
    /// Moves `host` of `project` to the service host `to` (None: this
    /// machine). The outcomes: the host's, then any place's that failed to
    /// catch up.
    pub fn migrate(&self, project: &str, host: &str, to: Option<&str>, mode: MoveMode) -> Result<Vec<Outcome>, RuntimeError> {
        let _lock = self.state.lock(project)?;
        self.migrate_locked(project, host, to, mode)
    }

    /// `migrate`, the project's lock held by the caller.
    pub(super) fn migrate_locked(&self, project: &str, host: &str, to: Option<&str>, mode: MoveMode) -> Result<Vec<Outcome>, RuntimeError> {
        let t0 = std::time::Instant::now();
        let rec = self.state.require(project)?;
        if rec.phase == Phase::Building {
            return Err(RuntimeError::Refused(format!("project {project} is still being built: finish that first (mln build -f {})", rec.file)));
        }
        let h = rec
            .plan
            .hosts
            .iter()
            .find(|h| h.name == host)
            .ok_or_else(|| RuntimeError::Refused(format!("project {project} has no host {}", crate::term::escape(host))))?;
        let from = h.service_host.clone();
        let dest = to.map(str::to_string);
        let to_name = to.unwrap_or("this machine");
        let mut moved = h.clone();
        moved.service_host = dest.clone();
        let after = with_host(&rec.plan, &moved);
        let marker = marker_path(self.state, project, host)?;
        let pending = read_marker(&marker)?;
        if let Some(p) = pending.as_ref().filter(|p| p.to.as_deref() != to) {
            let named = p.to.as_deref().unwrap_or("this machine");
            return Err(RuntimeError::Refused(format!(
                "a move of {host} to {named} was begun and not finished: finish it first (mln migrate -p {project} -h {host} --to {})",
                p.to.as_deref().unwrap_or("local")
            )));
        }
        let label = |o: Outcome| tag(vec![o], &dest);

        if from == dest {
            // There already: what a run interrupted after the record left
            // undone (the place it left, switches) is finished now.
            let left = pending.map(|p| p.from).unwrap_or_else(|| from.clone());
            let before = with_host(&rec.plan, &Host { service_host: left.clone(), ..moved.clone() });
            let mut out = label(Outcome::of(host, Ok(Done::ok(format!("on {to_name} already")))));
            let behind = self.catch_up(&rec, &before, &after, &left);
            if behind.is_empty() {
                let _ = std::fs::remove_file(&marker);
            }
            out.extend(behind);
            return Ok(out);
        }
        let src = self.places.backend(from.as_deref())?;
        let dst = self.places.backend(dest.as_deref())?;
        let cold = match (&pending, mode) {
            (Some(p), _) => p.cold.is_some(),
            (None, MoveMode::Cold) => true,
            (None, MoveMode::Live) => false,
            // Live needs a libvirt daemon at both ends.
            (None, MoveMode::Auto) => from.is_none() || dest.is_none() || src.power()?.state(&Machine { project, host: h })? != PowerState::Running,
        };
        if cold {
            return self.move_cold(&rec, h, &moved, pending, &marker);
        }
        let Some(to) = to else {
            return Err(RuntimeError::Refused("a host moves live only to a service host (this machine's embedded libvirt cannot receive one)".into()));
        };
        let (sm, dm) = (src.migrate()?, dst.migrate()?);
        let incoming_share = self.share_at(&after, &dest);
        let m_here = Machine { project, host: h };
        let m_there = Machine { project, host: &moved };

        // A move begun before: where is the machine now?
        let mut arrived = false;
        if pending.is_some() {
            arrived = dm.finish_incoming(&incoming_share, &m_there, true).is_ok();
            if !arrived {
                // Still at home: what the receiver prepared goes first.
                let _ = dm.finish_incoming(&incoming_share, &m_there, false);
            }
        }
        if !arrived {
            // The sender, the receiver and the switch's other carriers are
            // reached at once (each its own SSH session and agent): what
            // each end is asked first changes nothing, so their order
            // does not matter, and a move costs the slowest of them, not
            // their sum. Each is bounded by its connect timeout.
            let only: Plan = Plan { hosts: vec![moved.clone()], ..incoming_share.clone() };
            let others: Vec<String> = rec.places.iter().filter(|p| Some(*p) != from.as_ref() && p.as_str() != to).cloned().collect();
            let (state, ready) = std::thread::scope(|s| {
                let sender = s.spawn(|| -> Result<PowerState, RuntimeError> {
                    let b = self.places.backend(from.as_deref())?;
                    // Reached first, once: the two calls below share it.
                    if let Some(f) = &from {
                        if let Some(Err(e)) = self.places.reach(std::slice::from_ref(f)).into_iter().next() {
                            return Err(e.into());
                        }
                    }
                    let state = b.power()?.state(&m_here)?;
                    phase(t0, "the sender reached, the host's state read");
                    // The sender's connections for the send are opened
                    // ahead, while the receiver is still being checked
                    // (they change nothing); a failure there is met
                    // again, and told, by the send. After the state check,
                    // not beside it: one agent process answers both in
                    // turn sooner than a second one starts.
                    if state == PowerState::Running {
                        let _ = b.migrate().and_then(|m| m.ready_to_send(&m_here));
                        phase(t0, "the sender ready to send");
                    }
                    Ok(state)
                });
                // Only warmed: one that cannot be reached now is told in
                // the widening and the catch-up, which do not stop a move.
                s.spawn(|| {
                    let _ = self.places.reach(&others);
                    phase(t0, "the switch's other carriers reached");
                });
                // The receiver gets what a build there would need first.
                let ready = self.places.before_build(&[(dest.clone(), only)], self.telemetry).into_iter().next().unwrap_or(Ok(()));
                phase(t0, "the receiver reached, its capacity and template checked");
                let state = sender.join().unwrap_or_else(|_| Err(RuntimeError::Refused("internal error: the sender's check panicked".into())));
                (state, ready)
            });
            match state? {
                PowerState::Running => {}
                s => {
                    return Err(RuntimeError::Refused(format!(
                        "{host} is {s} on {}: only a running host moves live (move it with its files: --cold)",
                        from.as_deref().unwrap_or("this machine")
                    )));
                }
            }
            if let Err(e) = ready {
                return Ok(label(Outcome::failed(host, &e)));
            }
            let address = self.places.address(dest.as_deref()).unwrap_or_default();
            // Recorded before anything is made there: the receiver is a
            // place of the project (so `remove` visits it), and the
            // marker says where the host goes from and to.
            if !rec.places.contains(&to.to_string()) {
                let mut places = rec.places.clone();
                places.push(to.to_string());
                self.state.save_project(&ProjectRecord { places, ..rec.clone() })?;
            }
            write_marker(&marker, &Move { from: from.clone(), to: dest.clone(), cold: None })?;
            // The other carriers widen while the receiver prepares: both
            // come after the marker, so a re-run (or the catch-up) brings
            // the switches back to the record whatever happens next.
            let prepared = std::thread::scope(|s| {
                s.spawn(|| {
                    self.widen(&rec, &moved);
                    phase(t0, "the switch's other carriers widened");
                });
                let p = dm.prepare_incoming(&incoming_share, &m_there, &address);
                phase(t0, "the receiver prepared (files, switch)");
                p
            });
            let incoming = match prepared {
                Ok(i) => i,
                Err(e) => {
                    let _ = dm.finish_incoming(&incoming_share, &m_there, false);
                    // The switches as they were (widened for nothing).
                    let _ = self.catch_up(&rec, &rec.plan, &rec.plan, &from);
                    let _ = std::fs::remove_file(&marker);
                    return Ok(label(Outcome::failed(host, &e)));
                }
            };
            self.telemetry.note(Some(host), &format!("moving live to {to}"));
            let sent = sm.send(&m_here, &incoming);
            phase(t0, "libvirt's migration returned");
            let (finished, early) = if sent.is_ok() {
                // It runs at the receiver now: while the receiver takes it
                // in, every other place catches up (the sender forgets it,
                // the switches' carriers drop the sender). The marker stays
                // until all of it is done, so an interruption anywhere is
                // finished by a re-run, which repeats the catch-up.
                std::thread::scope(|s| {
                    let early = s.spawn(|| {
                        let behind = self.catch_up_at(&rec, &rec.plan, &after, &from, |p| *p != dest);
                        phase(t0, "the other places caught up");
                        behind
                    });
                    let f = dm.finish_incoming(&incoming_share, &m_there, true);
                    phase(t0, "the receiver took the host in");
                    (f, Some(early.join().unwrap_or_else(|_| vec![Outcome::failed(host, &MachineError::Failed("internal error: the catch-up stopped; run the same command again".into()))])))
                })
            } else {
                (dm.finish_incoming(&incoming_share, &m_there, false), None)
            };
            match (sent, finished) {
                (Ok(_), Ok(_)) => {
                    debug_assert!(early.is_some());
                    let out = self.moved_after(&rec, &moved, &from, &marker, format!("moved live to {to}"), early);
                    phase(t0, "recorded, every place caught up");
                    return out;
                }
                (Err(e), Ok(_)) => {
                    // Still running at home; nothing of it is left there,
                    // and the switches are as they were.
                    let _ = self.catch_up(&rec, &rec.plan, &rec.plan, &from);
                    let _ = std::fs::remove_file(&marker);
                    self.state.journal(project, "migrate", Some(host), false, &e.to_string());
                    return Ok(tag(vec![Outcome::failed(host, &e)], &from));
                }
                (Err(e), Err(f)) => {
                    // The send failed, yet the receiver would not let go
                    // (it may have arrived after all): the marker stays,
                    // and a re-run finds out where it is.
                    return Ok(label(Outcome::failed(host, &MachineError::Failed(format!("{e}; and {to} says: {f}; run the same command again")))));
                }
                (Ok(_), Err(e)) => {
                    // Sent, but the receiver could not take it in: the
                    // marker stays, and a re-run finds it there.
                    return Ok(label(Outcome::failed(host, &MachineError::Failed(format!("sent to {to}, but: {e}; run the same command again")))));
                }
            }
        }
        debug_assert!(arrived);
        let out = self.moved(&rec, &moved, &from, &marker, format!("moved live to {to}"));
        phase(t0, "recorded, every place caught up");
        out
    }

    /// The host has arrived at its new place: the record here says so,
    /// then every place catches up with that; the marker goes only when
    /// they all did.
    pub(super) fn moved(&self, rec: &ProjectRecord, moved: &Host, from: &Option<String>, marker: &std::path::Path, message: String) -> Result<Vec<Outcome>, RuntimeError> {
        self.moved_after(rec, moved, from, marker, message, None)
    }

    /// `moved`, every place but the receiver caught up already when
    /// `early` holds what failed of that.
    fn moved_after(&self, rec: &ProjectRecord, moved: &Host, from: &Option<String>, marker: &std::path::Path, message: String, early: Option<Vec<Outcome>>) -> Result<Vec<Outcome>, RuntimeError> {
        let (project, host, dest) = (rec.name.as_str(), moved.name.as_str(), moved.service_host.clone());
        let after = with_host(&rec.plan, moved);
        let mut places = rec.places.clone();
        if let Some(to) = &dest {
            if !places.contains(to) {
                places.push(to.clone());
            }
        }
        let now = ProjectRecord { plan: after.clone(), places, ..rec.clone() };
        self.state.save_project(&now)?;
        self.state.record_hosts(project, &[HostRecord { host: host.to_string(), place: dest.clone(), phase: Phase::Built }])?;
        self.state.journal(project, "migrate", Some(host), true, &format!("to {}", dest.as_deref().unwrap_or("this machine")));
        tracing::debug!(target: TIMING, "recorded here");
        let mut out = tag(vec![Outcome::of(host, Ok(Done::ok(message)))], &dest);
        let behind = match early {
            None => self.catch_up(&now, &rec.plan, &after, from),
            Some(mut behind) => {
                // A receiver that held nothing else of the project recorded
                // its whole share when it took the host in (the same share
                // the catch-up would send): nothing is left to do there.
                if !self.share_at(&rec.plan, &dest).hosts.is_empty() {
                    behind.extend(self.catch_up_at(&now, &rec.plan, &after, from, |p| *p == dest));
                }
                behind
            }
        };
        if behind.is_empty() {
            let _ = std::fs::remove_file(marker);
        }
        out.extend(behind);
        Ok(out)
    }

    /// Hosts of `project` whose move was begun and not finished.
    pub(super) fn unfinished_moves(&self, project: &str) -> Vec<(String, String)> {
        let Ok(dir) = self.state.project_dir(project) else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_prefix(MARKER)?.to_string();
                let m = read_marker(&e.path()).ok()??;
                Some((name, m.to.unwrap_or_else(|| "local".into())))
            })
            .collect()
    }

    /// Refused while a move is unfinished: another command could take the
    /// moving host for removed or missing at one of its places.
    pub(super) fn no_unfinished_moves(&self, project: &str, except: &[String]) -> Result<(), RuntimeError> {
        match self.unfinished_moves(project).into_iter().find(|(h, _)| !except.contains(h)) {
            Some((h, to)) => Err(RuntimeError::Refused(format!(
                "a move of {h} to {to} was begun and not finished: finish it first (mln migrate -p {project} -h {h} --to {to})"
            ))),
            None => Ok(()),
        }
    }

    /// A place's share of `plan`, its switches joined as every place's
    /// share of `plan` has them.
    pub(super) fn share_at(&self, plan: &Plan, place: &Option<String>) -> Plan {
        let mut shares = self.shares(plan);
        let i = shares.iter().position(|(p, _)| p == place);
        match i {
            Some(i) => shares.swap_remove(i).1,
            None => share(plan, &[]),
        }
    }

    fn shares(&self, plan: &Plan) -> Vec<(Option<String>, Plan)> {
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        let mut shares: Vec<(Option<String>, Plan)> = super::by_place(&hosts).into_iter().map(|(p, hs)| (p, share(plan, &hs))).collect();
        self.places.join_segments(&mut shares, self.telemetry);
        shares
    }

    /// Before the machine changes places: every other place that carries
    /// one of the project's switches reaches the receiver too (and still
    /// the sender), so that frames find the machine on either side of the
    /// switch-over instead of waiting for the catch-up after it. A place
    /// that fails is only noted: the catch-up joins it anyway.
    pub(super) fn widen(&self, rec: &ProjectRecord, moved: &Host) {
        let dest = moved.service_host.clone();
        let hosts: Vec<&Host> = rec.plan.hosts.iter().chain(std::iter::once(moved)).collect();
        let mut during: Vec<(Option<String>, Plan)> = super::by_place(&hosts).into_iter().map(|(p, hs)| (p, share(&rec.plan, &hs))).collect();
        self.places.join_segments(&mut during, &crate::progress::Quiet);
        let old = self.shares(&rec.plan);
        let changed: Vec<(Option<String>, Plan, Plan)> = during
            .into_iter()
            .filter(|(p, _)| *p != dest)
            .filter_map(|(p, d)| {
                let o = old.iter().find(|(q, _)| *q == p).map(|(_, s)| s.clone())?;
                (o.switches != d.switches).then_some((p, o, d))
            })
            .collect();
        std::thread::scope(|s| {
            for (p, o, d) in &changed {
                s.spawn(move || {
                    let classes: Vec<(String, Class)> = o.hosts.iter().map(|h| (h.name.clone(), Class::Unchanged)).collect();
                    let failed = match self.places.backend(p.as_deref()) {
                        Ok(b) => b.upgrade_all(o, d, &classes, &UpgradeOptions::default(), &crate::progress::Quiet).into_iter().find(|o| !o.ok()).map(|o| o.message),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(why) = failed {
                        self.telemetry.note(None, &format!("{}: the switch could not be widened before the move ({why})", p.as_deref().unwrap_or("this machine")));
                    }
                });
            }
        });
    }

    /// Every place brought to `after` from `before`: the one the host
    /// left forgets it (domain and files), switches are joined anew. A
    /// service host compares with its own record, so a re-run finishes
    /// what an interrupted one left. Returns the failures only.
    pub(super) fn catch_up(&self, rec: &ProjectRecord, before: &Plan, after: &Plan, left: &Option<String>) -> Vec<Outcome> {
        self.catch_up_at(rec, before, after, left, |_| true)
    }

    /// `catch_up` at the places `which` takes only.
    fn catch_up_at(&self, rec: &ProjectRecord, before: &Plan, after: &Plan, left: &Option<String>, which: impl Fn(&Option<String>) -> bool) -> Vec<Outcome> {
        let (old, new) = (self.shares(before), self.shares(after));
        let mut places: Vec<Option<String>> = rec.places.iter().cloned().map(Some).collect();
        for p in old.iter().chain(&new).map(|(p, _)| p.clone()) {
            if !places.contains(&p) {
                places.push(p);
            }
        }
        if !places.contains(left) {
            places.push(left.clone());
        }
        places.retain(|p| which(p));
        let find = |shares: &[(Option<String>, Plan)], p: &Option<String>| shares.iter().find(|(q, _)| q == p).map(|(_, s)| s.clone()).unwrap_or_else(|| share(after, &[]));
        std::thread::scope(|s| {
            let running: Vec<_> = places
                .iter()
                .map(|p| {
                    let (o, n) = (find(&old, p), find(&new, p));
                    s.spawn(move || {
                        let classes: Vec<(String, Class)> = o
                            .hosts
                            .iter()
                            .map(|h| (h.name.clone(), if n.hosts.iter().any(|x| x.name == h.name) { Class::Unchanged } else { Class::Remove }))
                            .chain(n.hosts.iter().filter(|h| !o.hosts.iter().any(|x| x.name == h.name)).map(|h| (h.name.clone(), Class::Unchanged)))
                            .collect();
                        match self.places.backend(p.as_deref()) {
                            Ok(b) => tag(b.upgrade_all(&o, &n, &classes, &UpgradeOptions::default(), self.telemetry), p),
                            Err(e) => all_failed(&o.hosts.iter().collect::<Vec<_>>(), p, &e),
                        }
                    })
                })
                .collect();
            running.into_iter().flat_map(|r| r.join().unwrap_or_default()).filter(|o| !o.ok()).collect()
        })
    }

    /// On the receiving place: make ready for `host` (an agent's part of a
    /// move).
    pub fn receive(&self, plan: &Plan, host: &str, address: &str) -> Result<crate::machine::Incoming, RuntimeError> {
        crate::name::check_plan(plan).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        let _lock = self.state.lock(&plan.project)?;
        let h = one_host(plan, host)?;
        let b = self.places.backend(None)?;
        Ok(b.migrate()?.prepare_incoming(plan, &Machine { project: &plan.project, host: h }, address)?)
    }

    /// On the receiving place: the move ended; if the host arrived it is
    /// taken into this place's record (its share, switches as given).
    pub fn arrived(&self, plan: &Plan, host: &str, arrived: bool) -> Result<Done, RuntimeError> {
        crate::name::check_plan(plan).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        let _lock = self.state.lock(&plan.project)?;
        let h = one_host(plan, host)?;
        let b = self.places.backend(None)?;
        let done = b.migrate()?.finish_incoming(plan, &Machine { project: &plan.project, host: h }, arrived)?;
        if !arrived && self.state.project(&plan.project)?.is_none() {
            // Nothing else of the project here: the switches made ready
            // for it go too.
            let failed: Vec<String> = b.provision()?.finish_remove(&plan.project).into_iter().filter(|o| !o.ok()).map(|o| o.message).collect();
            if !failed.is_empty() {
                return Err(RuntimeError::Machine(MachineError::Failed(failed.join("; "))));
            }
        }
        if arrived {
            self.take_in(plan, h)?;
        }
        Ok(done)
    }

    /// A host arrived here from another place: into this place's record
    /// (its share; switches as the plan sent gives them).
    pub(super) fn take_in(&self, plan: &Plan, h: &Host) -> Result<(), RuntimeError> {
        let host = h.name.as_str();
        {
            let rec = match self.state.project(&plan.project)? {
                Some(mut rec) => {
                    rec.plan = with_host(&rec.plan, h);
                    for sw in &plan.switches {
                        match rec.plan.switches.iter_mut().find(|s| s.name == sw.name) {
                            Some(s) => *s = sw.clone(),
                            None => rec.plan.switches.push(sw.clone()),
                        }
                    }
                    rec
                }
                None => ProjectRecord {
                    name: plan.project.clone(),
                    phase: Phase::Built,
                    file: String::new(),
                    connect: self.places.local_uri(),
                    plan: Plan { hooks: Default::default(), ..plan.clone() },
                    places: vec![],
                },
            };
            self.state.save_project(&rec)?;
            self.state.record_hosts(&plan.project, &[HostRecord { host: host.to_string(), place: None, phase: Phase::Built }])?;
        }
        Ok(())
    }
}

/// A move begun: where from and where to (None: this machine); for a
/// move with its files, how the host is to be at the end and, once it is
/// packed, its parcel.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Move {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdMove>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ColdMove {
    pub then: PowerState,
    pub parcel: Option<crate::machine::Parcel>,
}

/// The marker's name starts with a dot: no host's directory can.
const MARKER: &str = ".moving-";

fn marker_path(state: &crate::state::State, project: &str, host: &str) -> Result<std::path::PathBuf, RuntimeError> {
    Ok(state.project_dir(project)?.join(format!("{MARKER}{host}")))
}

fn read_marker(path: &std::path::Path) -> Result<Option<Move>, RuntimeError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| RuntimeError::Refused(format!("{} is unreadable ({e}): remove it once you know where the host is", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::Refused(format!("cannot read {}: {e}", path.display()))),
    }
}

pub(super) fn write_marker(path: &std::path::Path, m: &Move) -> Result<(), RuntimeError> {
    let dir = path.parent().expect("a project directory has a parent");
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(path, serde_json::to_vec(m).expect("a move serializes")))
        .map_err(|e| RuntimeError::Refused(format!("cannot write {}: {e}", path.display())))
}

/// `plan` with `h` in place of the host of its name (or added).
pub(super) fn with_host(plan: &Plan, h: &Host) -> Plan {
    let mut p = plan.clone();
    match p.hosts.iter_mut().find(|x| x.name == h.name) {
        Some(x) => *x = h.clone(),
        None => p.hosts.push(h.clone()),
    }
    p
}

pub(super) fn one_host<'p>(plan: &'p Plan, host: &str) -> Result<&'p Host, RuntimeError> {
    plan.hosts.iter().find(|h| h.name == host).ok_or_else(|| RuntimeError::Refused(format!("the plan sent has no host {}", crate::term::escape(host))))
}
