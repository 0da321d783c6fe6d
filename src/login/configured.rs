//! `mln ssh --wait` waits, by default, until the guest is configured, not
//! only until it accepts the key: mln's templates accept the project key
//! before cloud-init has run at all (src/template/tuning.rs), and stock
//! cloud-init images accept logins before their config and final stages
//! (users' deferred files, `runcmd`). A command run right after a wait
//! finds every file, user and address of the plan in place.

/// Run on the guest through one login: waits up to `secs` seconds, and
/// exits 0 once cloud-init's last stage has finished this boot (its
/// `result.json` is linked under /run, which the local stage clears), or
/// when cloud-init is not enabled on this guest (its generator marks an
/// enabled boot in /run at the start); exits `NOT_YET` if time runs out.
/// One login that sleeps on the guest, not a login a second: each login
/// is an sshd and a PAM session on an emulated CPU that cloud-init needs.
pub fn check(secs: u64) -> String {
    format!("i=0; until test ! -e /run/cloud-init/enabled || test -e /run/cloud-init/result.json; do [ $i -ge {secs} ] && exit {NOT_YET}; i=$((i+1)); sleep 1; done")
}

/// CHECK's status while the guest is still being configured.
pub const NOT_YET: i32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run_in(root: &std::path::Path) -> Option<i32> {
        let check = check(0).replace("/run/", &format!("{}/run/", root.display()));
        Command::new("sh").args(["-c", &check]).status().unwrap().code()
    }

    /// The three states a guest's /run can be in, checked with a real
    /// shell: no cloud-init, cloud-init still running, cloud-init done.
    #[test]
    fn configured_only_when_cloud_init_is_done_or_absent() {
        let d = tempfile::tempdir().unwrap();
        let ci = d.path().join("run/cloud-init");
        std::fs::create_dir_all(&ci).unwrap();
        assert_eq!(run_in(d.path()), Some(0), "a guest without cloud-init is configured");
        std::fs::write(ci.join("enabled"), "").unwrap();
        assert_eq!(run_in(d.path()), Some(NOT_YET));
        std::fs::write(d.path().join("result.json"), "{}").unwrap();
        std::os::unix::fs::symlink(d.path().join("result.json"), ci.join("result.json")).unwrap();
        assert_eq!(run_in(d.path()), Some(0));
        // The link left dangling (the local stage removed the result it
        // points to): not yet.
        std::fs::remove_file(d.path().join("result.json")).unwrap();
        assert_eq!(run_in(d.path()), Some(NOT_YET));
        // It waits on the guest: done while it waits, it says so.
        let ci2 = ci.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            std::fs::remove_file(ci2.join("enabled")).unwrap();
        });
        let waited = check(30).replace("/run/", &format!("{}/run/", d.path().display()));
        assert_eq!(Command::new("sh").args(["-c", &waited]).status().unwrap().code(), Some(0));
        t.join().unwrap();
    }
}
