//! cloud-init NoCloud seed contents for one host: `meta-data`, `user-data`
//! (`#cloud-config`) and `network-config` (version 2).
//!
//! The files are JSON, which is YAML: cloud-init parses them as such, and a
//! guest without a YAML parser (our busybox test guest) can still read them
//! line by line, since each key stands on its own line.

use crate::login::keys::GuestKeys;
use crate::plan::{Host, Plan};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// How a guest finds its swap disk: the label `mkswap -L` gives it at
/// build.
pub const SWAP_SPEC: &str = "LABEL=mln-swap";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFiles {
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
    /// What a login needs, for the early unit of mln's templates
    /// (super::early); only with the project's keys.
    pub early: Vec<(&'static str, String)>,
}

impl SeedFiles {
    pub fn as_list(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![("meta-data", self.meta_data.as_str()), ("user-data", &self.user_data), ("network-config", &self.network_config)];
        v.extend(self.early.iter().map(|(n, c)| (*n, c.as_str())));
        v
    }
}

/// `files` holds the content of each `files` source, in plan order (the
/// caller reads them: this module does no I/O).
pub fn seed_files(plan: &Plan, host: &Host, files: &[String]) -> SeedFiles {
    seed_files_with_keys(plan, host, files, None)
}

/// The seed with the project's keys (crate::login::keys): the login key
/// authorized for root and every planned user; in a `cluster` project the
/// cluster pair too, as each account's own key.
pub fn seed_files_with_keys(plan: &Plan, host: &Host, files: &[String], keys: Option<&GuestKeys>) -> SeedFiles {
    let mut ud = user_data(host, files);
    if let Some(k) = keys {
        add_keys(&mut ud, host, k);
    }
    let network_config = format!("{}\n", pretty(&network_config(host)));
    // The instance id changes whenever anything the guest is given changes,
    // so cloud-init applies a changed configuration on the next boot. The
    // host key is not part of it: a seed made again elsewhere (the
    // receiving side of a migration) may carry another key, and the guest
    // keeps the one it has.
    let mut h = Sha256::new();
    h.update(plan.project.as_bytes());
    let host_key = ud.as_object_mut().expect("user-data is an object").remove("ssh_keys");
    h.update(format!("#cloud-config\n{}\n", pretty(&ud)).as_bytes());
    if let Some(k) = host_key {
        ud["ssh_keys"] = k;
    }
    let user_data = format!("#cloud-config\n{}\n", pretty(&ud));
    h.update(network_config.as_bytes());
    let digest = h.finalize();
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let meta = json!({
        "instance-id": format!("mln-{}-{}-{id}", plan.project, host.name),
        "local-hostname": host.name,
    });
    let early = keys.map(|k| super::early::files(host, k)).unwrap_or_default();
    SeedFiles { meta_data: format!("{}\n", pretty(&meta)), user_data, network_config, early }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

/// Whether the guest's accounts get the cluster pair (the `cluster`
/// plugin configures the host).
pub fn is_cluster(h: &Host) -> bool {
    h.plugins.contains_key("cluster")
}

/// The keys root and every planned user accept.
pub(super) fn authorized(h: &Host, k: &GuestKeys) -> Vec<String> {
    let mut authorized = vec![k.login.clone()];
    if is_cluster(h) {
        authorized.push(k.cluster.public_openssh.clone());
    }
    authorized
}

fn add_keys(ud: &mut Value, h: &Host, k: &GuestKeys) {
    let cluster = is_cluster(h);
    let authorized = authorized(h, k);
    // Root logs in with a key (Debian's sshd: prohibit-password); the
    // default user gets the keys too, as cloud-init gives them.
    ud["disable_root"] = json!(false);
    ud["ssh_authorized_keys"] = json!(authorized);
    if let Some(users) = ud["users"].as_array_mut() {
        for u in users.iter_mut().filter(|u| u.is_object()) {
            u["ssh_authorized_keys"] = json!(authorized);
        }
    }
    if let Some(hk) = &k.host {
        // cloud-init's `ssh` module writes these instead of making keys
        // (and then makes none of another type): the guest answers with
        // the key mln put into the project's known_hosts.
        ud["ssh_keys"] = json!({"ed25519_private": hk.private_openssh, "ed25519_public": hk.public_openssh});
    }
    if !cluster {
        return;
    }
    let wf = ud.as_object_mut().expect("user-data is an object").entry("write_files").or_insert_with(|| json!([]));
    let wf = wf.as_array_mut().expect("write_files is a list");
    let mut own = |home: &str, owner: &str, defer: bool| {
        for (name, content, mode) in [("id_ed25519", &k.cluster.private_openssh, "0600"), ("id_ed25519.pub", &format!("{}\n", k.cluster.public_openssh), "0644")] {
            let mut e = json!({"path": format!("{home}/.ssh/{name}"), "content": content, "permissions": mode, "owner": format!("{owner}:{owner}")});
            // A user's home exists only once cloud-init made the user.
            if defer {
                e["defer"] = json!(true);
            }
            wf.push(e);
        }
    };
    own("/root", "root", false);
    for u in &h.users {
        let home = u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name));
        own(&home, &u.name, true);
    }
}

fn user_data(h: &Host, files: &[String]) -> Value {
    let mut ud = Map::new();
    ud.insert("hostname".into(), json!(h.name));
    // A plugin that writes /etc/hosts (cluster) owns it; otherwise
    // cloud-init keeps the host's own name in it.
    let plugin_hosts = h.plugins.values().any(|o| o.files.iter().any(|f| f.path == "/etc/hosts"));
    ud.insert("manage_etc_hosts".into(), json!(!plugin_hosts));
    let groups_of = |user: &str| -> Vec<&str> {
        h.groups.iter().filter(|g| g.members.iter().any(|m| m == user)).map(|g| g.name.as_str()).collect()
    };
    let mut users = vec![json!("default")];
    for u in &h.users {
        let mut e = Map::new();
        e.insert("name".into(), json!(u.name));
        e.insert("passwd".into(), json!(u.password_hash));
        e.insert("lock_passwd".into(), json!(false));
        e.insert("shell".into(), json!("/bin/sh"));
        if let Some(home) = &u.home {
            e.insert("homedir".into(), json!(home));
        }
        if let Some(uid) = u.uid {
            e.insert("uid".into(), json!(uid));
        }
        let g = groups_of(&u.name);
        if !g.is_empty() {
            e.insert("groups".into(), json!(g.join(",")));
        }
        users.push(Value::Object(e));
    }
    ud.insert("users".into(), Value::Array(users));
    if !h.groups.is_empty() {
        // Groups are created before users, members added as users appear.
        ud.insert("groups".into(), Value::Array(h.groups.iter().map(|g| json!(g.name)).collect()));
    }
    if let Some(root) = &h.root_password_hash {
        ud.insert(
            "chpasswd".into(),
            json!({"expire": false, "users": [{"name": "root", "password": root, "type": "hash"}]}),
        );
    }
    let mut write_files: Vec<Value> = Vec::new();
    for (f, content) in h.files.iter().zip(files) {
        let mut e = json!({"path": f.dest, "content": content});
        if let Some(m) = &f.mode {
            e["permissions"] = json!(m);
        }
        write_files.push(e);
    }
    for out in h.plugins.values() {
        for f in &out.files {
            let mut e = json!({"path": f.path, "content": f.content});
            if let Some(m) = &f.mode {
                e["permissions"] = json!(m);
            }
            write_files.push(e);
        }
    }
    if !h.modules.is_empty() {
        write_files.push(json!({"path": "/etc/modules-load.d/mln.conf", "content": format!("{}\n", h.modules.join("\n"))}));
    }
    // Written even when empty: cloud-init never deletes a file, so commands
    // an upgrade removed would otherwise go on running.
    write_files.push(json!({
        "path": "/etc/mln/shutdown.sh", "permissions": "0755",
        "content": format!("#!/bin/sh\n{}\n", h.shutdown.join("\n")),
    }));
    if !h.shutdown.is_empty() {
        write_files.push(json!({
            "path": "/etc/systemd/system/mln-shutdown.service",
            "content": "[Unit]\nDescription=mln shutdown commands\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\nExecStop=/etc/mln/shutdown.sh\n\n[Install]\nWantedBy=multi-user.target\n",
        }));
    }
    // `startup` runs at every boot once the guest is configured, as MLN's
    // rc.local did, and in the background: a command that never ends (a
    // server, a job) must not hold up the boot, as cloud-init's bootcmd
    // would (it also runs before files and users are written).
    // Both files even with no commands: cloud-init never deletes a file,
    // and commands an upgrade removed must stop running.
    let startup: Vec<&String> = h.startup.iter().chain(h.plugins.values().flat_map(|o| o.startup.iter())).collect();
    let lines: Vec<&str> = startup.iter().map(|s| s.as_str()).collect();
    write_files.push(json!({
        "path": "/etc/mln/startup.sh", "permissions": "0755",
        "content": format!("#!/bin/sh\n{}\n", lines.join("\n")),
    }));
    write_files.push(json!({
        "path": "/var/lib/cloud/scripts/per-boot/mln-startup", "permissions": "0755",
        "content": "#!/bin/sh\nnohup /etc/mln/startup.sh > /var/log/mln-startup.log 2>&1 &\n",
    }));
    if !write_files.is_empty() {
        ud.insert("write_files".into(), Value::Array(write_files));
    }
    if !h.shutdown.is_empty() {
        ud.insert("runcmd".into(), json!(["systemctl enable --now mln-shutdown.service || true"]));
    }
    // fstab entries in fstab's field order; cloud-init fills the two it is
    // not given with `0` and `2`.
    let mut mounts: Vec<Value> = h
        .mounts
        .iter()
        .map(|m| json!([m.source, m.mountpoint, m.fstype, m.options.clone().unwrap_or_else(|| "defaults".into())]))
        .collect();
    if h.swap_mib.is_some() {
        // The swap disk, found by the label mkswap gave it (whatever the
        // disk's name in the guest); no fsck pass for swap. cloud-init runs
        // `swapon -a` when it writes a swap entry.
        mounts.push(json!([SWAP_SPEC, "none", "swap", "sw", "0", "0"]));
    }
    if !mounts.is_empty() {
        ud.insert("mounts".into(), Value::Array(mounts));
    }
    Value::Object(ud)
}

fn prefix_len(netmask: &str) -> Option<u32> {
    netmask.parse::<std::net::Ipv4Addr>().ok().map(|m| u32::from(m).leading_ones())
}

/// An interface's prefix length (24 without a netmask, as before).
pub(super) fn prefix(i: &crate::plan::Interface) -> u32 {
    i.netmask.as_deref().and_then(prefix_len).unwrap_or(24)
}

fn network_config(h: &Host) -> Value {
    let mut ethernets = Map::new();
    for i in &h.interfaces {
        let mut e = Map::new();
        e.insert("match".into(), json!({"macaddress": i.mac}));
        e.insert("set-name".into(), json!(i.name));
        if i.dhcp {
            e.insert("dhcp4".into(), json!(true));
        } else if let Some(a) = &i.address {
            let p = prefix(i);
            e.insert("addresses".into(), json!([format!("{a}/{p}")]));
            if let Some(g) = &i.gateway {
                e.insert("routes".into(), json!([{"to": "default", "via": g}]));
            }
        }
        if !h.nameservers.is_empty() {
            e.insert("nameservers".into(), json!({"addresses": h.nameservers}));
        }
        ethernets.insert(i.name.clone(), Value::Object(e));
    }
    json!({"version": 2, "ethernets": ethernets})
}
