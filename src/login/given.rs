//! A build on a service host with the managing machine's keys
//! (book/src/login.md, "Guests on a service host").
//!
//! The keys are written into the project's `login/`, which a removal of
//! the project takes with it. A replacing build (`mln build -r`) whose
//! removal from the managing machine failed finds the old project still
//! here and would remove it itself, after the keys were taken, and the
//! guests would get keys made here. So the old project is removed first,
//! the keys taken after, and where that removal fails nothing is built:
//! the guests get the project's keys or are not built at all (a re-run
//! builds them).

use crate::machine::{BuildOptions, MachineError, Outcome};
use crate::plan::Plan;
use crate::runtime::{Runtime, RuntimeError};
use std::path::Path;

/// Builds `plan` here with the keys `give` writes. `give` runs once, after
/// any removal and before anything is built.
pub fn build(rt: &Runtime, plan: &Plan, file: &Path, opts: BuildOptions, give: impl FnOnce() -> Result<(), MachineError>) -> Result<Vec<Outcome>, RuntimeError> {
    let mut outcomes = Vec::new();
    if opts.replace && rt.state.project(&plan.project)?.is_some() {
        let removed = rt.remove(&plan.project)?;
        if removed.iter().any(|o| !o.ok()) {
            let why = MachineError::Failed("not built: the project's earlier build here could not be removed (see above); run the build again".into());
            outcomes.extend(removed.into_iter().filter(|o| !o.ok()));
            outcomes.extend(plan.hosts.iter().map(|h| Outcome::failed(&h.name, &why)));
            return Ok(outcomes);
        }
    }
    give()?;
    outcomes.extend(rt.build(plan, file, opts)?);
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::fake::Fake;
    use crate::machine::Backend;
    use crate::runtime::Places;
    use std::sync::{Arc, Mutex};

    struct Here<'a>(&'a Fake);

    impl Places for Here<'_> {
        fn backend(&self, _: Option<&str>) -> Result<&dyn Backend, MachineError> {
            Ok(self.0)
        }
        fn local_uri(&self) -> String {
            "fake://".into()
        }
    }

    struct Quiet;
    impl crate::progress::Telemetry for Quiet {
        fn event(&self, _: &crate::progress::Event) {}
    }

    fn plan() -> Plan {
        let text = "global {\n project keys\n}\nhost node01 {\n template t\n}\nhost node02 {\n template t\n}\n";
        let c = crate::compile(Path::new("p.mln"), &crate::source::MemoryFs::default().with("p.mln", text), crate::plugin::Registry::new(vec![]));
        assert!(c.ok(), "{:?}", c.diags);
        c.plan
    }

    /// Keys given (the managing machine's) are taken after the old build's
    /// removal, whose end takes the project's `login/`; a removal that fails
    /// leaves the hosts unbuilt.
    #[test]
    fn a_replacing_build_takes_the_keys_after_removing_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        let state = crate::state::State::open(d.path()).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake::new("agent").logging_to(log.clone());
        let places = Here(&fake);
        let rt = Runtime { state: &state, places: &places, hooks: &crate::runtime::hooks::NoHooks, telemetry: &Quiet };
        let p = plan();
        let give = |log: &Arc<Mutex<Vec<String>>>| {
            let log = log.clone();
            move || {
                log.lock().unwrap().push("give keys".into());
                Ok(())
            }
        };
        // First build: nothing to remove.
        let out = build(&rt, &p, Path::new("p.mln"), BuildOptions { replace: false, resume: false }, give(&log)).unwrap();
        assert!(out.iter().all(Outcome::ok), "{out:?}");

        // Replaced: removal (to its end), then the keys, then the build.
        log.lock().unwrap().clear();
        let out = build(&rt, &p, Path::new("p.mln"), BuildOptions { replace: true, resume: false }, give(&log)).unwrap();
        assert!(out.iter().all(Outcome::ok), "{out:?}");
        let l = log.lock().unwrap().clone();
        let at = |what: &str| l.iter().position(|e| e.contains(what)).unwrap_or_else(|| panic!("no {what} in {l:?}"));
        assert!(at("finish_remove") < at("give keys"), "{l:?}");
        assert!(at("give keys") < at("build node01"), "{l:?}");
        assert_eq!(l.iter().filter(|e| e.contains("give keys")).count(), 1, "{l:?}");
        assert_eq!(l.iter().filter(|e| e.contains("finish_remove")).count(), 1, "removed once, before the keys: {l:?}");

        // A removal that fails: nothing built, every host says why.
        fake.fail("remove", "node02");
        log.lock().unwrap().clear();
        let out = build(&rt, &p, Path::new("p.mln"), BuildOptions { replace: true, resume: false }, give(&log)).unwrap();
        let l = log.lock().unwrap().clone();
        assert!(!l.iter().any(|e| e.contains("give keys") || e.starts_with("agent: build")), "{l:?}");
        for h in ["node01", "node02"] {
            assert!(out.iter().any(|o| o.host == h && !o.ok() && o.message.contains("could not be removed")), "{h}: {out:?}");
        }
    }
}
