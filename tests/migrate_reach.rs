//! A live move reaches its two ends at once: when they cannot be reached,
//! the command still ends, with a typed error naming the host at fault
//! (no hang on an end that accepts TCP and never answers SSH).

mod common;
use common::*;
use mln::fabric::places::FabricPlaces;
use mln::machine::MachineError;
use mln::runtime::{LocalPlaces, MoveMode, Places, Runtime, RuntimeError};
use mln::state::{HostRecord, Phase, ProjectRecord, State};
use std::path::Path;

/// A port nothing listens on (bound, then let go), and a listener that
/// takes connections and says nothing (kept alive by the caller).
fn ends() -> (u16, std::net::TcpListener) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (closed, mute)
}

fn fabric(dir: &Path, src_port: u16, dst_port: u16) -> mln::fabric::Fabric {
    let text = format!(
        "[defaults]\nconnect_timeout = 1\nknown_hosts = \"{kh}\"\nidentity = [\"{id}\"]\n\
         [hosts.src]\naddress = \"127.0.0.1\"\nport = {src_port}\n[hosts.dst]\naddress = \"127.0.0.1\"\nport = {dst_port}\n\
         [hosts.h3]\naddress = \"127.0.0.1\"\nport = {src_port}\n",
        kh = dir.join("known_hosts").display(),
        id = dir.join("id").display()
    );
    mln::fabric::Fabric::parse(&text, &dir.join("fabric.toml"), |_| unreachable!()).unwrap()
}

#[test]
fn both_ends_are_reached_at_once_and_each_failure_names_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let (closed, mute) = ends();
    let state = State::open(&dir.path().join("state")).unwrap();
    let rt = mln::fabric::places::async_runtime().unwrap();
    let f = fabric(dir.path(), closed, mute.local_addr().unwrap().port());
    let places = FabricPlaces::new(LocalPlaces::new(&state, "test:///default".into(), dir.path().join("templates")), &f, &rt, dir.path().join("cache"));
    let got = places.reach(&["src".into(), "dst".into(), "nowhere".into()]);
    let msg = |r: &Result<(), MachineError>| r.as_ref().unwrap_err().to_string();
    assert!(msg(&got[0]).contains("src"), "{}", msg(&got[0]));
    assert!(msg(&got[1]).contains("dst") && msg(&got[1]).contains("within 1 s"), "{}", msg(&got[1]));
    assert!(matches!(&got[2], Err(MachineError::Refused(m)) if m.contains("nowhere")), "{:?}", got[2]);
}

#[test]
fn a_live_move_whose_ends_cannot_be_reached_says_which_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (closed, mute) = ends();
    let state = State::open(&dir.path().join("state")).unwrap();
    let text = "global {\n project p\n}\nswitch lan {\n}\nhost a {\n template t\n service_host src\n network eth0 {\n switch lan\n }\n}\n\
                host b {\n template t\n service_host h3\n network eth0 {\n switch lan\n }\n}\n";
    let c = compile_mem(&[("/p/p.mln", text)]);
    assert!(c.ok(), "{}", rendered(&c));
    state
        .save_project(&ProjectRecord { name: "p".into(), phase: Phase::Built, file: "p.mln".into(), connect: "test:///default".into(), plan: c.plan.clone(), places: vec!["src".into(), "h3".into()] })
        .unwrap();
    state
        .record_hosts("p", &[HostRecord { host: "a".into(), place: Some("src".into()), phase: Phase::Built }, HostRecord { host: "b".into(), place: Some("h3".into()), phase: Phase::Built }])
        .unwrap();
    let rt = mln::fabric::places::async_runtime().unwrap();
    // The sender refuses; the receiver (and h3) hang in the handshake.
    let f = fabric(dir.path(), closed, mute.local_addr().unwrap().port());
    let places = FabricPlaces::new(LocalPlaces::new(&state, "test:///default".into(), dir.path().join("templates")), &f, &rt, dir.path().join("cache"));
    let t = mln::progress::Collect::default();
    let r = Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };
    let e = r.migrate("p", "a", Some("dst"), MoveMode::Live).unwrap_err();
    assert!(matches!(&e, RuntimeError::Machine(MachineError::Transient(m)) if m.contains("cannot connect to src")), "{e:?}");
    // Nothing was begun: no marker, the record as it was.
    assert!(!state.project_dir("p").unwrap().join(".moving-a").exists());
    let rec = state.require("p").unwrap();
    assert_eq!(rec.places, vec!["src".to_string(), "h3".to_string()]);
    assert_eq!(rec.plan, c.plan);
}
