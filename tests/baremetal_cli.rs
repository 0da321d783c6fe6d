//! Bare metal as a user meets it: the plan of a mixed project, the
//! environment library through `mln env`, and `mln build` refusing an
//! environment the library lacks before anything is made.

mod common;
use assert_cmd::Command;
use predicates::prelude::*;

fn mln(state: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("mln").unwrap();
    c.current_dir(common::root()).env_remove("MLN_PLUGIN_PATH").arg("--state-dir").arg(state);
    c
}

#[test]
fn the_plan_of_a_mixed_project_holds_its_nodes() {
    let d = tempfile::tempdir().unwrap();
    let out = mln(d.path()).args(["plan", "--json", "examples/baremetal.mln"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = plan["hosts"].as_array().unwrap();
    let nodes: Vec<&serde_json::Value> = hosts.iter().filter(|h| h["kind"] == "baremetal").collect();
    assert_eq!(nodes.len(), 5);
    // autoenum dealt the MACs of macs.txt in order; each node's first card has it.
    for (i, n) in nodes[..4].iter().enumerate() {
        let mac = format!("52:54:00:b0:00:{:02x}", i + 1);
        assert_eq!(n["baremetal"]["mac"], mac.as_str());
        assert_eq!(n["interfaces"][0]["mac"], mac.as_str());
        assert_eq!(n["baremetal"]["power"]["driver"], "command");
        assert_eq!(n["baremetal"]["boot"], "disk");
    }
    assert_eq!(nodes[4]["baremetal"]["boot"], "diskless");
    assert_eq!(nodes[4]["baremetal"]["power"]["port"], 6230);
    assert_eq!(nodes[4]["baremetal"]["environment"]["version"], 1);
    assert!(hosts.iter().filter(|h| h["kind"] == "kvm").all(|h| h.get("baremetal").is_none()));
}

fn environment(dir: &std::path::Path, version: Option<u32>) -> std::path::PathBuf {
    std::fs::write(dir.join("root.tar"), b"a tar").unwrap();
    std::fs::write(dir.join("vmlinuz"), b"a kernel").unwrap();
    let v = version.map(|v| format!("version = {v}\n")).unwrap_or_default();
    let f = dir.join("env.toml");
    std::fs::write(&f, format!("name = \"testguest\"\n{v}filesystem = \"ext4\"\nkernel = \"vmlinuz\"\n[image]\nfile = \"root.tar\"\nkind = \"tar\"\n")).unwrap();
    f
}

#[test]
fn environments_are_added_listed_shown_and_removed() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let f = environment(d.path(), None);
    mln(&state).args(["env", "add"]).arg(&f).assert().success().stdout("added testguest:1\n");
    mln(&state).args(["env", "add"]).arg(&f).assert().success().stdout("added testguest:2\n");
    mln(&state).args(["env", "list"]).assert().success().stdout(predicate::str::contains("testguest:1").and(predicate::str::contains("testguest:2")));
    let out = mln(&state).args(["env", "show", "testguest", "--json"]).output().unwrap();
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["version"], 2, "the newest when none is named");
    assert_eq!(e["kernel"]["sha256"].as_str().unwrap().len(), 64);
    mln(&state).args(["env", "remove", "testguest:1"]).assert().success();
    mln(&state).args(["env", "show", "testguest:1"]).assert().code(1).stderr(predicate::str::contains("no environment testguest:1"));
    mln(&state).args(["env", "show", "../etc"]).assert().code(2);
    // The files are in the library, nowhere else.
    assert!(state.join("environments/testguest/2/image").is_file());
    assert!(!state.join("environments/testguest/1").exists());
}

#[test]
fn build_refuses_an_environment_the_library_lacks_before_anything_is_made() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    mln(&state)
        .args(["build", "-f", "examples/baremetal.mln"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mln::baremetal::unknown_environment"))
        .stderr(predicate::str::contains("examples/baremetal.mln:36:5"))
        .stderr(predicate::str::contains("testguest:1"));
    mln(&state).args(["list", "--json"]).assert().success().stdout(predicate::str::contains("metal").not());
    // `check` and `plan` stay free of state: the same file is fine for them.
    mln(&state).args(["check", "examples/baremetal.mln"]).assert().success();
}

#[test]
fn stats_show_deployments_failures_and_step_times_per_node() {
    let d = tempfile::tempdir().unwrap();
    let state_dir = d.path().join("state");
    {
        let state = mln::state::State::open(&state_dir).unwrap();
        let step = |host: &str, dep: &str, step: &str, ms: u64, ok: bool| mln::state::StepRecord {
            project: "metal".into(),
            host: host.into(),
            deployment: dep.into(),
            step: step.into(),
            variant: "untrusted".into(),
            retries: u32::from(!ok) * 2,
            duration_ms: ms,
            ok,
            reason: if ok { String::new() } else { "untrusted: the deploy system did not finish within 200s".into() },
            power_level: if step == "deploy_system" { "very_hard".into() } else { String::new() },
            power_driver: if step == "deploy_system" { "fallback".into() } else { String::new() },
        };
        state
            .record_steps(&[
                step("node1", "d1", "deploy_system", 20_000, true),
                step("node1", "d1", "install", 40_000, true),
                step("node2", "d1", "deploy_system", 600_000, false),
                step("node2", "d2", "deploy_system", 30_000, true),
            ])
            .unwrap();
    }
    let out = mln(&state_dir).args(["stats", "-p", "metal", "--json"]).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.as_array().unwrap().len(), 2);
    assert_eq!((s[0]["host"].as_str(), s[0]["deployments"].as_u64(), s[0]["failed"].as_u64()), (Some("node1"), Some(1), Some(0)));
    assert_eq!(s[1]["failure_rate"], 0.5);
    assert_eq!(s[1]["mean_step_secs"]["deploy_system"], 315.0);
    assert_eq!(s[0]["last_power"]["deploy_system"], "very_hard (fallback)");
    assert_eq!(s[1]["power_levels"]["very_hard (fallback)"], 2);
    mln(&state_dir)
        .args(["stats", "-h", "node2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("node2").and(predicate::str::contains("50%")).and(predicate::str::contains("did not finish within 200s")))
        .stdout(predicate::str::contains("power: deploy_system very_hard (fallback)"))
        .stdout(predicate::str::contains("node1").not());
}
