//! `mln agent` serves a channel's requests in turn, one process for all
//! of them, and ends when its stdin closes (the manager, or its SSH
//! session, went away).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn agent(state: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mln"))
        .arg("--state-dir")
        .arg(state)
        .arg("--templates")
        .arg(state.join("templates"))
        .args(["--connect", "test:///default", "agent"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn one_agent_process_answers_several_requests_and_ends_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = agent(dir.path());
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The second request is written only after the first answer, as the
    // manager does; a bad one is answered and the next still served.
    for req in [r#"{"op":"hello"}"#, r#"{"op":"no_such_op"}"#, r#"{"op":"templates","entries":["absent"]}"#, r#"{"op":"hello"}"#] {
        writeln!(stdin, "{req}").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match req {
            r#"{"op":"hello"}"# => assert_eq!(v["ok"]["protocol"], mln::fabric::proto::PROTOCOL, "{line}"),
            r#"{"op":"no_such_op"}"# => assert!(v.get("error").is_some(), "{line}"),
            _ => assert!(v["ok"][0]["Err"].as_str().is_some_and(|e| e.contains("no template absent")), "{line}"),
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_agent_given_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = agent(dir.path());
    drop(child.stdin.take());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("no request on stdin"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(2));
}
