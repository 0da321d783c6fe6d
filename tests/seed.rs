//! NoCloud seeds made from plans: the content cloud-init reads.

mod common;
use common::*;
use mln::guest::{fat_image, read_fat_file, seed_files};
use std::path::Path;

fn parse(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim_start_matches("#cloud-config\n")).expect("seed files are JSON (hence YAML)")
}

#[test]
fn seed_carries_hostname_addresses_users_and_files() {
    let c = compile_disk(Path::new("examples/guest_setup.mln"));
    let h = &c.plan.hosts[0];
    let s = seed_files(&c.plan, h, &["Welcome to the lab.\n".to_string()]);
    let meta = parse(&s.meta_data);
    assert_eq!(meta["local-hostname"], "box");
    assert!(meta["instance-id"].as_str().unwrap().starts_with("mln-guest_setup-box-"));
    assert!(s.user_data.starts_with("#cloud-config\n"));
    let ud = parse(&s.user_data);
    assert_eq!(ud["hostname"], "box");
    assert_eq!(ud["users"][1]["name"], "alice");
    assert_eq!(ud["users"][1]["homedir"], "/home/alice");
    assert_eq!(ud["users"][1]["uid"], 1001);
    assert_eq!(ud["users"][1]["groups"], "admins,staff");
    assert_eq!(ud["chpasswd"]["users"][0]["type"], "hash");
    assert_eq!(ud["write_files"][0]["path"], "/etc/motd");
    assert_eq!(ud["write_files"][0]["content"], "Welcome to the lab.\n");
    assert_eq!(ud["bootcmd"][1], "sysctl -w net.ipv4.ip_forward=1; echo forwarding");
    assert_eq!(ud["mounts"][0], serde_json::json!(["10.0.0.5:/export/data", "/data", "nfs", "rw,hard"]));
    let net = parse(&s.network_config);
    assert_eq!(net["version"], 2);
    assert_eq!(net["ethernets"]["eth0"]["dhcp4"], true);
    assert_eq!(net["ethernets"]["eth0"]["match"]["macaddress"], h.interfaces[0].mac);
}

#[test]
fn static_addresses_and_plugin_files_reach_the_seed() {
    let c = compile_disk(Path::new("examples/mpi_cluster.mln"));
    let s = seed_files(&c.plan, &c.plan.hosts[0], &[]);
    let net = parse(&s.network_config);
    assert_eq!(net["ethernets"]["eth0"]["addresses"][0], "128.39.74.150/24");
    assert_eq!(net["ethernets"]["eth0"]["routes"][0]["via"], "128.39.74.1");
    let ud = parse(&s.user_data);
    let paths: Vec<&str> = ud["write_files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/var/spool/torque/server_name", "/var/spool/torque/server_priv/nodes", "/etc/exports"]);
    assert_eq!(ud["bootcmd"][0], "exportfs -ra");
}

#[test]
fn the_instance_id_changes_with_the_configuration_only() {
    let c = compile_disk(Path::new("examples/quickstart.mln"));
    let a = seed_files(&c.plan, &c.plan.hosts[0], &[]);
    assert_eq!(a, seed_files(&c.plan, &c.plan.hosts[0], &[]));
    let mut changed = c.plan.hosts[0].clone();
    changed.interfaces[0].address = Some("10.20.0.99".into());
    let b = seed_files(&c.plan, &changed, &[]);
    assert_ne!(parse(&a.meta_data)["instance-id"], parse(&b.meta_data)["instance-id"]);
}

#[test]
fn the_seed_image_is_fat_labelled_cidata_and_blkid_agrees() {
    let c = compile_disk(Path::new("examples/quickstart.mln"));
    let s = seed_files(&c.plan, &c.plan.hosts[0], &[]);
    let files: Vec<(&str, &[u8])> = s.as_list().iter().map(|(n, d)| (*n, d.as_bytes())).collect();
    let img = fat_image("cidata", &files).unwrap();
    for (name, data) in &files {
        assert_eq!(read_fat_file(&img, name).unwrap(), *data);
    }
    // What the guest (and cloud-init) use to find the seed: blkid's view.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seed.img");
    std::fs::write(&p, &img).unwrap();
    let out = std::process::Command::new("blkid").arg("-o").arg("export").arg(&p).output().expect("blkid runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TYPE=vfat"), "{text}");
    assert!(text.to_ascii_lowercase().contains("label=cidata"), "{text}");
}
