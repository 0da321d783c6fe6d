//! External plugins over the JSON protocol, with the shipped Python example
//! and small shell plugins that misbehave on purpose.

mod common;
use common::*;
use mln::plugin::Registry;
use mln::source::DiskFs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn compile_with(path: &Path, plugin_dirs: &[PathBuf]) -> mln::Compilation {
    mln::compile(path, &DiskFs, Registry::new(plugin_dirs.to_vec()))
}

fn examples_dir() -> PathBuf {
    root().join("plugins/examples")
}

fn write_plugin(dir: &Path, name: &str, body: &str) {
    let p = dir.join(format!("mln-plugin-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
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
    write_plugin(dir.path(), "future", r#"echo '{"protocol": 2, "name": "future", "blocks": []}'"#);
    write_plugin(
        dir.path(),
        "crash",
        r#"read req
case "$req" in
  *declare*) echo '{"protocol":1,"name":"crash","hooks":["expand"],"blocks":[{"name":"crash","context":"global","keywords":{}}]}' ;;
  *) echo "boom: cannot expand" >&2; exit 3 ;;
esac"#,
    );
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    future {\n    }\n    crash {\n    }\n}\n").unwrap();
    let c = compile_with(&f, &[dir.path().to_path_buf()]);
    let r = rendered(&c);
    let codes = codes(&c);
    assert!(codes.contains(&"mln::plugin::load"), "{r}");
    assert!(r.contains("speaks protocol 2"), "{r}");
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
        format!("#!/bin/sh\ntouch {}\necho '{{\"protocol\":1,\"name\":\"evil\",\"blocks\":[]}}'\n", marker.display()),
    )
    .unwrap();
    // A plugin that declares a name with a slash does not load.
    write_plugin(dir.path(), "sneaky", r#"echo '{"protocol": 1, "name": "../sneaky", "blocks": [{"name": "sneaky", "context": "global", "keywords": {}}]}'"#);
    let f = dir.path().join("p.mln");
    std::fs::write(&f, "global {\n    project p\n    \"a/evil\" {\n    }\n    sneaky {\n    }\n}\n").unwrap();
    let c = compile_with(&f, &[dir.path().to_path_buf()]);
    let r = rendered(&c);
    assert!(!marker.exists(), "a plugin was run from a path with a slash");
    assert!(codes(&c).contains(&"mln::unknown_keyword"), "{r}");
    assert!(!r.contains("mln-plugin-a/evil"), "{r}");
    assert!(codes(&c).contains(&"mln::plugin::load") && r.contains("declares a bad name"), "{r}");
}
