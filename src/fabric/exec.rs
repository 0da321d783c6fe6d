//! `mln fabric exec`: one command on many service hosts, outputs gathered
//! and identical ones folded (as `clush -b` does).

use super::config::{fold_nodeset, Server};
use super::remote::fan_out;
use super::ssh;
use crate::term::{escape, escape_lines};
use indexmap::IndexMap;
use std::time::Duration;

pub struct Ran {
    pub host: String,
    /// Output (stdout then stderr) and exit status, or why it did not run.
    pub result: Result<(Vec<u8>, Option<u32>), String>,
}

pub async fn run(servers: &[Server], cmd: &str, window: usize, limit: Option<Duration>) -> Vec<Ran> {
    let cmd = cmd.to_string();
    let results = fan_out(servers, window, limit, |s| {
        let cmd = cmd.clone();
        async move {
            let conn = ssh::connect(&s).await?;
            let out = conn.exec(&cmd, b"").await?;
            conn.close().await;
            let mut text = out.stdout;
            text.extend(out.stderr);
            Ok((text, out.status))
        }
    })
    .await;
    servers.iter().zip(results).map(|(s, result)| Ran { host: s.name.clone(), result: result.map_err(|e| e.to_string()) }).collect()
}

/// Folded report: one block per distinct output, hosts named as a node
/// set; then the hosts that failed to run it. Returns the text and the
/// exit code (0 when every host ran it with status 0).
pub fn report(ran: &[Ran]) -> (String, u8) {
    let mut groups: IndexMap<(Vec<u8>, Option<u32>), Vec<String>> = IndexMap::new();
    let mut failed = Vec::new();
    for r in ran {
        match &r.result {
            Ok((out, status)) => groups.entry((out.clone(), *status)).or_default().push(r.host.clone()),
            Err(e) => failed.push(format!("{}: {}", escape(&r.host), escape(e))),
        }
    }
    let mut text = String::new();
    let mut code = 0u8;
    for ((out, status), hosts) in &groups {
        let tail = match status {
            Some(0) => String::new(),
            Some(s) => {
                code = code.max((*s).min(255) as u8).max(1);
                format!(", exit {s}")
            }
            None => {
                code = code.max(1);
                ", killed".into()
            }
        };
        if out.is_empty() && tail.is_empty() {
            continue;
        }
        // Names and output from elsewhere: no escape sequence reaches the terminal.
        text += &format!("---------------\n{} ({}{tail})\n---------------\n", escape(&fold_nodeset(hosts)), hosts.len());
        text += &escape_lines(&String::from_utf8_lossy(out));
        if !out.is_empty() && !out.ends_with(b"\n") {
            text.push('\n');
        }
    }
    if !failed.is_empty() {
        code = code.max(1);
        for f in failed {
            text += &format!("mln: {f}\n");
        }
    }
    (text, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_outputs_fold_and_failures_are_named() {
        let r = |h: &str, out: &str, st: u32| Ran { host: h.into(), result: Ok((out.as_bytes().to_vec(), Some(st))) };
        let ran = vec![
            r("h1", "Linux\n", 0),
            r("h2", "Linux\n", 0),
            r("h3", "oops\n", 2),
            Ran { host: "h4".into(), result: Err("cannot connect".into()) },
            r("h5", "Linux\n", 0),
        ];
        let (text, code) = report(&ran);
        assert_eq!(code, 2);
        assert!(text.contains("h[1-2,5] (3)\n---------------\nLinux\n"), "{text}");
        assert!(text.contains("h3 (1, exit 2)"), "{text}");
        assert!(text.contains("mln: h4: cannot connect"), "{text}");
        let (quiet, code) = report(&[r("h1", "", 0)]);
        assert_eq!((quiet.as_str(), code), ("", 0));
        // A host's output (or error) cannot move the cursor or retitle the window.
        let (text, _) = report(&[
            r("h1", "ok\u{1b}]0;owned\u{7}\n\u{1b}[2Jline\ttab\n", 0),
            Ran { host: "h2".into(), result: Err("bad\u{1b}[1A\nfake".into()) },
        ]);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{text:?}");
        assert!(text.contains("ok\\u{1b}]0;owned\\u{7}\n\\u{1b}[2Jline\ttab\n"), "{text}");
        assert!(text.contains("mln: h2: bad\\u{1b}[1A\\nfake\n"), "{text}");
        let (quiet, code) = report(&[r("h1", "", 0)]);
        assert_eq!((quiet.as_str(), code), ("", 0));
    }
}
