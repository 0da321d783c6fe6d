//! `mln` runs the commands that read project files itself, without
//! libvirt in the process, and hands the others to `mln-libvirt`.

mod common;
use assert_cmd::Command;
use predicates::prelude::*;

fn needed(bin: &str) -> String {
    // readelf comes with the linker that built the binaries.
    let out = std::process::Command::new("readelf").args(["-d", bin]).output().expect("readelf runs");
    assert!(out.status.success(), "readelf -d {bin}");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("(NEEDED)")).collect::<Vec<_>>().join("\n")
}

#[test]
fn mln_links_no_libvirt_and_mln_libvirt_does() {
    let front = needed(env!("CARGO_BIN_EXE_mln"));
    assert!(front.contains("libc.so"), "{front}");
    assert!(!front.contains("libvirt"), "mln must not load libvirt:\n{front}");
    let full = needed(env!("CARGO_BIN_EXE_mln-libvirt"));
    assert!(full.contains("libvirt.so"), "{full}");
}

#[test]
fn a_vm_command_is_answered_by_mln_libvirt() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().to_str().unwrap();
    // Only the full binary opens the state directory and knows projects.
    Command::cargo_bin("mln")
        .unwrap()
        .args(["--state-dir", state, "status", "-p", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no project nope"));
    Command::cargo_bin("mln").unwrap().args(["--state-dir", state, "list", "--json"]).assert().success().stdout("[]\n");
}

#[test]
fn without_mln_libvirt_beside_it_only_the_vm_commands_fail() {
    let d = tempfile::tempdir().unwrap();
    let lone = d.path().join("mln");
    std::fs::copy(env!("CARGO_BIN_EXE_mln"), &lone).unwrap();
    let state = d.path().join("state");
    let mln = || {
        let mut c = Command::new(&lone);
        c.current_dir(common::root()).env_remove("MLN_PLUGIN_PATH");
        c
    };
    mln().args(["check", "examples/lab.mln"]).assert().success().stderr("");
    mln().args(["plan", "--json", "examples/lab.mln"]).assert().success().stdout(predicate::str::contains("\"hosts\""));
    mln()
        .arg("--state-dir")
        .arg(&state)
        .args(["status", "-p", "lab"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mln-libvirt"));
    assert!(!state.exists(), "nothing was done");
}
