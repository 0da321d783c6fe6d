//! The command line, as a user runs it.

mod common;
use assert_cmd::Command;
use predicates::prelude::*;

fn mln() -> Command {
    let mut c = Command::cargo_bin("mln").unwrap();
    c.current_dir(common::root()).env_remove("MLN_PLUGIN_PATH");
    c
}

#[test]
fn check_is_silent_on_a_good_file() {
    mln().args(["check", "examples/lab.mln", "examples/quickstart.mln"]).assert().success().stdout("").stderr("");
    // The paper's DES hash, accepted with `des_hashes`, and its nodes on
    // no switch: warnings only.
    mln()
        .args(["check", "examples/mpi_cluster.mln"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("mln::password::weak"))
        .stderr(predicate::str::contains("mln::network::user_mode"))
        // At the superclass's `network eth0`, where a `switch` would go,
        // not at the autoenum block that gave each node its address.
        .stderr(predicate::str::contains("examples/mpi_cluster.mln:34:5"))
        .stderr(predicate::str::contains("error").not());
    // An interface on no switch: said at its block, once however many
    // hosts inherit it.
    mln()
        .args(["check", "examples/oneVM.mln"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("interface `eth0` has neither `switch` nor `bridge`: it gets user-mode networking"))
        .stderr(predicate::str::contains("examples/oneVM.mln:15:5"));
}

#[test]
fn check_reports_every_problem_and_fails() {
    mln()
        .args(["check", "tests/diagnostics/bad_values.mln"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("9 errors, 0 warnings"))
        .stderr(predicate::str::contains("tests/diagnostics/bad_values.mln:5:5"))
        .stderr(predicate::str::contains("tests/diagnostics/bad_values.mln:16:9"));
}

#[test]
fn warnings_alone_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.mln");
    std::fs::write(&f, "global {\n    project w\n    $never = 1\n}\nhost a {\n}\n").unwrap();
    mln().arg("check").arg(&f).assert().success().stderr(predicate::str::contains("never used"));
}

#[test]
fn plan_json_has_the_documented_fields() {
    let out = mln().args(["plan", "--json", "examples/mpi_cluster.mln"]).assert().success().get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["project"], "mpi_cluster");
    assert_eq!(v["switches"], serde_json::json!([]));
    let h = &v["hosts"][6];
    assert_eq!(h["name"], "node07");
    assert_eq!(h["kind"], "xen");
    assert_eq!(h["superclass"], "hosts");
    assert_eq!(h["service_host"], "xen03.example.org");
    assert_eq!(h["memory_mib"], 128);
    assert_eq!(h["vcpus"], 1);
    assert_eq!(h["template"], "ubuntu-server-cluster.ext3");
    assert_eq!(h["disk_mib"], 700);
    // MLN's `term` has no effect, and is not in the plan.
    assert!(!h.as_object().unwrap().contains_key("term"));
    assert!(!h.as_object().unwrap().contains_key("xen_extra"));
    let i = &h["interfaces"][0];
    assert_eq!(i["name"], "eth0");
    assert_eq!(i["address"], "128.39.74.156");
    assert_eq!(i["netmask"], "255.255.255.0");
    assert_eq!(i["gateway"], "128.39.74.1");
    assert_eq!(i["broadcast"], "128.39.74.255");
    assert!(i["mac"].as_str().unwrap().len() == 17);
    assert_eq!(h["users"][0], serde_json::json!({"name": "disney", "password_hash": "VUmaegY1g8q4I", "home": null, "uid": null}));
    // Absent optional values are null, not missing.
    assert!(h.as_object().unwrap().contains_key("kernel") && h["kernel"].is_null());
    // Local hosts have a null service host.
    let out = mln().args(["plan", "--json", "examples/lab.mln"]).assert().success().get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["hosts"][0]["service_host"].is_null());
}

#[test]
fn plan_table_shows_hosts_addresses_servers_and_plugin_files() {
    mln()
        .args(["plan", "examples/mpi_cluster.mln"])
        .assert()
        .success()
        .stdout(predicate::str::contains("node36"))
        .stdout(predicate::str::contains("128.39.74.185 gw 128.39.74.1"))
        .stdout(predicate::str::contains("xen13.example.org"))
        .stdout(predicate::str::contains("/etc/exports"))
        .stdout(predicate::str::contains("/etc/auto.home"));
}

#[test]
fn plan_refuses_a_broken_project() {
    mln().args(["plan", "tests/diagnostics/duplicates.mln"]).assert().failure().stdout("");
}

#[test]
fn explain_names_every_place() {
    mln()
        .args(["explain", "examples/mpi_cluster.mln", "node07", "network.eth0.gateway"])
        .assert()
        .success()
        .stdout(predicate::str::contains("node07 network.eth0.gateway = 128.39.74.1"))
        .stdout(predicate::str::contains("examples/mpi_cluster.mln:37:9: inherited from superclass hosts"))
        .stdout(predicate::str::contains("$gateway_address = 128.39.74.1 (defined at examples/mpi_cluster.mln:10:5)"))
        .stdout(predicate::str::contains("made by the `autoenum` plugin"));
    mln()
        .args(["explain", "examples/inheritance.mln", "web2", "network.eth0.gateway"])
        .assert()
        .success()
        .stdout(predicate::str::contains("set in host web2 itself"))
        .stdout(predicate::str::contains("overrides this earlier setting"));
    mln()
        .args(["explain", "examples/mpi_cluster.mln", "node07", "network.eth0.mac"])
        .assert()
        .success()
        .stdout(predicate::str::contains("derived from project, host and interface names"));
    mln()
        .args(["explain", "examples/oneVM.mln", "one", "boot_order"])
        .assert()
        .success()
        .stdout(predicate::str::contains("one boot_order = 99 (the default)"));
    mln()
        .args(["explain", "examples/mpi_cluster.mln", "node7", "memory"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("did you mean `node07`"));
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("messy.mln");
    std::fs::write(&f, "global{project m;$x=1}\nhost a {memory $[x]M # one\n}\n").unwrap();
    mln().args(["fmt", "--check"]).arg(&f).assert().failure().stdout(predicate::str::contains("messy.mln"));
    mln().arg("fmt").arg(&f).assert().success();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "global {\n    project m\n    $x = 1\n}\nhost a {\n    memory $[x]M # one\n}\n"
    );
    mln().args(["fmt", "--check"]).arg(&f).assert().success();
}

#[test]
fn every_example_is_formatted() {
    let files: Vec<_> = std::fs::read_dir(common::root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mln"))
        .collect();
    mln().args(["fmt", "--check"]).args(&files).assert().success();
}

/// Copies `from` (a directory of plain files and directories) to `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn parse_prints_a_tree_that_compiles_to_the_same_plan() {
    // Every example, compiled where it stands next to what it reads
    // (`#include`d files, `files` sources): a copy of examples/, so the
    // parse output can be written beside it and read the same files.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&common::root().join("examples"), dir.path());
    let mut examples: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mln"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 11, "{examples:?}");
    for file in examples {
        let ex = file.file_stem().unwrap().to_string_lossy().into_owned();
        // kinds.mln has a kernel in /boot.
        let out = mln().args(["--allow-path", "/boot", "parse", "-f"]).arg(&file).assert().success().get_output().stdout.clone();
        let text = String::from_utf8(out).unwrap();
        let resolved = dir.path().join(format!("{ex}.parsed"));
        std::fs::write(&resolved, &text).unwrap();
        let a = common::compile_disk_allowing(&file, &["/boot"]);
        let b = common::compile_disk_allowing(&resolved, &["/boot"]);
        assert!(!b.diags.has_errors(), "{ex}: parse output does not compile:\n{}\n{text}", common::rendered(&b));
        // The same kinds of warning (written out in every host, one in a
        // superclass is one per host).
        let kinds = |c: &mln::Compilation| common::codes(c).into_iter().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(kinds(&a), kinds(&b), "{ex}:\n{}\n{text}", common::rendered(&b));
        assert_eq!(a.plan, b.plan, "{ex}:\n{text}");
    }
}

#[test]
fn bad_input_never_panics_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junk.mln");
    std::fs::write(&f, b"\xff\xfe{{{ }}} \"\n$ = \n#include\n").unwrap();
    mln().arg("check").arg(&f).assert().failure().code(1);
    mln().args(["check", "/nonexistent/file.mln"]).assert().failure().stderr(predicate::str::contains("cannot read"));
}

#[test]
fn an_overcommitted_placement_is_refused_at_plan_time() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p.mln");
    std::fs::write(
        &project,
        "global {\n    project p\n    autoenum {\n        superclass s\n        numhosts 6\n        service_hosts {\n            h1 4\n            h2 2\n        }\n    }\n}\n\
         superclass s {\n    memory 512M\n    vcpus 2\n}\n",
    )
    .unwrap();
    let fabric = dir.path().join("fabric.toml");
    std::fs::write(&fabric, "[hosts.h1]\nmax_vms = 3\nmemory = \"1G\"\n[hosts.h2]\nvcpus = 8\n").unwrap();
    let out = mln().arg("--fabric").arg(&fabric).args(["plan"]).arg(&project).assert().failure();
    let flat = |b: &[u8]| String::from_utf8_lossy(b).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    let err = flat(&out.get_output().stderr);
    assert!(err.contains("service host `h1` is over-committed: 4 VMs (it takes 3), 2048 MiB of memory (it has 1024 MiB for VMs)"), "{err}");
    assert!(err.contains("p.mln:7:13"), "points at h1's placement: {err}");
    assert!(!err.contains("`h2`"), "h2 fits: {err}");
    // The servers file form: `host max-vms`.
    let servers = dir.path().join("servers.txt");
    std::fs::write(&servers, "h1 4\n# h2 takes two\nh2 1\n").unwrap();
    let out = mln().arg("--fabric").arg(&servers).args(["check"]).arg(&project).assert().failure();
    let err = flat(&out.get_output().stderr);
    assert!(err.contains("service host `h2` is over-committed: 2 VMs (it takes 1)"), "{err}");
    // A service host the fabric does not list.
    std::fs::write(&servers, "h1 4\nh3\n").unwrap();
    mln().arg("--fabric").arg(&servers).args(["check"]).arg(&project).assert().failure().stderr(predicate::str::contains("service host `h2` is not in the fabric file"));
    std::fs::write(&servers, "h1 4\nh2\n").unwrap();
    mln().arg("--fabric").arg(&servers).args(["check"]).arg(&project).assert().success();
}

#[test]
fn a_project_reads_only_under_its_directory_unless_allowed() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("shadow");
    std::fs::write(&secret, "root:SECRETLINE:19000:0:99999:7:::\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p.mln");
    std::fs::write(&project, format!("global {{\n    project p\n}}\n#include {}\n", secret.display())).unwrap();
    let out = mln().arg("check").arg(&project).assert().failure().get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mln::path::outside") && err.contains("--allow-path"), "{err}");
    assert!(!err.contains("SECRETLINE"), "the file was read: {err}");
    // Through a symbolic link inside the project: the same.
    std::os::unix::fs::symlink(secret_dir.path(), dir.path().join("link")).unwrap();
    std::fs::write(&project, "global {\n    project p\n}\n#include link/shadow\n").unwrap();
    let out = mln().arg("check").arg(&project).assert().failure().get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mln::path::outside") && !err.contains("SECRETLINE"), "{err}");
    // Allowed: read (and, being no project text, reported).
    mln().arg("--allow-path").arg(secret_dir.path()).arg("check").arg(&project).assert().failure().stderr(predicate::str::contains("SECRETLINE"));
}

#[test]
fn includes_of_special_files_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = dir.path().join("big.mln");
    // Sparse: refused by its size, before a byte is read.
    std::fs::File::create(&big).unwrap().set_len(17 << 20).unwrap();
    let project = dir.path().join("p.mln");
    std::fs::write(&project, "global {\n    project p\n}\n#include fifo\n#include /dev/zero\n#include big.mln\n").unwrap();
    let started = std::time::Instant::now();
    let out = mln().args(["--allow-path", "/dev", "check"]).arg(&project).timeout(std::time::Duration::from_secs(60)).assert().failure().get_output().clone();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
    assert!(err.contains("a character device, not a regular file"), "{err}");
    assert!(err.contains("mln::syntax::too_large"), "{err}");
    assert_eq!(err.matches("mln::io::not_regular").count(), 2, "{err}");
    // The project file itself, too.
    mln().arg("check").arg(&fifo).timeout(std::time::Duration::from_secs(60)).assert().failure().stderr(predicate::str::contains("mln::io::not_regular"));
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [("bash", "_mln()"), ("zsh", "#compdef mln"), ("fish", "complete -c mln")] {
        let out = mln().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success() && text.contains(marker), "{shell}: {text}");
        for sub in ["build", "start", "stop", "status", "remove", "console"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let man = mln().args(["completions", "man"]).output().unwrap();
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH mln 1") && man.contains("state\\-dir"), "{man}");
}

#[test]
fn usage_errors_exit_2_and_a_missing_project_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    mln().args(["--state-dir", state, "stop", "-p", "x", "-S", "-H"]).assert().code(2);
    mln().args(["--state-dir", state, "stop", "-p", "x", "-w", "soon"]).assert().code(2).stderr(predicate::str::contains("-w takes"));
    mln().args(["--state-dir", state, "status", "-h", "a"]).assert().code(2);
    for cmd in [&["status", "-p", "nope"][..], &["start", "-p", "nope"], &["remove", "-p", "nope"], &["console", "-p", "nope", "-h", "a"]] {
        mln().args(["--state-dir", state]).args(cmd).assert().code(1).stderr(predicate::str::contains("no project nope"));
    }
}

#[test]
fn a_closed_pipe_ends_mln_quietly() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mln"))
        .args(["completions", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "no panic");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_dry_run_refuses_what_a_build_would_refuse_and_a_relative_state_dir_works() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("rel/templates");
    std::fs::create_dir_all(&templates).unwrap();
    let st = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(templates.join("t")).arg("16M").status().unwrap();
    assert!(st.success());
    std::fs::write(dir.path().join("p.mln"), "global { project dry }\nhost a { template t }\nhost b { template t\n lvm }\nhost c { template missing }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mln"))
        .current_dir(dir.path())
        .args(["--state-dir", "rel", "build", "-s", "-f", "p.mln"])
        .env("MLN_KVM", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = |h: &str| text.lines().find(|l| l.split_whitespace().next() == Some(h)).unwrap_or_else(|| panic!("{h}: {text}")).to_string();
    assert!(line("a").contains("ok") && line("a").contains("would build from t"), "{text}");
    assert!(line("b").contains("FAILED") && line("b").contains("LVM"), "{text}");
    assert!(line("c").contains("FAILED") && line("c").contains("missing"), "{text}");
    assert!(!dir.path().join("rel/projects/dry").exists(), "nothing made");
}

#[test]
fn a_malformed_host_set_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let servers = dir.path().join("servers.txt");
    std::fs::write(&servers, "h1\n").unwrap();
    let state = dir.path().join("state");
    for set in ["x]1[2", "h[3-1]", "h[1-99999999]"] {
        mln()
            .args(["--state-dir", state.to_str().unwrap(), "--fabric", servers.to_str().unwrap(), "fabric", "exec", "-w", set, "--", "true"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("panicked").not());
    }
}

#[test]
fn diff_classifies_each_host_and_refuses_what_no_action_can_do() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let base = "global {\n    project lab\n}\nsuperclass n {\n    template t\n    memory 256M\n    vncdisplay 1\n    vncpasswd sekrit\n}\n";
    let a = write("a.mln", &format!("{base}host a {{\n    superclass n\n}}\nhost b {{\n    superclass n\n    size 2G\n}}\nhost c {{\n    superclass n\n}}\n"));
    // a: less memory (live); b: a bigger disk (disk); c gone; d new; the
    // VNC password changes for every host (restart), and is never shown.
    let b = write(
        "b.mln",
        &format!("{}host a {{\n    superclass n\n    memory 128M\n}}\nhost b {{\n    superclass n\n    size 3G\n}}\nhost d {{\n    superclass n\n}}\n", base.replace("sekrit", "other")),
    );
    let out = mln().args(["diff", "--json", &a, &b]).assert().success().get_output().stdout.clone();
    let hosts: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let class = |h: &str| hosts.as_array().unwrap().iter().find(|x| x["host"] == h).unwrap()["class"].as_str().unwrap().to_string();
    assert_eq!(["a", "b", "c", "d"].map(class), ["restart", "disk", "remove", "add"]);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("sekrit") && !text.contains("other\""), "a secret is shown: {text}");
    mln().args(["diff", &a, &b]).assert().success().stdout(predicate::str::contains("- c  remove")).stdout(predicate::str::contains("+ d  add"));
    // The same file: nothing to do.
    mln().args(["diff", &a, &a]).assert().success().stdout(predicate::str::contains("nothing to do"));
    // A disk never shrinks; another project is not an edit of this one.
    let shrink = write("s.mln", &format!("{base}host a {{\n    superclass n\n}}\nhost b {{\n    superclass n\n    size 1G\n}}\nhost c {{\n    superclass n\n}}\n"));
    mln().args(["diff", &a, &shrink]).assert().failure().stderr(predicate::str::contains("mln::upgrade::impossible")).stderr(predicate::str::contains("cannot shrink"));
    let other = write("o.mln", &base.replace("project lab", "project other"));
    mln().args(["diff", &a, &other]).assert().failure().stderr(predicate::str::contains("mln::upgrade::other_project"));
}

#[test]
fn upgrade_of_a_project_never_built_says_so() {
    let d = tempfile::tempdir().unwrap();
    mln()
        .args(["--state-dir", d.path().to_str().unwrap(), "upgrade", "-s", "-f", "examples/lab.mln"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("mln::state::no_project"));
}

/// A reader that goes away (`mln plan --json | head -c 100`) ends mln
/// quietly with a SIGPIPE death's status, though mln ignores SIGPIPE (so
/// that a lost service host fails that host, not mln).
#[test]
fn a_closed_stdout_ends_mln_quietly() {
    use std::io::Read;
    let d = tempfile::tempdir().unwrap();
    let mut p = String::from("global {\n    project many\n}\n");
    for i in 0..3000 {
        p += &format!("host h{i} {{\n    memory 64M\n}}\n");
    }
    let f = d.path().join("many.mln");
    std::fs::write(&f, p).unwrap();
    for args in [&["plan", "--json"][..], &["plan"][..]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mln"))
            .args(args)
            .arg(&f)
            .env("MLN_STATE_DIR", d.path().join("state"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        // stdout's read end dropped here, before mln has written it all.
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{args:?}: nothing said: {}", String::from_utf8_lossy(&out.stderr));
    }
}
