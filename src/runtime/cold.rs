//! A host moved with its files (a cold move): the sending place packs it
//! (a running or saved host's memory to a file: nothing of it runs), the
//! receiving place makes ready, the files are carried and checked, the
//! receiving place unpacks it (defined, and running or saved again as it
//! was) and takes it into its record; then the record here says where it
//! is and every place catches up (the sender forgets it).
//!
//! The marker of the move holds how the host is to be at the end and,
//! once packed, its parcel: a re-run after an interruption (kill -9
//! included) first asks the receiver to unpack (done if the files are all
//! there), and otherwise does the move again from the packed host, so
//! there is one copy of the machine, and it runs only at one place.

use super::migrate::{one_host, with_host, write_marker, ColdMove, Move};
use super::{tag, Runtime, RuntimeError};
use crate::machine::{Done, Machine, MachineError, Outcome, Parcel, PowerState};
use crate::plan::{Host, Plan};
use crate::state::ProjectRecord;

impl Runtime<'_> {
    pub(super) fn move_cold(&self, rec: &ProjectRecord, h: &Host, moved: &Host, pending: Option<Move>, marker: &std::path::Path) -> Result<Vec<Outcome>, RuntimeError> {
        let (project, host) = (rec.name.as_str(), h.name.as_str());
        let (from, dest) = (h.service_host.clone(), moved.service_host.clone());
        let named = |p: &Option<String>| p.clone().unwrap_or_else(|| "this machine".into());
        let after = with_host(&rec.plan, moved);
        let src = self.places.backend(from.as_deref())?;
        let dst = self.places.backend(dest.as_deref())?;
        let (sr, dr) = (src.relocate()?, dst.relocate()?);
        let share = self.share_at(&after, &dest);
        let (m_here, m_there) = (Machine { project, host: h }, Machine { project, host: moved });
        let label = |o: Outcome| tag(vec![o], &dest);

        let begun = pending.and_then(|p| p.cold);
        if let Some(parcel) = begun.as_ref().and_then(|c| c.parcel.as_ref()) {
            // Unpacked there, or all its files there: it has arrived.
            if let Ok(done) = dr.unpack(&share, &m_there, parcel) {
                return self.moved(rec, moved, &from, marker, format!("moved with its files to {} ({})", named(&dest), done.message));
            }
        }
        let then = match &begun {
            Some(c) => c.then,
            None => match src.power()?.state(&m_here)? {
                PowerState::Absent => return Err(RuntimeError::Refused(format!("{host} is not built on {}", named(&from)))),
                s => s,
            },
        };
        // The receiver gets what a build there would need first (its
        // templates).
        let only = Plan { hosts: vec![moved.clone()], ..share.clone() };
        if let Some(Err(e)) = self.places.before_build(&[(dest.clone(), only)], self.telemetry).into_iter().next() {
            return Ok(label(Outcome::failed(host, &e)));
        }
        // The receiver is a place of the project before anything is made
        // there (so `remove` visits it).
        if let Some(to) = &dest {
            if !rec.places.contains(to) {
                let mut places = rec.places.clone();
                places.push(to.clone());
                self.state.save_project(&ProjectRecord { places, ..rec.clone() })?;
            }
        }
        let mark = |parcel: Option<Parcel>| write_marker(marker, &Move { from: from.clone(), to: dest.clone(), cold: Some(ColdMove { then, parcel }) });
        mark(None)?;
        self.telemetry.note(Some(host), &format!("moving to {} with its files ({then})", named(&dest)));
        let parcel = match sr.pack(&m_here, then) {
            Ok(p) => p,
            Err(e) => {
                // Perhaps packed halfway: as it was.
                let home = sr.unpack_home(&m_here, &Parcel { files: vec![], definition: String::new(), dir: Default::default(), templates: Default::default(), then, memory: None });
                if home.is_ok() {
                    let _ = std::fs::remove_file(marker);
                }
                return Ok(tag(vec![Outcome::failed(host, &e)], &from));
            }
        };
        mark(Some(parcel.clone()))?;
        let size: u64 = parcel.files.iter().map(|f| f.size).sum();
        self.telemetry.note(Some(host), &format!("packed: {} files, {} MiB", parcel.files.len(), size.div_ceil(1 << 20)));
        let result = dr.make_ready(&share, &m_there, &parcel).and_then(|_| self.places.carry(from.as_deref(), dest.as_deref(), project, host, &parcel.files)).and_then(|_| {
            self.widen(rec, moved);
            dr.unpack(&share, &m_there, &parcel)
        });
        match result {
            Ok(done) => self.moved(rec, moved, &from, marker, format!("moved with its files to {} ({})", named(&dest), done.message)),
            Err(e) => match dr.discard(&share, &m_there) {
                Ok(_) => {
                    let home = sr.unpack_home(&m_here, &parcel);
                    let _ = self.catch_up(rec, &rec.plan, &rec.plan, &from);
                    self.state.journal(project, "migrate", Some(host), false, &e.to_string());
                    let e = match home {
                        Ok(_) => {
                            let _ = std::fs::remove_file(marker);
                            e.map_message(|m| format!("{m}; it stays on {}, {then}", named(&from)))
                        }
                        Err(f) => MachineError::Failed(format!("{e}; and it could not be brought back ({f}): run the same command again")),
                    };
                    Ok(tag(vec![Outcome::failed(host, &e)], &from))
                }
                // Defined there after all: the marker stays, and a re-run
                // finishes there.
                Err(f) => Ok(label(Outcome::failed(host, &MachineError::Failed(format!("{e}; and {} says: {f}; run the same command again", named(&dest)))))),
            },
        }
    }

    /// At the sending place (an agent's part of a cold move).
    pub fn pack_here(&self, project: &str, host: &str, then: PowerState) -> Result<Parcel, RuntimeError> {
        let _lock = self.state.lock(project)?;
        let rec = self.state.require(project)?;
        let h = one_host(&rec.plan, host)?;
        Ok(self.places.backend(None)?.relocate()?.pack(&Machine { project, host: h }, then)?)
    }

    /// At the sending place, after a failed move.
    pub fn home_here(&self, project: &str, host: &str, parcel: &Parcel) -> Result<Done, RuntimeError> {
        let _lock = self.state.lock(project)?;
        let rec = self.state.require(project)?;
        let h = one_host(&rec.plan, host)?;
        Ok(self.places.backend(None)?.relocate()?.unpack_home(&Machine { project, host: h }, parcel)?)
    }

    /// At the receiving place: make ready for the parcel.
    pub fn ready_here(&self, plan: &Plan, host: &str, parcel: &Parcel) -> Result<Done, RuntimeError> {
        crate::name::check_plan(plan).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        let _lock = self.state.lock(&plan.project)?;
        let h = one_host(plan, host)?;
        Ok(self.places.backend(None)?.relocate()?.make_ready(plan, &Machine { project: &plan.project, host: h }, parcel)?)
    }

    /// At the receiving place: unpack, and take the host in.
    pub fn unpack_here(&self, plan: &Plan, host: &str, parcel: &Parcel) -> Result<Done, RuntimeError> {
        crate::name::check_plan(plan).map_err(|e| RuntimeError::Refused(format!("refusing the plan: {e}")))?;
        let _lock = self.state.lock(&plan.project)?;
        let h = one_host(plan, host)?;
        let done = self.places.backend(None)?.relocate()?.unpack(plan, &Machine { project: &plan.project, host: h }, parcel)?;
        self.take_in(plan, h)?;
        Ok(done)
    }
}
