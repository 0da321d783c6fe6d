//! The automaton on in-memory nodes with virtual clocks: no sleeping, no
//! timed assertion; time is what each fake node's clock says.

use super::*;
use crate::baremetal::{EnvRef, PowerSpec};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Clone, Default)]
struct Behaviour {
    /// How many times the deploy system does not come up (the node stays
    /// silent until the deadline) before it does; u32::MAX: never.
    deploy_silent: u32,
    /// IPMI refuses the credentials for a reset.
    hard_auth_fails: bool,
    /// Virtual seconds from a reboot to the node answering.
    boot_secs: u64,
}

#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

#[derive(Default)]
struct PowerGate {
    /// (in flight, started, most in flight at once)
    counts: Mutex<(usize, usize, usize)>,
    cv: Condvar,
    /// Hold each action until this many are in flight (or all started).
    hold_until: usize,
    total: usize,
}

#[derive(Default)]
struct Fake {
    behaviour: HashMap<String, Behaviour>,
    clocks: Mutex<HashMap<String, Duration>>,
    /// (node, what), in the order it happened (real order across threads).
    log: Mutex<Vec<(String, String)>>,
    silent_left: Mutex<HashMap<String, u32>>,
    /// Nodes running some system (a soft reboot needs one).
    up: Mutex<HashMap<String, bool>>,
    /// `slow` waits in its deploy system until `fast` is deployed.
    hold: Option<(String, String, Arc<Gate>)>,
    power_gate: Option<PowerGate>,
    soft_always_works: bool,
}

impl Fake {
    fn new(nodes: &[(&str, Behaviour)]) -> Fake {
        let mut f = Fake::default();
        for (n, b) in nodes {
            f.silent_left.get_mut().unwrap().insert(n.to_string(), b.deploy_silent);
            f.behaviour.insert(n.to_string(), b.clone());
        }
        f
    }
    fn advance(&self, n: &Node, d: Duration) {
        *self.clocks.lock().unwrap().entry(n.name.clone()).or_default() += d;
    }
    fn set_clock(&self, n: &Node, t: Duration) {
        let mut c = self.clocks.lock().unwrap();
        let e = c.entry(n.name.clone()).or_default();
        *e = (*e).max(t);
    }
    fn log(&self, n: &Node, what: impl Into<String>) {
        self.log.lock().unwrap().push((n.name.clone(), what.into()));
    }
    fn actions(&self, node: &str) -> Vec<String> {
        self.log.lock().unwrap().iter().filter(|(n, _)| n == node).map(|(_, w)| w.clone()).collect()
    }
    fn b(&self, n: &Node) -> Behaviour {
        self.behaviour.get(&n.name).cloned().unwrap_or_default()
    }
}

impl NodeOps for Fake {
    fn now(&self, n: &Node) -> Duration {
        self.clocks.lock().unwrap().get(&n.name).copied().unwrap_or_default()
    }
    fn set_profile(&self, n: &Node, p: &BootProfile) -> Result<(), OpError> {
        self.log(n, format!("profile {p:?}"));
        Ok(())
    }
    fn reboot(&self, n: &Node, level: RebootLevel) -> Result<PowerVia, OpError> {
        if let Some(g) = &self.power_gate {
            let mut c = g.counts.lock().unwrap();
            c.0 += 1;
            c.1 += 1;
            c.2 = c.2.max(c.0);
            g.cv.notify_all();
            while c.0 < g.hold_until && c.1 < g.total {
                c = g.cv.wait(c).unwrap();
            }
            c.0 -= 1;
            g.cv.notify_all();
        }
        self.advance(n, Duration::from_secs(1));
        self.log(n, format!("reboot {level:?}"));
        let up = self.up.lock().unwrap().get(&n.name).copied().unwrap_or(false);
        match level {
            RebootLevel::Soft if !up && !self.soft_always_works => Err(OpError::Failed("ssh: connection refused".into())),
            RebootLevel::Hard if self.b(n).hard_auth_fails => {
                Err(OpError::Power(PowerError::Auth { node: n.name.clone(), detail: "wrong password".into() }))
            }
            _ => {
                self.up.lock().unwrap().insert(n.name.clone(), false);
                Ok(if level == RebootLevel::Soft { PowerVia::Ssh } else { PowerVia::of(&n.spec.power) })
            }
        }
    }
    fn wait_reachable(&self, n: &Node, system: System, deadline: Duration) -> Result<(), OpError> {
        if system == System::Deploy {
            if let Some((slow, _, gate)) = &self.hold {
                if *slow == n.name {
                    let open = gate.open.lock().unwrap();
                    // A safety net, not a timing assertion: a barrier
                    // between nodes would hold this forever.
                    let (open, _) = gate.cv.wait_timeout_while(open, Duration::from_secs(60), |o| !*o).unwrap();
                    if !*open {
                        return Err(OpError::Failed("held: the fast node never finished before this one".into()));
                    }
                }
            }
            let mut left = self.silent_left.lock().unwrap();
            let l = left.entry(n.name.clone()).or_default();
            if *l > 0 {
                if *l != u32::MAX {
                    *l -= 1;
                }
                drop(left);
                self.set_clock(n, deadline + Duration::from_secs(1));
                self.log(n, "silent");
                return Err(OpError::Timeout { what: "the deploy system".into(), after: Duration::from_secs(1) });
            }
        }
        self.advance(n, Duration::from_secs(self.b(n).boot_secs.max(1)));
        self.up.lock().unwrap().insert(n.name.clone(), true);
        self.log(n, format!("up {system:?}"));
        if system == System::Deployed {
            if let Some((_, fast, gate)) = &self.hold {
                if *fast == n.name {
                    *gate.open.lock().unwrap() = true;
                    gate.cv.notify_all();
                }
            }
        }
        Ok(())
    }
    fn kexec(&self, n: &Node, into: System) -> Result<(), OpError> {
        self.log(n, format!("kexec {into:?}"));
        Ok(())
    }
    fn partition_format(&self, n: &Node, _: Duration) -> Result<(), OpError> {
        self.advance(n, Duration::from_secs(5));
        self.log(n, "format");
        Ok(())
    }
    fn write_image(&self, n: &Node, _: Duration) -> Result<(), OpError> {
        self.advance(n, Duration::from_secs(30));
        self.log(n, "image");
        Ok(())
    }
    fn configure(&self, n: &Node, _: Duration) -> Result<(), OpError> {
        self.advance(n, Duration::from_secs(2));
        self.log(n, "configure");
        Ok(())
    }
    fn postinstall(&self, n: &Node, _: Duration) -> Result<(), OpError> {
        self.advance(n, Duration::from_secs(1));
        self.log(n, "postinstall");
        Ok(())
    }
}

fn ipmi() -> PowerSpec {
    PowerSpec::Ipmi { address: "127.0.0.1".into(), port: 623, user: "admin".into(), password_file: "/pw".into() }
}

fn node(name: &str, power: PowerSpec, boot: BootMode) -> Node {
    Node {
        name: name.into(),
        spec: NodeSpec {
            mac: "52:54:00:00:00:01".into(),
            power,
            disk: (boot == BootMode::Disk).then(|| "/dev/vda".into()),
            partition: None,
            environment: EnvRef { name: "testguest".into(), version: None },
            boot,
            fallback: None,
        },
    }
}

fn by_name(reports: &[NodeReport], n: &str) -> NodeReport {
    reports.iter().find(|r| r.node == n).unwrap().clone()
}

#[test]
fn every_node_goes_through_the_three_steps() {
    let fake = Fake::new(&[("a", Behaviour { boot_secs: 20, ..Default::default() }), ("b", Behaviour::default())]);
    let config = Config::default();
    let nodes = [node("a", ipmi(), BootMode::Disk), node("b", ipmi(), BootMode::Disk)];
    let reports = Automaton::new(&fake, &config).deploy(&nodes);
    for r in &reports {
        assert_eq!(r.ko, None, "{r:?}");
        let steps: Vec<Step> = r.steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, [Step::DeploySystem, Step::Install, Step::Boot]);
        assert!(r.steps.iter().all(|s| s.ok && s.retries == 0 && s.duration > Duration::ZERO));
    }
    // a's reboots take 20 virtual seconds: its step times say so.
    assert_eq!(by_name(&reports, "a").steps[0].duration, Duration::from_secs(1 + 1 + 20));
    assert_eq!(by_name(&reports, "a").steps[1].duration, Duration::from_secs(38));
    // Not running anything: the soft reboot fails, the hard one is used.
    let acts = fake.actions("b");
    assert_eq!(acts[..4], ["profile Deploy", "reboot Soft", "reboot Hard", "up Deploy"]);
    assert!(acts.contains(&"profile Disk".to_string()));
}

#[test]
fn a_node_that_fails_once_is_retried_and_ok() {
    let fake = Fake::new(&[("flaky", Behaviour { deploy_silent: 1, ..Default::default() })]);
    let config = Config::default();
    let r = &Automaton::new(&fake, &config).deploy(&[node("flaky", ipmi(), BootMode::Disk)])[0];
    assert_eq!(r.ko, None);
    let ds = &r.steps[0];
    assert!(ds.ok);
    assert_eq!((ds.variant, ds.retries), (Variant::Untrusted, 1));
    assert_eq!(ds.failures.len(), 1);
    // The failed attempt ran to its timeout (200 s) on the node's clock.
    assert!(ds.duration > Duration::from_secs(200), "{:?}", ds.duration);
    assert_eq!(fake.actions("flaky").iter().filter(|a| *a == "profile Deploy").count(), 2);
}

#[test]
fn a_node_that_never_answers_is_ko_after_its_timeouts_and_the_others_finish_first() {
    let fake = Fake::new(&[
        ("dead", Behaviour { deploy_silent: u32::MAX, ..Default::default() }),
        ("n1", Behaviour::default()),
        ("n2", Behaviour { boot_secs: 30, ..Default::default() }),
    ]);
    let config = Config::default();
    let nodes = [node("dead", ipmi(), BootMode::Disk), node("n1", ipmi(), BootMode::Disk), node("n2", ipmi(), BootMode::Disk)];
    let reports = Automaton::new(&fake, &config).deploy(&nodes);
    let dead = by_name(&reports, "dead");
    let why = dead.ko.as_deref().expect("KO");
    assert!(why.starts_with("deploy_system: untrusted:") && why.contains("did not finish"), "{why}");
    // Tried 1 + 2 retries on its one variant, never reached install.
    assert_eq!(dead.steps.len(), 1);
    assert_eq!((dead.steps[0].failures.len(), dead.steps[0].retries), (3, 2));
    assert!(fake.actions("dead").iter().all(|a| a != "format"));
    for n in ["n1", "n2"] {
        let r = by_name(&reports, n);
        assert_eq!(r.ko, None);
        assert!(r.finished < dead.finished, "{n} finished at {:?}, the dead node at {:?}", r.finished, dead.finished);
    }
}

#[test]
fn a_node_done_with_a_step_goes_on_without_waiting_for_a_slow_one() {
    // `slow` is held in its deploy system until `fast` has booted its
    // deployed system: with any barrier between steps, `fast` would wait
    // for `slow` and `slow` would give up (the fake's safety net).
    let gate = Arc::new(Gate::default());
    let mut fake = Fake::new(&[("slow", Behaviour::default()), ("fast", Behaviour::default())]);
    fake.hold = Some(("slow".into(), "fast".into(), gate));
    let config = Config::default();
    let reports = Automaton::new(&fake, &config).deploy(&[node("slow", ipmi(), BootMode::Disk), node("fast", ipmi(), BootMode::Disk)]);
    assert!(reports.iter().all(|r| r.ko.is_none()), "{reports:?}");
    let log = fake.log.lock().unwrap().clone();
    let fast_booted = log.iter().position(|(n, w)| n == "fast" && w == "up Deployed").unwrap();
    let slow_deploy = log.iter().position(|(n, w)| n == "slow" && w == "up Deploy").unwrap();
    assert!(fast_booted < slow_deploy);
}

#[test]
fn refused_ipmi_credentials_escalate_to_a_power_cycle() {
    let fake = Fake::new(&[("locked", Behaviour { hard_auth_fails: true, ..Default::default() })]);
    let config = Config::default();
    let r = &Automaton::new(&fake, &config).deploy(&[node("locked", ipmi(), BootMode::Disk)])[0];
    assert_eq!(r.ko, None, "{r:?}");
    let acts = fake.actions("locked");
    assert_eq!(acts[..5], ["profile Deploy", "reboot Soft", "reboot Hard", "reboot VeryHard", "up Deploy"]);
    // The level that acted is in the step's report (for `mln stats`);
    // the install step rebooted nothing.
    assert_eq!(r.steps[0].power, Some(crate::baremetal::PowerUse { level: RebootLevel::VeryHard, via: PowerVia::Ipmi }));
    assert_eq!(r.steps[1].power, None);
}

#[test]
fn a_node_with_soft_reboots_and_a_fallback_has_every_level() {
    // `driver ssh` alone reboots softly only; its own power-command level
    // (`fallback`) gives it the hard and very hard levels.
    let fake = Fake::new(&[("ssh", Behaviour::default())]);
    let config = Config::default();
    let mut n = node("ssh", PowerSpec::Ssh, BootMode::Disk);
    assert_eq!(reboot_levels(&n.spec), [RebootLevel::Soft]);
    n.spec.fallback = Some(PowerCommand { on: "pdu on".into(), off: "pdu off".into(), reset: "pdu reset".into(), status: "pdu status".into(), cycle: None });
    assert_eq!(reboot_levels(&n.spec), [RebootLevel::Soft, RebootLevel::Hard, RebootLevel::VeryHard]);
    let r = &Automaton::new(&fake, &config).deploy(&[n])[0];
    assert_eq!(r.ko, None, "{r:?}");
    assert_eq!(r.steps[0].power.map(|p| p.level), Some(RebootLevel::Hard), "{r:?}");
}

#[test]
fn a_node_with_soft_reboots_only_falls_back_then_is_ko_with_the_reason() {
    // ssh power: the deploy system's soft reboot needs a running system;
    // the node runs none, so nothing can reboot it.
    let fake = Fake::new(&[("ssh", Behaviour::default())]);
    let config = Config { deploy_system: vec![VariantConf { variant: Variant::Untrusted, timeout: 100, retries: 1 }], ..Config::default() };
    let r = &Automaton::new(&fake, &config).deploy(&[node("ssh", PowerSpec::Ssh, BootMode::Disk)])[0];
    let why = r.ko.as_deref().expect("KO");
    assert!(why.contains("no reboot worked") && why.contains("connection refused"), "{why}");
    assert_eq!(r.steps[0].failures.len(), 2);
}

#[test]
fn boot_falls_back_to_the_next_variant() {
    // kexec is first and fails; classical follows.
    struct NoKexec(Fake);
    impl NodeOps for NoKexec {
        fn now(&self, n: &Node) -> Duration {
            self.0.now(n)
        }
        fn set_profile(&self, n: &Node, p: &BootProfile) -> Result<(), OpError> {
            self.0.set_profile(n, p)
        }
        fn reboot(&self, n: &Node, l: RebootLevel) -> Result<PowerVia, OpError> {
            self.0.reboot(n, l)
        }
        fn wait_reachable(&self, n: &Node, s: System, d: Duration) -> Result<(), OpError> {
            self.0.wait_reachable(n, s, d)
        }
        fn kexec(&self, _: &Node, _: System) -> Result<(), OpError> {
            Err(OpError::Failed("kexec: not supported by this kernel".into()))
        }
        fn partition_format(&self, n: &Node, d: Duration) -> Result<(), OpError> {
            self.0.partition_format(n, d)
        }
        fn write_image(&self, n: &Node, d: Duration) -> Result<(), OpError> {
            self.0.write_image(n, d)
        }
        fn configure(&self, n: &Node, d: Duration) -> Result<(), OpError> {
            self.0.configure(n, d)
        }
        fn postinstall(&self, n: &Node, d: Duration) -> Result<(), OpError> {
            self.0.postinstall(n, d)
        }
    }
    let ops = NoKexec(Fake::new(&[("k", Behaviour::default())]));
    let v = |variant, timeout, retries| VariantConf { variant, timeout, retries };
    let config = Config { boot: vec![v(Variant::Kexec, 60, 0), v(Variant::Classical, 200, 1)], ..Config::default() };
    let r = &Automaton::new(&ops, &config).deploy(&[node("k", ipmi(), BootMode::Disk)])[0];
    assert_eq!(r.ko, None);
    let boot = &r.steps[2];
    assert_eq!((boot.variant, boot.retries, boot.ok), (Variant::Classical, 1, true));
    assert!(boot.failures[0].contains("kexec: not supported"));
}

#[test]
fn a_diskless_node_only_boots_its_environment() {
    let fake = Fake::new(&[("ram", Behaviour::default())]);
    let config = Config::default();
    let r = &Automaton::new(&fake, &config).deploy(&[node("ram", ipmi(), BootMode::Diskless)])[0];
    assert_eq!(r.ko, None);
    assert_eq!(r.steps.iter().map(|s| s.step).collect::<Vec<_>>(), [Step::Boot]);
    let acts = fake.actions("ram");
    assert!(acts[0].starts_with("profile Diskless"), "{acts:?}");
    assert!(!acts.iter().any(|a| a == "format" || a == "image"));
}

#[test]
fn power_actions_are_sent_in_windows() {
    let names: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
    let behaviours: Vec<(&str, Behaviour)> = names.iter().map(|n| (n.as_str(), Behaviour::default())).collect();
    let mut fake = Fake::new(&behaviours);
    fake.soft_always_works = true;
    // One reboot per node (into the deploy system; the boot is a kexec),
    // each one action: no action waits for another node's later one.
    fake.power_gate = Some(PowerGate { hold_until: 3, total: names.len(), ..Default::default() });
    let config = Config { window: 3, boot: vec![VariantConf { variant: Variant::Kexec, timeout: 60, retries: 0 }], ..Config::default() };
    let nodes: Vec<Node> = names.iter().map(|n| node(n, ipmi(), BootMode::Disk)).collect();
    let reports = Automaton::new(&fake, &config).deploy(&nodes);
    assert!(reports.iter().all(|r| r.ko.is_none()));
    let (in_flight, started, most) = *fake.power_gate.as_ref().unwrap().counts.lock().unwrap();
    assert_eq!((in_flight, started), (0, 7));
    // Never more than the window, and the window was used.
    assert_eq!(most, 3);
}

#[test]
fn configurations_are_checked_and_read_from_toml() {
    Config::default().check().unwrap();
    let bad = Config { install: vec![VariantConf { variant: Variant::Kexec, timeout: 10, retries: 0 }], ..Config::default() };
    assert_eq!(bad.check(), Err(ConfigError::Misplaced { step: "install", variant: "kexec" }));
    assert_eq!(Config { window: 0, ..Config::default() }.check(), Err(ConfigError::ZeroWindow));
    assert_eq!(Config { boot: vec![], ..Config::default() }.check(), Err(ConfigError::Empty { step: "boot" }));
    let c: Config = toml::from_str("window = 10\nboot = [{ type = \"kexec\", timeout = 60 }, { type = \"hard\", timeout = 300, retries = 1 }]\n").unwrap();
    c.check().unwrap();
    assert_eq!(c.window, 10);
    assert_eq!(c.boot[1], VariantConf { variant: Variant::Hard, timeout: 300, retries: 1 });
    assert_eq!(c.install, Config::default().install, "unset steps keep their defaults");
    assert!(toml::from_str::<Config>("windows = 3").is_err());
    // A cluster's table and its power-command level.
    let c: Config = toml::from_str("partition_table = \"gpt\"\npower_command = { on = \"pdu {host} on\", off = \"pdu {host} off\", reset = \"pdu {host} reset\", status = \"pdu {host} status\" }\n").unwrap();
    c.check().unwrap();
    assert_eq!(c.partition_table, crate::baremetal::deploysys::PartitionTable::Gpt);
    assert_eq!(c.power_command.as_ref().unwrap().spec(), PowerSpec::Command { on: "pdu {host} on".into(), off: "pdu {host} off".into(), reset: "pdu {host} reset".into(), status: "pdu {host} status".into(), cycle: None });
    assert_eq!(Config::default().partition_table, crate::baremetal::deploysys::PartitionTable::Dos);
    let bad: Config = toml::from_str("power_command = { on = \"pdu 'x\", off = \"a\", reset = \"a\", status = \"a\" }\n").unwrap();
    assert!(matches!(bad.check(), Err(ConfigError::PowerCommand { which: "on", .. })), "{:?}", bad.check());
    assert!(toml::from_str::<Config>("partition_table = \"bsd\"").is_err());
    assert!(toml::from_str::<Config>("power_command = { on = \"a\" }").is_err(), "every template but cycle");
}

#[test]
fn nodes_of_two_clusters_get_their_own_steps_in_one_deployment() {
    let fake = Fake::new(&[("a", Behaviour::default()), ("b", Behaviour::default())]);
    let hard = Config { boot: vec![VariantConf { variant: Variant::Hard, timeout: 400, retries: 0 }], ..Config::default() };
    let clusters = Clusters::new([("default".to_string(), Config::default()), ("rack2".to_string(), hard)]);
    assert_eq!(clusters.of(Some("rack2")).boot[0].variant, Variant::Hard);
    assert_eq!(clusters.of(Some("nowhere")), Config::default(), "an unknown cluster is default's");
    let (ca, cb) = (clusters.of(None), clusters.of(Some("rack2")));
    let base = clusters.base();
    let reports = Automaton::new(&fake, &base).deploy_each(&[(node("a", ipmi(), BootMode::Disk), &ca), (node("b", ipmi(), BootMode::Disk), &cb)]);
    assert!(reports.iter().all(|r| r.ko.is_none()), "{reports:?}");
    assert_eq!(reports[0].steps[2].variant, Variant::Classical);
    assert_eq!(reports[1].steps[2].variant, Variant::Hard);
}

#[test]
fn a_thread_cap_of_one_deploys_every_node_one_after_the_other() {
    let names = ["n0", "n1", "n2"];
    let fake = Fake::new(&names.map(|n| (n, Behaviour::default())));
    let config = Config { threads: 1, ..Config::default() };
    let nodes: Vec<Node> = names.iter().map(|n| node(n, ipmi(), BootMode::Disk)).collect();
    let reports = Automaton::new(&fake, &config).deploy(&nodes);
    assert_eq!(reports.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), names, "the reports in the nodes' order");
    assert!(reports.iter().all(|r| r.ko.is_none()), "{reports:?}");
    // One thread: each node is done before the next begins.
    let log = fake.log.lock().unwrap().clone();
    let order: Vec<&str> = log.iter().map(|(n, _)| n.as_str()).collect();
    let mut runs = order.clone();
    runs.dedup();
    assert_eq!(runs, names, "{order:?}");
    assert_eq!(Config { threads: 0, ..Config::default() }.check(), Err(ConfigError::ZeroThreads));
}
