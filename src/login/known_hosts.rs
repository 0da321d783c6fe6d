//! The project's known_hosts: each guest's host key as mln made it and
//! gave it in the guest's seed (templates mln builds), or else as the guest
//! printed it on its serial console at first boot (cloud-init's
//! `keys_to_console`); never as the network presents them.
//!
//! A key is collected once per build of a guest: what was collected is
//! also kept in the guest's own state directory (`host_keys`), which goes
//! when the guest is removed or rebuilt. So a rebuilt guest's entry is
//! replaced by its new keys, and an entry changed by anyone else is left
//! as it is, for ssh's strict checking to refuse.

use super::LoginError;
use russh::keys::ssh_key::PublicKey;
use std::path::{Path, PathBuf};

const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const END: &str = "-----END SSH HOST KEY KEYS-----";
const MARKER: &str = "host_keys";

pub fn path(state: &crate::state::State, project: &str) -> Result<PathBuf, LoginError> {
    Ok(super::keys::dir(state, project)?.join("known_hosts"))
}

/// The host keys of the last complete block the console holds, as
/// `type base64` (comments dropped: they are the guest's to choose).
/// Lines may carry other output in front (the kernel shares the console).
pub fn from_console(console: &str) -> Vec<String> {
    // A block cut short (the guest reset while printing) does not count.
    let Some(block) = console.split(BEGIN).skip(1).filter_map(|b| b.split_once(END).map(|(k, _)| k)).last() else { return Vec::new() };
    let mut keys = Vec::new();
    for line in block.lines() {
        let mut words = line.split_whitespace().skip_while(|w| !w.starts_with("ssh-") && !w.starts_with("ecdsa-"));
        let (Some(kind), Some(data)) = (words.next(), words.next()) else { continue };
        let text = format!("{kind} {data}");
        if PublicKey::from_openssh(&text).is_ok() && !keys.contains(&text) {
            keys.push(text);
        }
    }
    keys
}

/// The host keys of the first complete block the console holds: on a
/// service host's console (`refresh_remote`), what the guest printed at
/// its first boot, before anything in it could print a block of its own.
pub fn first_from_console(console: &str) -> Vec<String> {
    match console.split(BEGIN).skip(1).find_map(|b| b.split_once(END).map(|(k, _)| k)) {
        Some(block) => from_console(&format!("{BEGIN}{block}{END}")),
        None => Vec::new(),
    }
}

/// Whether the console text holds a complete block (reading may stop).
pub fn has_block(console: &str) -> bool {
    console.split(BEGIN).skip(1).any(|b| b.contains(END))
}

/// [`refresh`] for a guest on a service host, whose console is there and
/// whose directory here does not exist. The keys are the first block of
/// the console (a rebuilt guest has a new console, so new keys replace the
/// entry); what was collected is kept in `login/hosts/HOST`, which serves
/// when the console no longer holds a block (the guest moved to another
/// service host and its new console started after boot). An entry that
/// matches what was collected is left as it is, as `refresh` does.
pub fn refresh_remote(
    state: &crate::state::State,
    project: &str,
    host: &str,
    hosts: &[&str],
    console: impl FnOnce() -> Result<String, LoginError>,
) -> Result<PathBuf, LoginError> {
    let file = path(state, project)?;
    let dir = super::keys::dir(state, project)?.join("hosts");
    let marker = crate::name::inside(&dir, &[host]).map_err(crate::state::StateError::from)?;
    let mut entries = read(&file)?;
    entries.retain(|(h, _)| hosts.contains(&h.as_str()));
    let kept: Option<Vec<String>> = match std::fs::read_to_string(&marker) {
        Ok(t) => Some(t.lines().filter(|l| !l.is_empty()).map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(LoginError::io("read", &marker)(e)),
    };
    let now = first_from_console(&console()?);
    match kept {
        Some(k) if now.is_empty() || now == k => {
            if !entries.iter().any(|(h, _)| h == host) {
                entries.extend(k.into_iter().map(|key| (host.to_string(), key)));
            }
        }
        None if now.is_empty() => return Err(LoginError::NoHostKeys { host: host.into() }),
        _ => {
            std::fs::create_dir_all(&dir).map_err(LoginError::io("create", &dir))?;
            crate::state::write_private(&marker, format!("{}\n", now.join("\n")).as_bytes())?;
            entries.retain(|(h, _)| h != host);
            entries.extend(now.into_iter().map(|k| (host.to_string(), k)));
        }
    }
    write(&file, &entries)?;
    Ok(file)
}

/// Brings `host`'s entry up to date from the key mln gave it at build or
/// else its console (read only when the guest's keys were not collected
/// yet) and drops entries of hosts that
/// are not in `hosts`. Returns the known_hosts path.
pub fn refresh(
    state: &crate::state::State,
    project: &str,
    host: &str,
    hosts: &[&str],
    console: impl FnOnce() -> Result<String, LoginError>,
) -> Result<PathBuf, LoginError> {
    let file = path(state, project)?;
    let marker = state.host_dir(project, host)?.join(MARKER);
    let mut entries = read(&file)?;
    entries.retain(|(h, _)| hosts.contains(&h.as_str()));
    match std::fs::read_to_string(&marker) {
        Ok(kept) => {
            if !entries.iter().any(|(h, _)| h == host) {
                entries.extend(kept.lines().filter(|l| !l.is_empty()).map(|k| (host.to_string(), k.to_string())));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The key mln made and gave the guest at build, where it did:
            // known before the guest boots, so no wait for its console.
            let given = super::keys::host_key_public(&state.host_dir(project, host)?)?;
            let keys = match given {
                Some(k) => vec![k],
                None => from_console(&console()?),
            };
            if keys.is_empty() {
                return Err(LoginError::NoHostKeys { host: host.into() });
            }
            crate::state::write_private(&marker, format!("{}\n", keys.join("\n")).as_bytes())?;
            entries.retain(|(h, _)| h != host);
            entries.extend(keys.into_iter().map(|k| (host.to_string(), k)));
        }
        Err(e) => return Err(LoginError::io("read", &marker)(e)),
    }
    write(&file, &entries)?;
    Ok(file)
}

fn read(file: &Path) -> Result<Vec<(String, String)>, LoginError> {
    match std::fs::read_to_string(file) {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(h, k)| (h.to_string(), k.to_string()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(LoginError::io("read", file)(e)),
    }
}

fn write(file: &Path, entries: &[(String, String)]) -> Result<(), LoginError> {
    let text: String = entries.iter().map(|(h, k)| format!("{h} {k}\n")).collect();
    if std::fs::read_to_string(file).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    Ok(crate::state::write_private(file, text.as_bytes())?)
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn the_last_complete_block_is_read_and_junk_is_not_a_key() {
        let t = tempfile::tempdir().unwrap();
        let pair = super::super::keys::read(&{
            super::super::keys::generate_into(t.path(), "k").unwrap()
        })
        .unwrap();
        let KEY = pair.public_openssh.rsplit_once(' ').map(|(k, _)| k.to_string()).unwrap();
        let console = format!(
            "boot\r\n{BEGIN}\r\nssh-ed25519 AAAAold root@a\r\n{END}\r\n[  5.1] x\r\n{BEGIN}\r\n[   40.2] cloud-init[1]: {KEY} root@node01\r\nssh-rsa notbase64\r\n{END}\r\n{BEGIN}\r\nssh-ed25519 cut"
        );
        assert_eq!(from_console(&console), vec![KEY.clone()]);
        assert!(from_console("no block").is_empty());
        assert_eq!(first_from_console(&console), Vec::<String>::new(), "the first block's key is not valid base64");
        assert!(has_block(&console) && !has_block("x\n-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 cut"));
    }

    fn key(dir: &Path, name: &str) -> String {
        let p = super::super::keys::read(&super::super::keys::generate_into(dir, name).unwrap()).unwrap();
        p.public_openssh.rsplit_once(' ').map(|(k, _)| k.to_string()).unwrap()
    }

    /// The host key mln gave a guest serves without its console; an entry
    /// changed by anyone else stays for ssh to refuse; a rebuilt guest (a
    /// new directory, a new key) replaces its entry.
    #[test]
    fn a_key_mln_gave_needs_no_console_and_a_changed_entry_stays() {
        let t = tempfile::tempdir().unwrap();
        let state = crate::state::State::open(&t.path().join("state")).unwrap();
        // A build made the project's keys (and `login/`) first.
        super::super::keys::ensure(&state, "p").unwrap();
        let dir = state.host_dir("p", "g").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let words = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let given = words(&super::super::keys::host_key(&dir, "p", "g").unwrap().public_openssh);
        let unread = || -> Result<String, LoginError> { panic!("the console is not read for a key mln gave") };
        let file = refresh(&state, "p", "g", &["g"], unread).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {given}\n"));
        let other = key(t.path(), "other");
        std::fs::write(&file, format!("g {other}\n")).unwrap();
        refresh(&state, "p", "g", &["g"], unread).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {other}\n"), "a changed entry is left for ssh to refuse");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let rebuilt = words(&super::super::keys::host_key(&dir, "p", "g").unwrap().public_openssh);
        assert_ne!(rebuilt, given);
        refresh(&state, "p", "g", &["g"], unread).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {rebuilt}\n"));
    }

    #[test]
    fn a_remote_guests_first_block_counts_a_later_one_does_not_and_a_rebuild_replaces_it() {
        let t = tempfile::tempdir().unwrap();
        let state = crate::state::State::open(&t.path().join("state")).unwrap();
        let (a, b) = (key(t.path(), "a"), key(t.path(), "b"));
        let block = |k: &str| format!("{BEGIN}\r\n{k} root@g\r\n{END}\r\n");
        let hosts = ["g", "other"];
        let ok = |c: String| move || -> Result<String, LoginError> { Ok(c) };
        assert!(matches!(refresh_remote(&state, "p", "g", &hosts, ok("booting".into())), Err(LoginError::NoHostKeys { .. })));
        // First boot, then a block someone printed later: the first stays.
        let file = refresh_remote(&state, "p", "g", &hosts, ok(format!("{}x{}", block(&a), block(&b)))).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {a}\n"));
        // Moved: a console with no block; what was collected serves.
        std::fs::write(&file, "").unwrap();
        refresh_remote(&state, "p", "g", &hosts, ok("resumed".into())).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {a}\n"));
        // A changed entry is left for ssh to refuse.
        std::fs::write(&file, format!("g {b}\nother {a}\ngone {a}\n")).unwrap();
        refresh_remote(&state, "p", "g", &hosts, ok(block(&a))).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("g {b}\nother {a}\n"), "a host not in the plan goes");
        // Rebuilt: a new console, new keys.
        std::fs::write(&file, format!("g {a}\nother {a}\n")).unwrap();
        refresh_remote(&state, "p", "g", &hosts, ok(block(&b))).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("other {a}\ng {b}\n"));
    }
}
