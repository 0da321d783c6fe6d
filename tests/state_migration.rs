//! A state directory written by the release before the schema was
//! versioned (tests/fixtures/state-v0.sql, made with that release's
//! binary) is read by this one.

use mln::state::{Phase, ResourceKind, State};

fn v0_state(dir: &std::path::Path) {
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v0.sql")).unwrap();
    // The fixture's paths were under /tmp/v0/state.
    let sql = sql.replace("/tmp/v0/state", &dir.display().to_string());
    let c = rusqlite::Connection::open(dir.join("mln.db")).unwrap();
    c.execute_batch(&sql).unwrap();
}

#[test]
fn a_release_0_database_is_migrated_on_open() {
    let d = tempfile::tempdir().unwrap();
    v0_state(d.path());
    let state = State::open(d.path()).unwrap();
    let old = state.require("old").unwrap();
    assert_eq!(old.phase, Phase::Built);
    assert_eq!(old.connect, "test:///default");
    assert_eq!(old.plan.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(old.places.is_empty());
    let rs = state.resources("old").unwrap();
    assert_eq!(rs.len(), 8);
    assert_eq!(rs.iter().filter(|r| r.kind == ResourceKind::Domain).count(), 2);
    assert!(rs.iter().all(|r| r.ident.starts_with(&d.path().display().to_string()) || r.kind == ResourceKind::Domain));
    // A project over a service host was two rows; now one: the whole plan,
    // its service hosts, and the local share's connection.
    let mixed = state.require("mixed").unwrap();
    assert_eq!(mixed.plan.hosts.len(), 2);
    assert_eq!(mixed.places, ["h1"]);
    assert_eq!(mixed.connect, "test:///default");
    assert_eq!(state.resources("mixed").unwrap().len(), 1, "the local share's resources are kept");
    assert_eq!(state.project_names().unwrap(), ["mixed", "old"]);
    // Every host got a record of its own: where it is, its phase.
    let hosts: Vec<(String, Option<String>, Phase)> = state.hosts("mixed").unwrap().into_iter().map(|h| (h.host, h.place, h.phase)).collect();
    assert_eq!(hosts, [("a".to_string(), None, Phase::Built), ("b".to_string(), Some("h1".to_string()), Phase::Built)]);
    assert_eq!(state.hosts("old").unwrap().len(), 2);
    drop(state);
    let c = rusqlite::Connection::open(d.path().join("mln.db")).unwrap();
    let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, mln::state::SCHEMA_VERSION);
    let tables: i64 = c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'fabric_projects'", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 0);
    // Opening again changes nothing.
    drop(c);
    let state = State::open(d.path()).unwrap();
    assert_eq!(state.require("mixed").unwrap().places, ["h1"]);
}

#[test]
fn a_release_0_project_is_removed_by_this_release() {
    let d = tempfile::tempdir().unwrap();
    v0_state(d.path());
    for h in ["a", "b"] {
        let dir = d.path().join("projects/old").join(h);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("seed.img"), "x").unwrap();
    }
    let state = State::open(d.path()).unwrap();
    let places = mln::runtime::LocalPlaces::new(&state, "test:///default".into(), d.path().join("templates"));
    let rt = mln::runtime::Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &mln::progress::Quiet };
    let out = rt.remove("old").unwrap();
    assert!(out.iter().all(mln::machine::Outcome::ok), "{out:?}");
    assert!(!d.path().join("projects/old").exists());
    assert!(state.project("old").unwrap().is_none());
}
