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
    let file = |path: &str| ud["write_files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no {path}")).clone();
    let startup = file("/etc/mln/startup.sh");
    assert!(startup["content"].as_str().unwrap().contains("\nsysctl -w net.ipv4.ip_forward=1; echo forwarding\n"), "{startup}");
    assert_eq!(startup["permissions"], "0755");
    // Run at every boot, after the configuration, in the background.
    let per_boot = file("/var/lib/cloud/scripts/per-boot/mln-startup");
    assert!(per_boot["content"].as_str().unwrap().contains("/etc/mln/startup.sh > /var/log/mln-startup.log 2>&1 &"), "{per_boot}");
    assert!(ud.get("bootcmd").is_none(), "bootcmd would hold up the boot until the commands end");
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
    assert_eq!(
        paths,
        [
            "/var/spool/torque/server_name",
            "/var/spool/torque/server_priv/nodes",
            "/etc/exports",
            "/etc/hosts",
            "/etc/ssh/ssh_config.d/mln-cluster.conf",
            "/etc/mln/hostfile",
            "/etc/mln/shutdown.sh",
            "/etc/mln/startup.sh",
            "/var/lib/cloud/scripts/per-boot/mln-startup"
        ]
    );
    assert!(ud["write_files"][7]["content"].as_str().unwrap().contains("exportfs -ra"));
    // The plugin's /etc/hosts stays: cloud-init does not rewrite it.
    assert_eq!(ud["manage_etc_hosts"], false);
    assert!(ud.get("ssh_authorized_keys").is_none(), "keys without being given any");
}

/// The project's keys: the login key for root and every user; in a
/// cluster project the cluster pair as each account's own key (a user's
/// written once cloud-init made the user).
#[test]
fn keys_reach_root_every_user_and_in_a_cluster_each_account() {
    let c = compile_disk(Path::new("examples/mpi_cluster.mln"));
    let keys = mln::login::keys::GuestKeys {
        login: "ssh-ed25519 AAAALOGIN mln-p".into(),
        cluster: mln::login::keys::KeyPair { private_openssh: "PRIVATE\n".into(), public_openssh: "ssh-ed25519 AAAACLUSTER c".into() },
        host: None,
    };
    let h = &c.plan.hosts[1];
    let ud = parse(&mln::guest::seed_files_with_keys(&c.plan, h, &[], Some(&keys)).user_data);
    let both = serde_json::json!(["ssh-ed25519 AAAALOGIN mln-p", "ssh-ed25519 AAAACLUSTER c"]);
    assert_eq!(ud["ssh_authorized_keys"], both);
    assert_eq!(ud["disable_root"], false);
    let disney = ud["users"].as_array().unwrap().iter().find(|u| u["name"] == "disney").unwrap();
    assert_eq!(disney["ssh_authorized_keys"], both);
    let wf = ud["write_files"].as_array().unwrap();
    let root = wf.iter().find(|f| f["path"] == "/root/.ssh/id_ed25519").unwrap();
    assert_eq!((root["content"].as_str(), root["permissions"].as_str(), root.get("defer")), (Some("PRIVATE\n"), Some("0600"), None));
    let user = wf.iter().find(|f| f["path"].as_str().unwrap().ends_with("/.ssh/id_ed25519") && f["owner"] == "disney:disney").unwrap();
    assert_eq!(user["defer"], true);

    // Without the cluster plugin: the login key only, no private key.
    let c = compile_disk(Path::new("examples/lab.mln"));
    let ud = parse(&mln::guest::seed_files_with_keys(&c.plan, &c.plan.hosts[0], &[], Some(&keys)).user_data);
    assert_eq!(ud["ssh_authorized_keys"], serde_json::json!(["ssh-ed25519 AAAALOGIN mln-p"]));
    assert!(!ud.to_string().contains("PRIVATE"));
    assert_eq!(ud["manage_etc_hosts"], true);
}

/// A guest of a template mln built gets the host key mln made for it, for
/// cloud-init's `ssh` module to install; the key does not change the
/// instance id (a seed made again with another key applies nothing anew).
#[test]
fn the_host_key_mln_made_reaches_the_seed_but_not_the_instance_id() {
    let c = compile_disk(Path::new("examples/lab.mln"));
    let h = &c.plan.hosts[0];
    let pair = |n: &str| mln::login::keys::KeyPair { private_openssh: format!("HOSTPRIVATE{n}\n"), public_openssh: format!("ssh-ed25519 AAAAHOST{n} h") };
    let mut keys = mln::login::keys::GuestKeys {
        login: "ssh-ed25519 AAAALOGIN mln-p".into(),
        cluster: mln::login::keys::KeyPair { private_openssh: "PRIVATE\n".into(), public_openssh: "ssh-ed25519 AAAACLUSTER c".into() },
        host: None,
    };
    let without = mln::guest::seed_files_with_keys(&c.plan, h, &[], Some(&keys));
    assert!(parse(&without.user_data).get("ssh_keys").is_none());
    keys.host = Some(pair("1"));
    let with = mln::guest::seed_files_with_keys(&c.plan, h, &[], Some(&keys));
    let ud = parse(&with.user_data);
    assert_eq!(ud["ssh_keys"], serde_json::json!({"ed25519_private": "HOSTPRIVATE1\n", "ed25519_public": "ssh-ed25519 AAAAHOST1 h"}));
    assert_eq!(ud["ssh_authorized_keys"], serde_json::json!(["ssh-ed25519 AAAALOGIN mln-p"]), "the host key is not a login key");
    keys.host = Some(pair("2"));
    let other = mln::guest::seed_files_with_keys(&c.plan, h, &[], Some(&keys));
    assert_ne!(with.user_data, other.user_data);
    assert_eq!(parse(&with.meta_data)["instance-id"], parse(&without.meta_data)["instance-id"]);
    assert_eq!(parse(&with.meta_data)["instance-id"], parse(&other.meta_data)["instance-id"]);
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

#[test]
fn a_swap_disk_is_mounted_by_its_label() {
    let c = compile_mem(&[(
        "/p/p.mln",
        "global { project sw }\nswitch lan { }\nhost a {\n swap 256M\n mount {\n  10.0.0.5:/data /data nfs\n }\n network eth0 { switch lan }\n}\nhost b {\n network eth0 { switch lan }\n}\n",
    )]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    let ud = parse(&seed_files(&c.plan, &c.plan.hosts[0], &[]).user_data);
    // After the project's own mounts; spelt out to the last field, as
    // cloud-init's default pass number (2) is no swap's.
    assert_eq!(
        ud["mounts"],
        serde_json::json!([["10.0.0.5:/data", "/data", "nfs", "defaults"], ["LABEL=mln-swap", "none", "swap", "sw", "0", "0"]])
    );
    let ud = parse(&seed_files(&c.plan, &c.plan.hosts[1], &[]).user_data);
    assert!(ud.get("mounts").is_none(), "no swap, no mounts: {ud}");
}

#[test]
fn a_filesystem_template_gets_one_fstab_line_for_swap() {
    let c = compile_mem(&[("/p/p.mln", "global { project sw }\nhost a {\n swap 64M\n}\n")]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), "/dev/vda / ext4 errors=remount-ro 0 1\n").unwrap();
    let img = d.path().join("disk.img");
    let st = std::process::Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&root).arg(&img).arg("8M").status().unwrap();
    assert!(st.success());
    // Twice: a build run again writes the line again, not a second one.
    for _ in 0..2 {
        let files = mln::guest::fstemplate::files(&c.plan, &c.plan.hosts[0], &img, &[]).unwrap();
        mln::guest::fstemplate::inject(&img, &files).unwrap();
    }
    let fstab = mln::guest::fstemplate::read(&img, "/etc/fstab").unwrap();
    assert_eq!(fstab, "/dev/vda / ext4 errors=remount-ro 0 1\nLABEL=mln-swap\tnone\tswap\tsw\t0\t0\n");
}

/// What the early unit of mln's templates reads (src/guest/early.rs):
/// plain lines beside cloud-init's files, the same keys and addresses,
/// on a FAT image blkid finds by the label the unit asks for.
#[test]
fn a_login_s_needs_reach_the_seed_as_plain_lines() {
    let c = compile_disk(Path::new("examples/mpi_cluster.mln"));
    let h = &c.plan.hosts[0];
    let keys = mln::login::keys::GuestKeys {
        login: "ssh-ed25519 AAAALOGIN mln-p".into(),
        cluster: mln::login::keys::KeyPair { private_openssh: "PRIVATE\n".into(), public_openssh: "ssh-ed25519 AAAACLUSTER c".into() },
        host: Some(mln::login::keys::KeyPair { private_openssh: "HOSTPRIVATE\n".into(), public_openssh: "ssh-ed25519 AAAAHOST h".into() }),
    };
    let s = mln::guest::seed_files_with_keys(&c.plan, h, &[], Some(&keys));
    let file = |n: &str| s.early.iter().find(|(f, _)| *f == n).unwrap_or_else(|| panic!("no {n}")).1.clone();
    assert_eq!(file("mln-hostname"), format!("{}\n", h.name));
    assert_eq!(file("mln-authorized-keys"), "ssh-ed25519 AAAALOGIN mln-p\nssh-ed25519 AAAACLUSTER c\n");
    assert_eq!(file("mln-host-key"), "HOSTPRIVATE\n");
    assert_eq!(file("mln-host-key.pub"), "ssh-ed25519 AAAAHOST h\n");
    let i = &h.interfaces[0];
    assert_eq!(file("mln-links"), format!("{} eth0 128.39.74.150/24 128.39.74.1\n", i.mac.to_ascii_lowercase()));
    // The same address and gateway as cloud-init's network-config.
    let net = parse(&s.network_config);
    assert_eq!(net["ethernets"]["eth0"]["addresses"][0], "128.39.74.150/24");
    // No keys, no early files (a guest of a template without the unit).
    assert!(seed_files(&c.plan, h, &[]).early.is_empty());

    let files: Vec<(&str, &[u8])> = s.as_list().iter().map(|(n, d)| (*n, d.as_bytes())).collect();
    let img = fat_image("cidata", &files).unwrap();
    for (name, data) in &files {
        assert_eq!(read_fat_file(&img, name).unwrap(), *data, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seed.img");
    std::fs::write(&p, &img).unwrap();
    let out = std::process::Command::new("blkid").args(["-o", "device", "-t", "LABEL=CIDATA"]).arg(&p).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), p.display().to_string(), "the early unit's probe does not find the seed");

    // DHCP: the word `dhcp`, no gateway.
    let c = compile_disk(Path::new("examples/guest_setup.mln"));
    let h = &c.plan.hosts[0];
    let s = mln::guest::seed_files_with_keys(&c.plan, h, &["Welcome.\n".to_string()], Some(&keys));
    let links = &s.early.iter().find(|(f, _)| *f == "mln-links").unwrap().1;
    assert_eq!(links, &format!("{} eth0 dhcp -\n", h.interfaces[0].mac.to_ascii_lowercase()));
}
