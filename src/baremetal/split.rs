//! One place holding VMs and bare-metal nodes: a backend that sends each
//! host to the backend of its kind, so the orchestration (`runtime`)
//! drives a mixed project as it drives any other, unchanged.

use crate::machine::{Backend, BuildOptions, Done, Machine, MachineError, Migrate, Outcome, Power, PowerState, Provision, Relocate, Snapshot, StopMode, Update};
use crate::plan::{Host, HostKind, Plan};
use crate::progress::Telemetry;

/// Where the VMs' backend comes from: reached only when a VM is asked
/// for (a project of nodes alone never opens libvirt).
pub trait Vms: Sync + Send {
    fn get(&self) -> Result<&dyn Backend, MachineError>;
}

/// A VMs' backend at hand.
pub struct Ready<'a>(pub &'a dyn Backend);

impl Vms for Ready<'_> {
    fn get(&self) -> Result<&dyn Backend, MachineError> {
        Ok(self.0)
    }
}

pub struct Split<'a, V: Vms> {
    pub vms: V,
    pub metal: &'a dyn Backend,
}

fn is_metal(h: &Host) -> bool {
    h.kind == HostKind::Baremetal
}

impl<'a, V: Vms> Split<'a, V> {
    fn of(&self, h: &Host) -> Result<&dyn Backend, MachineError> {
        if is_metal(h) {
            Ok(self.metal)
        } else {
            self.vms.get()
        }
    }
    fn vm_hosts(plan: &Plan) -> (Vec<&Host>, Vec<&Host>) {
        plan.hosts.iter().partition(|h| !is_metal(h))
    }
}

impl<V: Vms> Power for Split<'_, V> {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError> {
        self.of(m.host)?.power()?.state(m)
    }
    fn start(&self, m: &Machine) -> Result<Done, MachineError> {
        self.of(m.host)?.power()?.start(m)
    }
    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
        self.of(m.host)?.power()?.stop(m, mode)
    }
}

impl<V: Vms> Provision for Split<'_, V> {
    fn check(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        self.of(m.host)?.provision()?.check(plan, m)
    }
    fn prepare(&self, plan: &Plan, t: &dyn Telemetry) -> Result<(), MachineError> {
        let (vms, metal) = Self::vm_hosts(plan);
        if !vms.is_empty() {
            self.vms.get()?.provision()?.prepare(&crate::runtime::share(plan, &vms), t)?;
        }
        if !metal.is_empty() {
            self.metal.provision()?.prepare(&crate::runtime::share(plan, &metal), t)?;
        }
        Ok(())
    }
    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        self.of(m.host)?.provision()?.build(plan, m)
    }
    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError> {
        if self.metal.provision()?.hosts_of(project)?.iter().any(|h| h == host) {
            self.metal.provision()?.remove(project, host)
        } else {
            self.vms.get()?.provision()?.remove(project, host)
        }
    }
    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError> {
        let mut out = self.metal.provision()?.hosts_of(project)?;
        let vms = self.vms.get()?.provision()?.hosts_of(project)?;
        out.extend(vms.into_iter().filter(|h| !out.contains(h)).collect::<Vec<_>>());
        Ok(out)
    }
    fn finish_remove(&self, project: &str) -> Vec<Outcome> {
        let mut out = self.metal.provision().map(|p| p.finish_remove(project)).unwrap_or_default();
        match self.vms.get().and_then(|b| b.provision()) {
            Ok(p) => out.extend(p.finish_remove(project)),
            Err(e) => out.push(Outcome::failed("(all)", &e)),
        }
        out
    }
}

impl<V: Vms> Backend for Split<'_, V> {
    fn describe(&self) -> String {
        let vms = self.vms.get().map(|b| b.describe()).unwrap_or_else(|e| format!("no VMs ({e})"));
        format!("{vms} and {}", self.metal.describe())
    }
    fn power(&self) -> Result<&dyn Power, MachineError> {
        Ok(self)
    }
    fn provision(&self) -> Result<&dyn Provision, MachineError> {
        Ok(self)
    }
    // What only VMs can do goes to the VMs' backend; asked of a node, it
    // answers as for a machine it does not hold.
    fn snapshot(&self) -> Result<&dyn Snapshot, MachineError> {
        self.vms.get()?.snapshot()
    }
    fn migrate(&self) -> Result<&dyn Migrate, MachineError> {
        self.vms.get()?.migrate()
    }
    fn update(&self) -> Result<&dyn Update, MachineError> {
        self.vms.get()?.update()
    }
    fn relocate(&self) -> Result<&dyn Relocate, MachineError> {
        self.vms.get()?.relocate()
    }
    /// VMs and nodes built side by side, each by its backend's own batch.
    fn build_all(&self, plan: &Plan, opts: BuildOptions, t: &dyn Telemetry) -> Vec<Outcome> {
        let (vms, metal) = Self::vm_hosts(plan);
        let (vm_share, metal_share) = (crate::runtime::share(plan, &vms), crate::runtime::share(plan, &metal));
        std::thread::scope(|s| {
            let v = (!vms.is_empty()).then(|| {
                s.spawn(|| match self.vms.get() {
                    Ok(b) => b.build_all(&vm_share, opts, t),
                    Err(e) => vm_share.hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect(),
                })
            });
            let m = (!metal.is_empty()).then(|| s.spawn(|| self.metal.build_all(&metal_share, opts, t)));
            let mut out = Vec::new();
            for h in [v, m].into_iter().flatten() {
                out.extend(h.join().unwrap_or_default());
            }
            out
        })
    }
    fn remove_all(&self, project: &str, t: &dyn Telemetry) -> Vec<Outcome> {
        let mut out = self.metal.remove_all(project, t);
        // A project of nodes alone never opened libvirt, and need not now.
        match self.vms.get() {
            Ok(b) => out.extend(b.remove_all(project, t)),
            Err(e) => out.push(Outcome::failed("(all)", &e)),
        }
        out
    }
}
