//! External plugins over the JSON protocol, with the shipped Python example
//! and small shell plugins that misbehave on purpose.

mod common;
use common::*;
use mln::plugin::Registry;
use mln::source::DiskFs;
use std::path::{Path, PathBuf};

fn compile_with(path: &Path, plugin_dirs: &[PathBuf]) -> mln::Compilation {
    mln::compile(path, &DiskFs, Registry::new(plugin_dirs.to_vec()))
}

fn examples_dir() -> PathBuf {
    root().join("plugins/examples")
}

fn write_plugin(dir: &Path, name: &str, body: &str) {
    let p = dir.join(format!("mln-plugin-{name}"));
    write_executable(&p, &format!("#!/bin/sh\n{body}\n"));
}

#[test]
fn python_example_expands_and_configures() {
    let c = compile_with(Path::new("plugins/examples/spare.mln"), &[examples_dir()]);
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    let names: Vec<&str> = c.plan.hosts.iter().map(|h| h.name.as_str()).collect();
    // Plugin-made hosts stand where the global block is: before `main`.
    assert_eq!(names, ["spare1", "spare2", "main"]);
    assert_eq!(c.plan.hosts[0].superclass.as_deref(), Some("base"));
    assert_eq!(c.plan.hosts[0].memory_mib, 64);
    let motd = &c.plan.hosts[2].plugins["spare"].files[0];
    assert_eq!(motd.path, "/etc/motd");
    assert_eq!(motd.content, "Welcome to the spares project\nmain is a member of spares\n");
}

#[test]
fn plugin_errors_point_at_the_keyword_in_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    spare {\n        superclass base\n        count 500\n    }\n}\nsuperclass base {\n}\n").unwrap();
    let c = compile_with(&f, &[examples_dir()]);
    let d: Vec<_> = c.diags.sorted().into_iter().filter(|d| d.code == "mln::plugin::external").collect();
    assert_eq!(d.len(), 1, "{}", rendered(&c));
    assert_eq!(c.sources.text(d[0].primary_span().unwrap()), "count 500");
    assert!(d[0].message.contains("count must be a whole number"));
}

#[test]
fn values_are_checked_against_the_declared_types_before_the_plugin_runs() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    spare {\n        superclass base\n        count 1.5\n    }\n}\nsuperclass base {\n}\n").unwrap();
    let c = compile_with(&f, &[examples_dir()]);
    // mln reports it (declared `int`); the plugin is not asked, so its own
    // message does not appear as well.
    assert_eq!(codes(&c), ["mln::plugin::value"], "{}", rendered(&c));
    assert_eq!(c.sources.text(c.diags.sorted()[0].primary_span().unwrap()), "count 1.5");
}

#[test]
fn a_plugin_without_its_executable_is_an_unknown_keyword() {
    let c = compile_with(Path::new("plugins/examples/spare.mln"), &[]);
    assert!(codes(&c).contains(&"mln::unknown_keyword"), "{}", rendered(&c));
    assert!(rendered(&c).contains("mln-plugin-spare"));
}

#[test]
fn wrong_protocol_version_and_crashes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(dir.path(), "future", r#"echo '{"protocol": 3, "name": "future", "keywords": {}}'"#);
    write_plugin(
        dir.path(),
        "crash",
        r#"read req
case "$req" in
  *declare*) echo '{"protocol":2,"name":"crash","hooks":["expand"],"keywords":{"global":{"crash":{"block":{}}}}}' ;;
  *) echo "boom: cannot expand" >&2; exit 3 ;;
esac"#,
    );
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    future {\n    }\n    crash {\n    }\n}\n").unwrap();
    let c = compile_with(&f, &[dir.path().to_path_buf()]);
    let r = rendered(&c);
    let codes = codes(&c);
    assert!(codes.contains(&"mln::plugin::load"), "{r}");
    assert!(r.contains("speaks protocol 3"), "{r}");
    assert!(codes.contains(&"mln::plugin::failed"), "{r}");
    assert!(r.contains("boom: cannot expand"), "{r}");
}

#[test]
fn plugins_run_in_the_order_their_blocks_appear() {
    let order = |first: &str, second: &str| {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.mln");
        let block = |n: &str| match n {
            "cluster" => "    cluster {\n        head a\n    }\n".to_string(),
            _ => "    spare {\n        superclass base\n    }\n".to_string(),
        };
        std::fs::write(
            &f,
            format!("global {{\n    project p\n{}{}}}\nsuperclass base {{\n}}\nhost a {{\n}}\n", block(first), block(second)),
        )
        .unwrap();
        let c = compile_with(&f, &[examples_dir()]);
        assert!(c.ok(), "{}", rendered(&c));
        c.plan.hosts.iter().find(|h| h.name == "a").unwrap().plugins.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(order("cluster", "spare"), ["cluster", "spare"]);
    assert_eq!(order("spare", "cluster"), ["spare", "cluster"]);
}

#[test]
fn plugin_names_never_become_paths_with_slashes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    // `"a/evil" { }` would be looked up as `mln-plugin-a/evil`: a file in a
    // subdirectory of the plugin path. It must not be run.
    std::fs::create_dir(dir.path().join("mln-plugin-a")).unwrap();
    write_plugin(&dir.path().join("mln-plugin-a"), "x", "");
    std::fs::rename(dir.path().join("mln-plugin-a/mln-plugin-x"), dir.path().join("mln-plugin-a/evil")).unwrap();
    std::fs::write(
        dir.path().join("mln-plugin-a/evil"),
        format!("#!/bin/sh\ntouch {}\necho '{{\"protocol\":2,\"name\":\"evil\",\"keywords\":{{}}}}'\n", marker.display()),
    )
    .unwrap();
    // A plugin that declares a name with a slash does not load.
    write_plugin(dir.path(), "sneaky", r#"echo '{"protocol": 2, "name": "../sneaky", "keywords": {"global": {"sneaky": {"block": {}}}}}'"#);
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    \"a/evil\" {\n    }\n    sneaky {\n    }\n}\n").unwrap();
    let c = compile_with(&f, &[dir.path().to_path_buf()]);
    let r = rendered(&c);
    assert!(!marker.exists(), "a plugin was run from a path with a slash");
    assert!(codes(&c).contains(&"mln::unknown_keyword"), "{r}");
    assert!(!r.contains("mln-plugin-a/evil"), "{r}");
    assert!(codes(&c).contains(&"mln::plugin::load") && r.contains("declares a bad name"), "{r}");
}

/// A one-line keyword of its own (`iscsi sanserver`), as MLN's iscsi
/// plugin has it: found on the plugin path by that keyword.
fn iscsi_plugin(dir: &Path) {
    write_plugin(
        dir,
        "iscsi",
        r#"read req
case "$req" in
  *declare*) echo '{"protocol":2,"name":"iscsi","keywords":{"superclass":{"iscsi":"name"}}}' ;;
  *) exit 3 ;;
esac"#,
    );
}

fn settings<'a>(c: &'a mln::Compilation, host: &str, plugin: &str) -> &'a serde_json::Value {
    &c.plan.hosts.iter().find(|h| h.name == host).unwrap().plugin_settings[plugin]
}

#[test]
fn a_course_project_plans_unmodified_with_the_openstack_plugin() {
    let dir = tempfile::tempdir().unwrap();
    iscsi_plugin(dir.path());
    let c = compile_with(&root().join("tests/fixtures/openstack/course.mln"), &[examples_dir(), dir.path().to_path_buf()]);
    // Interfaces without a switch are user-mode ones (said once per block).
    assert!(c.ok(), "{}", rendered(&c));
    assert_eq!(codes(&c), ["mln::network::user_mode"; 2], "{}", rendered(&c));
    let names: Vec<&str> = c.plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["vm_loadbalancer", "vm_webserver-1", "vm_webserver-2", "vm_database", "vm_plain"]);

    // The core still reads its own keywords in `network`...
    let db = &c.plan.hosts[3];
    assert!(db.interfaces[0].dhcp);
    // ...and the plugin's keywords there, in its block (with the core
    // `network` nested in it) and one-line ones are the plugins'.
    let os = settings(&c, "vm_database", "openstack");
    assert_eq!(os["blocks"]["network"]["eth0"]["values"], serde_json::json!({"net": "netsys_net"}));
    let block = &os["blocks"]["openstack"];
    assert_eq!(block["values"], serde_json::json!({"image": "Ubuntu-20.04-LTS", "flavor": "m1.large", "keypair": "master30key"}));
    assert_eq!(
        block["blocks"]["network"]["eth1"]["values"],
        serde_json::json!({"net": "storage_net", "address": "dhcp", "floating-ip": "10.212.136.20"})
    );
    assert_eq!(block["lines"]["user_data"][0], "apt-get update");
    assert_eq!(settings(&c, "vm_database", "iscsi")["values"], serde_json::json!({"iscsi": "sanserver"}));
    let lb = settings(&c, "vm_loadbalancer", "openstack");
    assert_eq!(lb["blocks"]["network"]["eth0"]["values"], serde_json::json!({"net": "netsys_net", "floating-ip": "10.212.136.10"}));
    // A host with none of it has no settings and nothing from the plugin.
    assert!(c.plan.hosts[4].plugin_settings.is_empty() && c.plan.hosts[4].plugins.is_empty());

    // What the plugin was given, as it recorded it in the plan.
    let file = &db.plugins["openstack"].files[0];
    assert_eq!(file.path, "/etc/mln/openstack.json");
    let got: serde_json::Value = serde_json::from_str(&file.content).unwrap();
    assert_eq!(got["host"], "vm_database");
    assert_eq!(got["settings"], *os);
}

#[test]
fn explain_names_the_plugin_a_keyword_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    iscsi_plugin(dir.path());
    let c = compile_with(&root().join("tests/fixtures/openstack/course.mln"), &[examples_dir(), dir.path().to_path_buf()]);
    let explain = |path: &str| mln::explain::explain(&c, "vm_database", path, mln::diag::RenderStyle::Plain).unwrap();
    let e = explain("network.eth0.net");
    assert!(e.contains("vm_database network.eth0.net = netsys_net"), "{e}");
    assert!(e.contains("`net` is a keyword of the `openstack` plugin"), "{e}");
    assert!(e.contains("course.mln:22:17: inherited from superclass common"), "{e}");
    assert!(explain("iscsi").contains("`iscsi` is a keyword of the `iscsi` plugin"));
    assert!(explain("openstack.network.eth1.address").contains("`address` stands in `openstack`, a block of the `openstack` plugin"));
    // The core's own keywords name no plugin.
    assert!(!explain("network.eth0.address").contains("plugin"));
}

#[test]
fn plugin_keywords_in_core_blocks_are_typed_wherever_they_stand() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mln");
    // `net` comes before the `openstack` block that names the plugin.
    std::fs::write(
        &f,
        "global {\n project p\n}\nhost a {\n network eth0 {\n  net two words\n  floating-ip 10.0.0.300\n  switch lan\n }\n openstack {\n  flavor m1.small\n  network eth1 {\n   address nowhere\n  }\n }\n}\nswitch lan {\n}\n",
    )
    .unwrap();
    let c = compile_with(&f, &[examples_dir()]);
    let at: Vec<_> = c
        .diags
        .sorted()
        .iter()
        .map(|d| (d.code, c.sources.text(d.primary_span().unwrap()).to_string()))
        .collect();
    assert_eq!(
        at,
        [
            ("mln::plugin::value", "net two words".to_string()),
            ("mln::plugin::value", "floating-ip 10.0.0.300".to_string()),
            ("mln::plugin::value", "address nowhere".to_string()),
        ],
        "{}",
        rendered(&c)
    );
    // The plugin is not asked with values that do not fit.
    assert!(c.plan.hosts[0].plugins.is_empty());
}

#[test]
fn plugin_keywords_stand_only_where_declared() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n project p\n}\nhost a {\n net x\n openstack {\n  startup {\n   echo no\n  }\n }\n}\n").unwrap();
    let c = compile_with(&f, &[examples_dir()]);
    let r = rendered(&c);
    assert_eq!(codes(&c), ["mln::misplaced_keyword"; 2], "{r}");
    assert!(r.contains("`net` is a plugin's keyword; it belongs in a `network IFACE { }` block"), "{r}");
    // Only the core blocks the plugin names may nest in its block.
    assert!(r.contains("`startup` cannot stand in openstack"), "{r}");
    // Without the plugin, `net` in a network block is unknown.
    let f2 = dir.path().join("q.mln");
    std::fs::write(&f2, "global {\n project p\n}\nhost a {\n network eth0 {\n  net x\n }\n}\n").unwrap();
    let c = compile_with(&f2, &[examples_dir()]);
    assert!(codes(&c).contains(&"mln::unknown_keyword"), "{}", rendered(&c));
}

#[test]
fn an_old_plugin_is_refused_saying_which_protocol_it_speaks() {
    let dir = tempfile::tempdir().unwrap();
    // One answers in protocol 1 whatever it is asked; the other, like the
    // version 1 example, refuses protocol 2 and exits.
    write_plugin(dir.path(), "oldecho", r#"echo '{"protocol":1,"name":"oldecho","blocks":[{"name":"oldecho","context":"global","keywords":{}}]}'"#);
    write_plugin(
        dir.path(),
        "oldstrict",
        r#"read req
case "$req" in
  *'"protocol":1'*) echo '{"protocol":1,"name":"oldstrict","blocks":[]}' ;;
  *) echo "unsupported protocol" >&2; exit 1 ;;
esac"#,
    );
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n project p\n oldecho {\n }\n oldstrict {\n }\n}\n").unwrap();
    let c = compile_with(&f, &[dir.path().to_path_buf()]);
    let loads: Vec<_> = c.diags.sorted().into_iter().filter(|d| d.code == "mln::plugin::load").collect();
    assert_eq!(loads.len(), 2, "{}", rendered(&c));
    for d in &loads {
        assert!(d.message.contains("it speaks protocol 1, this mln speaks 2"), "{}", d.message);
        // At the keyword that named the plugin.
        assert!(c.sources.text(d.primary_span().unwrap()).starts_with("old"));
    }
}

/// The Rust side of the same: a built-in plugin declaring a one-line
/// keyword in hosts, a keyword in `network` and a block that lets
/// `network` nest in it.
struct Vlan;

impl mln::plugin::Plugin for Vlan {
    fn name(&self) -> &str {
        "vlan"
    }
    fn declaration(&self) -> mln::plugin::Declaration {
        use mln::plugin::Context;
        use mln::schema::{Keyword, Kind, Schema, Ty};
        let kw = |name, kind| Keyword { name, kind, alias_of: None, plugin: None };
        let mut trunk = Schema::new("trunk").with("native", Kind::Value(Ty::Int));
        trunk.nest = vec!["network".into()];
        mln::plugin::Declaration {
            blocks: vec![
                (Context::Network, kw("vlan", Kind::Value(Ty::Int))),
                (Context::Host, kw("trunk", Kind::Block(std::sync::Arc::new(trunk)))),
                (Context::Switch, kw("vlans", Kind::Value(Ty::Words))),
            ],
        }
    }
}

#[test]
fn a_rust_plugin_extends_core_blocks_too() {
    let fs = mln::source::MemoryFs::default().with(
        "p.mln",
        "global {\n project p\n}\nhost a {\n network eth0 {\n  switch lan\n  vlan 10\n }\n trunk {\n  native 1\n  network eth9 {\n   vlan 20\n  }\n }\n}\nswitch lan {\n vlans 10 20\n}\n",
    );
    let c = mln::compile(Path::new("p.mln"), &fs, Registry::with_plugins(vec![Box::new(Vlan)]));
    assert!(c.diags.is_empty(), "{}", rendered(&c));
    let s = &c.plan.hosts[0].plugin_settings["vlan"];
    assert_eq!(s["blocks"]["network"]["eth0"]["values"], serde_json::json!({"vlan": "10"}));
    assert_eq!(s["blocks"]["trunk"]["blocks"]["network"]["eth9"]["values"], serde_json::json!({"vlan": "20"}));
    // The core's interface is there as before.
    assert_eq!(c.plan.hosts[0].interfaces[0].switch.as_deref(), Some("lan"));
}

#[test]
fn a_plugin_points_its_messages_at_a_statement_of_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n project p\n}\nhost a {\n network eth0 {\n  switch lan\n  floating-ip 10.0.0.9\n }\n openstack {\n }\n}\nswitch lan {\n}\n").unwrap();
    let c = compile_with(&f, &[examples_dir()]);
    assert_eq!(codes(&c), ["mln::plugin::external"], "{}", rendered(&c));
    let d = &c.diags.sorted()[0];
    assert_eq!(d.severity, mln::diag::Severity::Warning);
    assert_eq!(c.sources.location(d.primary_span().unwrap()), format!("{}:7:3", f.display()));
}
