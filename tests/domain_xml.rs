//! Domain definitions for each kind of host, pinned by snapshots and
//! validated against libvirt's schema with virt-xml-validate.

mod common;
use common::*;
use mln::backend::domain::{domain_name, domain_xml, DomainSpec, DomainType, Nic};
use std::path::{Path, PathBuf};

fn spec<'a>(plan: &mln::plan::Plan, h: &'a mln::plan::Host, kvm_works: bool) -> DomainSpec<'a> {
    let dir = PathBuf::from("/var/lib/mln").join(&plan.project).join(&h.name);
    let t = DomainType::for_host(h, kvm_works).unwrap();
    DomainSpec {
        name: domain_name(&plan.project, &h.name),
        host: h,
        domain_type: t,
        disk: Some((dir.join(if t == DomainType::Xen { "disk.img" } else { "disk.qcow2" }), if t == DomainType::Xen { "raw" } else { "qcow2" })),
        seed: Some(dir.join("seed.img")),
        swap: h.swap_mib.map(|_| dir.join("swap.img")),
        kernel: h.kernel.as_ref().map(|k| (PathBuf::from(k), h.ramdisk.as_ref().map(PathBuf::from), "root=/dev/xvda ro console=hvc0".into())),
        console_log: dir.join("console.log"),
        nics: h.interfaces.iter().map(|i| match &i.switch {
            Some(s) => Nic::Network(format!("{s}.{}", plan.project)),
            None => Nic::Bridge("xenbr0".into()),
        }).collect(),
    }
}

fn validate(xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("domain.xml");
    std::fs::write(&f, xml).unwrap();
    let out = std::process::Command::new("virt-xml-validate").arg(&f).arg("domain").output().expect("virt-xml-validate runs (libvirt-clients)");
    assert!(out.status.success(), "{}\n{}{}", xml, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kvm_and_emulated_domains() {
    let c = compile_disk(Path::new("examples/quickstart.mln"));
    let h = &c.plan.hosts[0];
    let qemu = domain_xml(&spec(&c.plan, h, false));
    let kvm = domain_xml(&spec(&c.plan, h, true));
    assert!(qemu.starts_with("<domain type='qemu'>"));
    assert_eq!(kvm.replacen("type='kvm'", "type='qemu'", 1), qemu, "KVM and emulation differ only in the domain type");
    assert!(qemu.contains(&format!("<mac address='{}'/>", h.interfaces[0].mac)));
    validate(&qemu);
    validate(&kvm);
    insta::assert_snapshot!(qemu);
}

#[test]
fn xen_pv_domain() {
    let c = compile_disk_allowing(Path::new("examples/kinds.mln"), &["/boot"]);
    let h = c.plan.hosts.iter().find(|h| h.name == "pv").unwrap();
    let xml = domain_xml(&spec(&c.plan, h, false));
    assert!(xml.contains("<type>linux</type>") && xml.contains("<kernel>/boot/vmlinuz-6.1.0-xen</kernel>"));
    validate(&xml);
    insta::assert_snapshot!(xml);
}

#[test]
fn xen_hvm_domain() {
    let c = compile_disk_allowing(Path::new("examples/kinds.mln"), &["/boot"]);
    let h = c.plan.hosts.iter().find(|h| h.name == "hvm").unwrap();
    let xml = domain_xml(&spec(&c.plan, h, false));
    assert!(xml.contains("<type>hvm</type>") && xml.contains("hvmloader") && xml.contains("port='5905'"));
    validate(&xml);
    insta::assert_snapshot!(xml);
}

#[test]
fn pinned_cpus_and_a_swap_disk() {
    let c = compile_mem(&[(
        "/p/p.mln",
        "global { project pin }\nswitch lan { }\nhost a {\n vcpus 2\n cpus 0-3, ^2\n swap 512M\n network eth0 { switch lan }\n}\nhost x {\n xen\n hvm\n cpus 1\n swap 1G\n}\n",
    )]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    let h = &c.plan.hosts[0];
    assert_eq!((h.cpus.as_deref(), h.swap_mib), (Some("0-3,^2"), Some(512)));
    let xml = domain_xml(&spec(&c.plan, h, true));
    assert!(xml.contains("<vcpu placement='static' cpuset='0-3,^2'>2</vcpu>"), "{xml}");
    // The root disk, the seed, then the swap disk: writable, raw.
    let at = |f: &str| xml.find(f).unwrap_or_else(|| panic!("{f} in {xml}"));
    assert!(at("disk.qcow2") < at("seed.img") && at("seed.img") < at("swap.img"));
    assert!(xml.contains("<driver name='qemu' type='raw'/>\n      <source file='/var/lib/mln/pin/a/swap.img'/>\n      <target dev='vdc' bus='virtio'/>\n    </disk>"), "{xml}");
    validate(&xml);
    insta::assert_snapshot!(xml);
    // Xen: the same pinning; the swap disk on the Xen bus.
    let x = &c.plan.hosts[1];
    let xml = domain_xml(&spec(&c.plan, x, false));
    assert!(xml.contains("<vcpu placement='static' cpuset='1'>1</vcpu>") && xml.contains("<target dev='xvdc' bus='xen'/>"), "{xml}");
    validate(&xml);
}

#[test]
fn names_and_paths_are_escaped() {
    let c = compile_disk(Path::new("examples/quickstart.mln"));
    let mut h = c.plan.hosts[0].clone();
    h.description = Some("a <b> & 'c'".into());
    let xml = domain_xml(&spec(&c.plan, &h, false));
    assert!(xml.contains("<description>a &lt;b&gt; &amp; &apos;c&apos;</description>"));
    validate(&xml);
}

#[test]
fn the_validator_rejects_a_broken_definition() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("domain.xml");
    std::fs::write(&f, "<domain type='qemu'><name>x</name><memory unit='MiB'>lots</memory></domain>").unwrap();
    let out = std::process::Command::new("virt-xml-validate").arg(&f).arg("domain").output().unwrap();
    assert!(!out.status.success());
}
