//! Bare-metal nodes on the QEMU rig (tests/support/baremetal_rig.rs):
//! power through virtualbmc, network boot from the dnsmasq mln runs, the
//! deploy system. Slow (software emulation): `cargo test --test
//! e2e_baremetal -- --ignored`.

#[path = "support/baremetal_rig.rs"]
mod baremetal_rig;

use baremetal_rig::{NodeKind, Rig, IPMI_USER};
use mln::baremetal::power::{BootDevice, IpmiPower};
use mln::baremetal::{BootMode, EnvRef, NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec};
use std::time::{Duration, Instant};

fn spec(n: &baremetal_rig::Node, password_file: &std::path::Path) -> NodeSpec {
    NodeSpec {
        mac: n.mac.clone(),
        power: PowerSpec::Ipmi { address: "127.0.0.1".into(), port: n.ipmi_port, user: IPMI_USER.into(), password_file: password_file.display().to_string() },
        disk: n.disk.as_ref().map(|_| "/dev/vda".into()),
        partition: None,
        environment: EnvRef { name: "testguest".into(), version: None },
        boot: if n.disk.is_some() { BootMode::Disk } else { BootMode::Diskless },
    }
}

fn wait_state(rig: &Rig, n: &baremetal_rig::Node, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rig.state(n) != want {
        assert!(Instant::now() < deadline, "{} is {:?}, not {want:?}", n.name, rig.state(n));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore]
fn ipmi_through_virtualbmc_powers_the_qemu_node_and_wrong_credentials_are_auth() {
    Rig::available().unwrap();
    let rig = Rig::new(&[NodeKind { disk_mib: Some(64), memory_mib: 128 }]);
    let n = &rig.nodes[0];
    let ipmi = IpmiPower::default();
    let s = spec(n, &rig.password_file);
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::Off);
    ipmi.bootdev("n1", &s, BootDevice::Pxe).unwrap();
    ipmi.act("n1", &s, PowerAction::On).unwrap();
    wait_state(&rig, n, "running");
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::On);
    // A reset restarts the guest: its console starts over (iPXE again).
    ipmi.act("n1", &s, PowerAction::Reset).unwrap();
    assert_eq!(rig.state(n), "running");
    ipmi.act("n1", &s, PowerAction::Off).unwrap();
    wait_state(&rig, n, "shut off");
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::Off);

    let wrong = rig.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let e = ipmi.act("n1", &spec(n, &wrong), PowerAction::On).unwrap_err();
    assert!(matches!(e, PowerError::Auth { .. }), "{e:?}");
    assert_eq!(rig.state(n), "shut off", "nothing happened with wrong credentials");
    let mut stranger = spec(n, &rig.password_file);
    if let PowerSpec::Ipmi { user, .. } = &mut stranger.power {
        *user = "nobody".into();
    }
    let e = ipmi.act("n1", &stranger, PowerAction::On).unwrap_err();
    assert!(matches!(e, PowerError::Auth { .. }), "{e:?}");
    // A port with no BMC: no answer, within the driver's deadline.
    let mut gone = spec(n, &rig.password_file);
    if let PowerSpec::Ipmi { port, .. } = &mut gone.power {
        *port = n.ipmi_port + 100;
    }
    let e = IpmiPower { timeout: Duration::from_secs(15), ..IpmiPower::default() }.status("n1", &gone).unwrap_err();
    assert!(matches!(e, PowerError::Unreachable { .. }), "{e:?}");
}
