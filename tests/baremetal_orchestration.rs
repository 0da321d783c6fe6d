//! One project of VMs and bare-metal nodes through the one orchestration:
//! built, statused, stopped and removed, the VMs on the in-memory fake,
//! the nodes on the bare-metal backend over fake power, boot service and
//! node operations (virtual time: nothing sleeps).

mod common;
use common::*;
use mln::baremetal::automaton::{Clusters, Config, Node, NodeOps, OpError, System};
use mln::baremetal::backend::BareMetalMachines;
use mln::baremetal::split::{Ready, Split};
use mln::baremetal::{BootNode, BootProfile, NetBoot, NetBootError, NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerVia, RebootLevel};
use mln::machine::fake::Fake;
use mln::machine::{Backend, MachineError, Outcome, StopMode};
use mln::progress::Collect;
use mln::runtime::{BuildOptions, Places, Runtime, StartOptions};
use mln::state::State;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const PROJECT: &str = "
global { project mixed }
switch lan { }
superclass node {
    baremetal
    power { driver ipmi\n address 127.0.0.1\n user admin\n password_file pw }
    disk /dev/vda
    environment tg
    network eth0 { switch lan\n netmask 255.255.255.0 }
}
host n1 { superclass node\n mac 52:54:00:00:01:01\n network eth0 { address 10.9.0.11 } }
host n2 { superclass node\n mac 52:54:00:00:01:02\n network eth0 { address 10.9.0.12 } }
host dead { superclass node\n mac 52:54:00:00:01:03\n network eth0 { address 10.9.0.13 } }
host vm1 { template t\n network eth0 { switch lan\n address 10.9.0.1\n netmask 255.255.255.0 } }
";

#[derive(Default)]
struct Lab {
    power: Mutex<HashMap<String, PowerReading>>,
    profiles: Mutex<HashMap<String, BootProfile>>,
    forgotten: Mutex<Vec<String>>,
    clocks: Mutex<HashMap<String, Duration>>,
}

impl PowerDriver for Lab {
    fn act(&self, node: &str, _: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        let r = if action == PowerAction::Off { PowerReading::Off } else { PowerReading::On };
        self.power.lock().unwrap().insert(node.to_string(), r);
        Ok(())
    }
    fn status(&self, node: &str, _: &NodeSpec) -> Result<PowerReading, PowerError> {
        Ok(self.power.lock().unwrap().get(node).copied().unwrap_or(PowerReading::Off))
    }
}

impl NetBoot for Lab {
    fn set_profile(&self, node: &BootNode, p: &BootProfile) -> Result<(), NetBootError> {
        self.profiles.lock().unwrap().insert(node.host.clone(), p.clone());
        Ok(())
    }
    fn forget(&self, _: &str, host: &str) -> Result<(), NetBootError> {
        self.profiles.lock().unwrap().remove(host);
        self.forgotten.lock().unwrap().push(host.to_string());
        Ok(())
    }
}

impl NodeOps for Lab {
    fn now(&self, n: &Node) -> Duration {
        self.clocks.lock().unwrap().get(&n.name).copied().unwrap_or_default()
    }
    fn set_profile(&self, n: &Node, p: &BootProfile) -> Result<(), OpError> {
        self.profiles.lock().unwrap().insert(n.name.clone(), p.clone());
        Ok(())
    }
    fn reboot(&self, n: &Node, level: RebootLevel) -> Result<PowerVia, OpError> {
        if level == RebootLevel::Soft && self.power.lock().unwrap().get(&n.name) != Some(&PowerReading::On) {
            return Err(OpError::Failed("not running".into()));
        }
        self.power.lock().unwrap().insert(n.name.clone(), PowerReading::On);
        Ok(if level == RebootLevel::Soft { PowerVia::Ssh } else { PowerVia::Ipmi })
    }
    fn wait_reachable(&self, n: &Node, _: System, deadline: Duration) -> Result<(), OpError> {
        let mut c = self.clocks.lock().unwrap();
        let t = c.entry(n.name.clone()).or_default();
        if n.name == "dead" {
            *t = deadline + Duration::from_secs(1);
            return Err(OpError::Timeout { what: "the node".into(), after: Duration::from_secs(1) });
        }
        *t += Duration::from_secs(15);
        Ok(())
    }
    fn kexec(&self, _: &Node, _: System) -> Result<(), OpError> {
        Ok(())
    }
    fn partition_format(&self, _: &Node, _: Duration) -> Result<(), OpError> {
        Ok(())
    }
    fn write_image(&self, n: &Node, _: Duration) -> Result<(), OpError> {
        *self.clocks.lock().unwrap().entry(n.name.clone()).or_default() += Duration::from_secs(30);
        Ok(())
    }
    fn configure(&self, _: &Node, _: Duration) -> Result<(), OpError> {
        Ok(())
    }
    fn postinstall(&self, _: &Node, _: Duration) -> Result<(), OpError> {
        Ok(())
    }
    fn shutdown(&self, n: &Node) -> Result<(), OpError> {
        self.power.lock().unwrap().insert(n.name.clone(), PowerReading::Off);
        Ok(())
    }
}

struct Here<'a> {
    split: Split<'a, Ready<'a>>,
}

impl Places for Here<'_> {
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError> {
        match place {
            None => Ok(&self.split),
            Some(p) => Err(MachineError::Refused(format!("no place {p}"))),
        }
    }
    fn local_uri(&self) -> String {
        "fake://".into()
    }
}

fn add_environment(state: &State, dir: &Path) {
    std::fs::write(dir.join("root.tar"), b"tar").unwrap();
    std::fs::write(dir.join("env.toml"), "name = \"tg\"\nfilesystem = \"ext4\"\n[image]\nfile = \"root.tar\"\nkind = \"tar\"\n").unwrap();
    mln::baremetal::env::add(state, &dir.join("env.toml")).unwrap();
}

#[test]
fn a_project_of_vms_and_nodes_is_built_statused_stopped_and_removed() {
    let c = compile_mem(&[("/p/mixed.mln", PROJECT)]);
    assert!(c.ok(), "{}", rendered(&c));
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state")).unwrap();
    add_environment(&state, dir.path());
    let lab = Lab::default();
    let vms = Fake::new("here");
    let metal = BareMetalMachines { state: &state, power: &lab, netboot: &lab, ops: &lab, clusters: Clusters::single(Config::default()) };
    let places = Here { split: Split { vms: Ready(&vms), metal: &metal } };
    let t = Collect::default();
    let rt = Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };

    let out = rt.build(&c.plan, Path::new("mixed.mln"), BuildOptions::default()).unwrap();
    let by: HashMap<&str, &Outcome> = out.iter().map(|o| (o.host.as_str(), o)).collect();
    assert!(by["vm1"].ok(), "{:?}", by["vm1"]);
    for n in ["n1", "n2"] {
        assert!(by[n].ok() && by[n].message.starts_with("deployed tg:1 (deploy_system untrusted"), "{:?}", by[n]);
        assert_eq!(lab.profiles.lock().unwrap()[n], BootProfile::Disk, "{n} boots its disk next");
    }
    assert!(!by["dead"].ok() && by["dead"].message.contains("KO: deploy_system"), "{:?}", by["dead"]);
    // Every node's steps are recorded for `mln stats`.
    let stats = mln::baremetal::stats::summarize(&state.steps(Some("mixed"), None).unwrap());
    assert_eq!(stats.iter().map(|s| (s.host.as_str(), s.failed)).collect::<Vec<_>>(), [("dead", 1), ("n1", 0), ("n2", 0)]);

    rt.start("mixed", &StartOptions::default()).unwrap();
    let st = rt.status("mixed", &[]).unwrap();
    let states: HashMap<&str, &str> = st.iter().map(|s| (s.host.as_str(), s.state.as_str())).collect();
    assert_eq!((states["vm1"], states["n1"], states["n2"]), ("running", "running", "running"));

    let out = rt.stop("mixed", &[], StopMode::Graceful { wait: None }).unwrap();
    assert!(out.iter().filter(|o| o.host != "dead").all(Outcome::ok), "{out:?}");
    assert_eq!(lab.power.lock().unwrap()["n1"], PowerReading::Off);

    let out = rt.remove("mixed").unwrap();
    assert!(out.iter().all(Outcome::ok), "{out:?}");
    let n1 = out.iter().find(|o| o.host == "n1").unwrap();
    assert!(n1.message.contains("disk is left as it is"), "{}", n1.message);
    assert!(lab.profiles.lock().unwrap().is_empty(), "no boot profile left");
    let mut forgotten = lab.forgotten.lock().unwrap().clone();
    forgotten.sort();
    assert_eq!(forgotten, ["dead", "n1", "n2"]);
    assert!(state.project("mixed").unwrap().is_none());
    assert_eq!(vms.machine("mixed", "vm1"), mln::machine::PowerState::Absent);
}

#[test]
fn this_machine_s_places_send_bare_metal_hosts_to_the_bare_metal_backend() {
    let c = compile_mem(&[(
        "/p/nodes.mln",
        "global { project nodes }\nhost n1 { baremetal\n mac 52:54:00:00:02:01\n power { driver ssh }\n disk /dev/vda\n environment tg }\n",
    )]);
    assert!(c.ok(), "{}", rendered(&c));
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state")).unwrap();
    add_environment(&state, dir.path());
    let lab = Lab::default();
    // n1 is off, and an ssh driver reboots a running system only: power
    // it "on" first so its soft reboot works.
    lab.power.lock().unwrap().insert("n1".into(), PowerReading::On);
    let metal = BareMetalMachines { state: &state, power: &lab, netboot: &lab, ops: &lab, clusters: Clusters::single(Config::default()) };
    let places = mln::runtime::LocalPlaces::new(&state, "test:///default".into(), dir.path().join("templates")).with_baremetal(&metal);
    let t = Collect::default();
    let rt = Runtime { state: &state, places: &places, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };
    let out = rt.build(&c.plan, Path::new("nodes.mln"), BuildOptions::default()).unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].ok() && out[0].message.starts_with("deployed tg:1"), "{out:?}");
    // Without a bare-metal backend, the node is refused as before.
    let plain = mln::runtime::LocalPlaces::new(&state, "test:///default".into(), dir.path().join("templates"));
    let rt = Runtime { state: &state, places: &plain, hooks: &mln::runtime::hooks::NoHooks, telemetry: &t };
    let out = rt.build(&c.plan, Path::new("nodes.mln"), BuildOptions { replace: true, resume: false }).unwrap();
    assert!(out.iter().any(|o| o.host == "n1" && !o.ok()), "{out:?}");
}
