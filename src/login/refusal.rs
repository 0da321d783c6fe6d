//! `mln ssh --wait`: a login the guest refused is tried again until the
//! deadline. A guest of a template that does not apply its seed before
//! sshd starts (an imported cloud image, cloud-init's stock ordering
//! broken by a unit the image adds) can accept connections, with the host
//! key mln gave it, before the project key is authorized; with the host
//! key known at build, a waiting login arrives at exactly that moment.
//! Only ssh's own refusal line counts: a host key that does not match
//! fails at once, as it always does (strict checking).

use std::io::{BufRead, Write};
use std::process::{Command, ExitStatus, Stdio};

/// The line ssh ends a refused login with (sshconnect2.c):
/// `USER@HOST: Permission denied (METHODS).` For the host name ssh was
/// given, so no line a remote command prints is taken for it by chance.
pub fn is_refusal(line: &str, user: &str, host: &str) -> bool {
    line.trim_end().strip_prefix(&format!("{user}@{host}: Permission denied (")).is_some_and(|rest| rest.ends_with(").") || rest.ends_with(')'))
}

/// One try: `ssh` run with its stderr passed on line by line, except a
/// refusal, which is returned instead (the caller prints it if it gives
/// up). stdin and stdout are the caller's: a refused login has read
/// nothing from stdin and written nothing to stdout.
pub fn try_once(mut ssh: Command, user: &str, host: &str) -> std::io::Result<(ExitStatus, Option<String>)> {
    let mut child = ssh.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut refusal = None;
    let mut err = std::io::stderr();
    for line in std::io::BufReader::new(stderr).split(b'\n') {
        let Ok(mut line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        if refusal.is_none() && is_refusal(&text, user, host) {
            refusal = Some(text.trim_end().to_string());
            continue;
        }
        line.push(b'\n');
        let _ = err.write_all(&line);
    }
    Ok((child.wait()?, refusal))
}

/// What a try's outcome means for a waiting login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// ssh ended for any reason but a refusal: its status is the result.
    Done,
    /// The guest refused the key: try again while there is time.
    Refused,
}

/// A refusal is one only when ssh itself failed (255) after printing it.
pub fn outcome(status: &ExitStatus, refusal: &Option<String>) -> Outcome {
    match (status.code(), refusal) {
        (Some(255), Some(_)) => Outcome::Refused,
        _ => Outcome::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn only_sshs_own_refusal_for_this_login_counts() {
        assert!(is_refusal("root@node01: Permission denied (publickey,password).\r", "root", "node01"));
        assert!(is_refusal("root@node01: Permission denied (publickey).", "root", "node01"));
        // Another account, another guest, a remote command's words, a
        // host key that does not match: not a refusal to wait out.
        assert!(!is_refusal("student@node01: Permission denied (publickey).", "root", "node01"));
        assert!(!is_refusal("root@node02: Permission denied (publickey).", "root", "node01"));
        assert!(!is_refusal("cat: /root/x: Permission denied", "root", "node01"));
        assert!(!is_refusal("Host key verification failed.", "root", "node01"));
        assert!(!is_refusal("Permission denied, please try again.", "root", "node01"));
    }

    #[test]
    fn a_refusal_is_retried_only_when_ssh_itself_failed() {
        let line = Some("root@n: Permission denied (publickey).".to_string());
        // exit(255) and exit(0) as wait statuses.
        assert_eq!(outcome(&ExitStatus::from_raw(255 << 8), &line), Outcome::Refused);
        assert_eq!(outcome(&ExitStatus::from_raw(255 << 8), &None), Outcome::Done);
        assert_eq!(outcome(&ExitStatus::from_raw(0), &line), Outcome::Done);
        assert_eq!(outcome(&ExitStatus::from_raw(9), &line), Outcome::Done);
    }

    /// A real child: its stderr passed on, the refusal kept back.
    #[test]
    fn the_refusal_line_is_kept_back_and_the_status_kept() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo 'root@n: Permission denied (publickey).' >&2; exit 255"]);
        let (status, refusal) = try_once(c, "root", "n").unwrap();
        assert_eq!(outcome(&status, &refusal), Outcome::Refused);
        assert_eq!(refusal.as_deref(), Some("root@n: Permission denied (publickey)."));
        let mut c = Command::new("sh");
        c.args(["-c", "exit 7"]);
        let (status, refusal) = try_once(c, "root", "n").unwrap();
        assert_eq!((status.code(), refusal), (Some(7), None));
    }
}
