//! OpenSSH's `known_hosts`, read the way `ssh` reads it, for one decision:
//! may we talk to this host with the key it offers?
//!
//! A line is `[@marker] patterns keytype base64-key [comment]`. Patterns are
//! comma-separated: plain names (case-insensitive, `*` and `?` wildcards,
//! `!` negates), `[host]:port` for ports other than 22, and hashed entries
//! (`|1|salt|hmac-sha1`, as `ssh-keygen -H` writes). `@revoked` marks a key
//! that must never be accepted; `@cert-authority` lines name CAs, not host
//! keys, and are skipped (certificates are refused anyway).
//!
//! The rule: a host with *any* recorded key, of any type, is known; a key
//! other than a recorded one is a changed key, whatever key types the host
//! offers now. (russh's own check answers "unknown" when the recorded key is
//! ed25519 and the host now offers only ECDSA; recording that key would hand
//! the connection to whoever answers.) A line that names the host but whose
//! key cannot be read still counts as a recorded key: it is refused with its
//! line number rather than silently ignored.

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::PublicKey;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What `known_hosts` says about a host and the key it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key is recorded for the host (at this line).
    Known { line: usize },
    /// The key is marked `@revoked` for the host (at this line).
    Revoked { line: usize },
    /// Other keys are recorded for the host: line numbers and key types as
    /// written there.
    Changed { recorded: Vec<(usize, String)> },
    /// Nothing is recorded for the host.
    Unknown,
}

/// The name a host is looked up (and recorded) under: `host`, or
/// `[host]:port` for ports other than 22 (as OpenSSH does).
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug)]
enum Marker {
    None,
    Revoked,
}

/// One line that names the host: its number, marker, key type as written
/// and key (None when it cannot be read).
struct Entry {
    line: usize,
    marker: Marker,
    kind: String,
    key: Option<KeyData>,
}

/// Every line of `text` whose patterns match `host`/`port`.
fn entries_for(text: &str, host: &str, port: u16) -> Vec<Entry> {
    let name = lookup_name(&host.to_ascii_lowercase(), port);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(mut first) = words.next() else { continue };
        let marker = if first.starts_with('@') {
            let m = match first {
                "@revoked" => Marker::Revoked,
                // CAs and markers OpenSSH does not know: not host keys.
                _ => continue,
            };
            match words.next() {
                Some(w) => first = w,
                None => continue,
            }
            m
        } else {
            Marker::None
        };
        if !hosts_match(&name, first) {
            continue;
        }
        let kind = words.next().unwrap_or("").to_string();
        let key = words.next().and_then(|b| russh::keys::parse_public_key_base64(b).ok()).map(|k| k.key_data().clone());
        // A blob of another type than the line says is not to be trusted.
        let key = key.filter(|k| k.algorithm().as_str() == kind);
        out.push(Entry { line: i + 1, marker, kind: if kind.is_empty() { "(no key)".into() } else { kind }, key });
    }
    out
}

/// Decides on `key` offered by `host`:`port` given the known_hosts `text`.
pub fn check(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let entries = entries_for(text, host, port);
    let offered = key.key_data();
    if let Some(e) = entries.iter().find(|e| matches!(e.marker, Marker::Revoked) && e.key.as_ref() == Some(offered)) {
        return Verdict::Revoked { line: e.line };
    }
    let recorded: Vec<&Entry> = entries.iter().filter(|e| matches!(e.marker, Marker::None)).collect();
    if let Some(e) = recorded.iter().find(|e| e.key.as_ref() == Some(offered)) {
        return Verdict::Known { line: e.line };
    }
    if recorded.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Changed { recorded: recorded.iter().map(|e| (e.line, e.kind.clone())).collect() }
    }
}

/// Whether a line's host field matches the lookup name (lowercase). A
/// negated pattern that matches rules the line out.
fn hosts_match(name: &str, field: &str) -> bool {
    let mut hit = false;
    for pat in field.split(',') {
        if let Some(hashed) = pat.strip_prefix("|1|") {
            hit |= hash_matches(name, hashed);
        } else if let Some(neg) = pat.strip_prefix('!') {
            if wildcard(&neg.to_ascii_lowercase(), name) {
                return false;
            }
        } else if wildcard(&pat.to_ascii_lowercase(), name) {
            hit = true;
        }
    }
    hit
}

/// `salt|hash` (both base64) of a hashed entry against the lookup name.
fn hash_matches(name: &str, hashed: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) = (data_encoding::BASE64.decode(salt.as_bytes()), data_encoding::BASE64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok()
}

/// OpenSSH's pattern match: `*` any run, `?` any one character.
/// Linear backtracking (the last `*` only), so no pattern is slow.
fn wildcard(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Records `host`'s key in the known_hosts file at `path` if, read again
/// under an exclusive lock, the file still has nothing for the host (two
/// connections at once, from this process or another, cannot record two
/// different keys). Returns the verdict under the lock: `Unknown` means the
/// key is now recorded; anything else was recorded meanwhile, and nothing
/// is written. The file (and its directory) is created private (0600,
/// 0700) when missing; the line is written in one piece, after a newline
/// if the file lacks one.
pub fn record_new(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<Verdict, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: the descriptor is open; the lock goes with it when `f` closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let verdict = check(&String::from_utf8_lossy(&bytes), host, port, key);
    if verdict != Verdict::Unknown {
        return Ok(verdict);
    }
    let mut line = String::new();
    if bytes.last().is_some_and(|&b| b != b'\n') {
        line.push('\n');
    }
    let bare = PublicKey::new(key.key_data().clone(), "");
    let text = bare.to_openssh().map_err(|e| format!("cannot write the key: {e}"))?;
    line += &format!("{} {text}\n", lookup_name(host, port));
    f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    f.write_all(line.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Verdict::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuQ2cUnB/Ypta5WOjHM180DBUOygvm9a0nmmXIkf8CV";
    const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjxytv0oono87TIPQZDetWAMzJuW0nd10m28tYqO+RK";
    const EC_A: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKPbULXc3si53+R3734DDdIooUaLf97q1mEk3p8eQ9vtUoe0ybYMSo3TKhMIYMpj2zmyk0fDOwyQbUn/kGGwa9M=";
    // `h1` and `[h2]:2222` with ED_A, hashed by `ssh-keygen -H`.
    const HASHED_H1: &str = "|1|lMfI9y5OUwlb4it6wwKNsFdu03g=|jxNrMerg28oZKnywKalqoH9I5Rc=";
    const HASHED_H2_2222: &str = "|1|8A3n+91tblxH1BaABGZB/FoJ6to=|Y8iHCsIl5ViHk3WURWCKi8AcdpE=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn changed(lines: &[(usize, &str)]) -> Verdict {
        Verdict::Changed { recorded: lines.iter().map(|(l, k)| (*l, k.to_string())).collect() }
    }

    #[test]
    fn the_recorded_key_is_known() {
        let kh = format!("# comment\n\nother {ED_B}\nh1 {ED_A} a comment\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Known { line: 4 });
        // Host names are case-insensitive, as in OpenSSH.
        assert_eq!(check(&kh, "H1", 22, &key(ED_A)), Verdict::Known { line: 4 });
    }

    #[test]
    fn another_key_of_the_same_type_is_a_changed_key() {
        let kh = format!("h1 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_B)), changed(&[(1, "ssh-ed25519")]));
    }

    #[test]
    fn a_key_of_another_type_is_a_changed_key_not_a_new_one() {
        // The issue: ed25519 recorded, the host now offers only ECDSA.
        let kh = format!("h0 {EC_A}\nh1 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), changed(&[(2, "ssh-ed25519")]));
        // Every recorded key is named.
        let kh = format!("h1 {ED_A}\nh2 {ED_A}\nh1,h3 {ED_B}\n");
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), changed(&[(1, "ssh-ed25519"), (3, "ssh-ed25519")]));
        // A host with keys of two types may offer either.
        let kh = format!("h1 {ED_A}\nh1 {EC_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), Verdict::Known { line: 2 });
    }

    #[test]
    fn an_unreadable_key_for_the_host_still_counts_as_recorded() {
        for kh in ["h1 ssh-ed25519 AAAA!!notbase64\n", "h1 ssh-unknown-type AAAAC3NzaC1lZDI1NTE5AAAAIOuQ2cUnB\n", "h1\n"] {
            assert!(matches!(check(kh, "h1", 22, &key(ED_A)), Verdict::Changed { .. }), "{kh}");
        }
        // A blob of another type than the line says.
        let kh = format!("h1 ecdsa-sha2-nistp256 {}\n", ED_A.split(' ').nth(1).unwrap());
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), changed(&[(1, "ecdsa-sha2-nistp256")]));
    }

    #[test]
    fn revoked_keys_are_refused_and_cert_authorities_are_not_host_keys() {
        let kh = format!("@revoked h1 {ED_A}\nh1 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Revoked { line: 1 });
        let kh = format!("@revoked * {ED_A}\n");
        assert_eq!(check(&kh, "anyhost", 2222, &key(ED_A)), Verdict::Revoked { line: 1 });
        // A revoked line is not a recorded key: a host with only that is unknown.
        assert_eq!(check(&kh, "h1", 22, &key(ED_B)), Verdict::Unknown);
        let kh = format!("@cert-authority h1 {ED_B}\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Unknown);
        let kh = format!("@cert-authority h1 {ED_B}\nh1 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Known { line: 2 });
    }

    #[test]
    fn hashed_entries() {
        let kh = format!("{HASHED_H1} {ED_A}\n{HASHED_H2_2222} {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(ED_A)), Verdict::Known { line: 1 });
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), changed(&[(1, "ssh-ed25519")]));
        assert_eq!(check(&kh, "h2", 2222, &key(EC_A)), changed(&[(2, "ssh-ed25519")]));
        assert_eq!(check(&kh, "h2", 22, &key(EC_A)), Verdict::Unknown);
        assert_eq!(check(&kh, "h3", 22, &key(EC_A)), Verdict::Unknown);
        // Broken hashes match nothing.
        assert_eq!(check(&format!("|1|x|y {ED_A}\n|1|nope {ED_A}\n"), "h1", 22, &key(EC_A)), Verdict::Unknown);
    }

    #[test]
    fn ports_are_matched_as_openssh_does() {
        let kh = format!("[h1]:2222 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 2222, &key(ED_A)), Verdict::Known { line: 1 });
        assert_eq!(check(&kh, "h1", 2222, &key(EC_A)), changed(&[(1, "ssh-ed25519")]));
        // Port 22 is looked up as the bare name; other ports are other entries.
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), Verdict::Unknown);
        assert_eq!(check(&kh, "h1", 2223, &key(EC_A)), Verdict::Unknown);
        let kh = format!("h1 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 2222, &key(EC_A)), Verdict::Unknown);
    }

    #[test]
    fn patterns_wildcards_and_negation() {
        let kh = format!("a,b,10.0.0.* {ED_A}\n");
        assert_eq!(check(&kh, "b", 22, &key(EC_A)), changed(&[(1, "ssh-ed25519")]));
        assert_eq!(check(&kh, "10.0.0.7", 22, &key(EC_A)), changed(&[(1, "ssh-ed25519")]));
        assert_eq!(check(&kh, "10.0.1.7", 22, &key(EC_A)), Verdict::Unknown);
        let kh = format!("h?,!h2 {ED_A}\n");
        assert_eq!(check(&kh, "h1", 22, &key(EC_A)), changed(&[(1, "ssh-ed25519")]));
        assert_eq!(check(&kh, "h2", 22, &key(EC_A)), Verdict::Unknown);
        assert_eq!(check(&kh, "h10", 22, &key(EC_A)), Verdict::Unknown);
        assert!(wildcard("*a*b*c", "xxaxxbxxc") && !wildcard("*a*b*c", "xxaxxbxx") && wildcard("*", ""));
        // No blow-up on hostile patterns.
        let p = "*a".repeat(2000);
        assert!(!wildcard(&p, &"a".repeat(1999)));
    }

    #[test]
    fn an_unknown_host_is_unknown() {
        assert_eq!(check("", "h1", 22, &key(ED_A)), Verdict::Unknown);
        assert_eq!(check(&format!("h10 {ED_A}\nh {ED_A}\n"), "h1", 22, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn recording_creates_a_private_file_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ssh/known_hosts");
        assert_eq!(record_new(&p, "h1", 22, &key(ED_A)).unwrap(), Verdict::Unknown);
        assert_eq!(record_new(&p, "h2", 2222, &key(EC_A)).unwrap(), Verdict::Unknown);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("h1 {ED_A}\n[h2]:2222 {EC_A}\n"));
        assert_eq!(check(&text, "h2", 2222, &key(EC_A)), Verdict::Known { line: 2 });
        // A file without a final newline gets one first.
        std::fs::write(&p, format!("h0 {ED_B}")).unwrap();
        assert_eq!(record_new(&p, "h1", 22, &key(ED_A)).unwrap(), Verdict::Unknown);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("h0 {ED_B}\nh1 {ED_A}\n"));
        // Recorded meanwhile (another connection): nothing more is written.
        assert_eq!(record_new(&p, "h1", 22, &key(EC_A)).unwrap(), changed(&[(2, "ssh-ed25519")]));
        assert_eq!(record_new(&p, "h1", 22, &key(ED_A)).unwrap(), Verdict::Known { line: 2 });
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("h0 {ED_B}\nh1 {ED_A}\n"));
    }
}
