//! `mln start`, `stop`, `status` and `remove` on a built project.

use super::{each, hooks, Env, Outcome};
use crate::backend::domain::domain_name;
use crate::plan::{Host, Plan};
use std::time::{Duration, Instant};

fn plan_of(env: &Env, project: &str) -> Result<Plan, String> {
    let row = env.state.project(project)?.ok_or_else(|| format!("no project {project} (see `mln list`)"))?;
    serde_json::from_str(&row.plan_json).map_err(|e| format!("the recorded plan of {project} is unreadable: {e}"))
}

/// The selected hosts (all when `only` is empty), grouped by ascending
/// `boot_order`: groups run one after another, hosts within one at once.
fn groups<'p>(plan: &'p Plan, only: &[String]) -> Result<Vec<Vec<&'p Host>>, String> {
    for o in only {
        if !plan.hosts.iter().any(|h| &h.name == o) {
            return Err(format!("project {} has no host {o}", plan.project));
        }
    }
    let mut hosts: Vec<&Host> = plan.hosts.iter().filter(|h| only.is_empty() || only.contains(&h.name)).collect();
    hosts.sort_by_key(|h| h.boot_order);
    let mut out: Vec<Vec<&Host>> = Vec::new();
    for h in hosts {
        match out.last_mut() {
            Some(g) if g[0].boot_order == h.boot_order => g.push(h),
            _ => out.push(vec![h]),
        }
    }
    Ok(out)
}

/// Runs `per_host` (given the host and its domain name) over the selected
/// hosts in boot order, reversed for stopping, between the project's hooks
/// for `verb` (`Start` or `Stop`; project hooks only for the whole project).
fn in_order(
    env: &Env,
    project: &str,
    only: &[String],
    verb: &str,
    per_host: impl Fn(&Host, &str) -> Result<String, String> + Sync,
) -> Result<Vec<Outcome>, String> {
    let _lock = env.state.lock(project)?;
    let plan = plan_of(env, project)?;
    let whole = only.is_empty();
    if whole {
        hooks::run(&plan, &format!("beforeProject{verb}"))?;
    }
    hooks::run(&plan, &format!("beforeHosts{verb}"))?;
    let mut gs = groups(&plan, only)?;
    if verb == "Stop" {
        gs.reverse();
    }
    let op = verb.to_lowercase();
    let mut outcomes = Vec::new();
    for g in gs {
        outcomes.extend(each(&op, &g, |h| h.name.clone(), |h| per_host(h, &domain_name(project, &h.name))));
    }
    hooks::run(&plan, &format!("afterHosts{verb}"))?;
    if whole {
        hooks::run(&plan, &format!("afterProject{verb}"))?;
    }
    env.state.journal(project, &op, None, outcomes.iter().all(|o| o.result.is_ok()), "");
    Ok(outcomes)
}

pub fn start(env: &Env, project: &str, only: &[String]) -> Result<Vec<Outcome>, String> {
    in_order(env, project, only, "Start", |_, name| match env.lv.state(name) {
        "running" => Ok("already running".into()),
        "absent" => Err("not built (run mln build)".into()),
        s => {
            let restoring = s == "saved";
            env.lv.start(name)?;
            Ok(if restoring { "restored".into() } else { "started".into() })
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Ask the guest to shut down; force it off after the wait.
    Graceful { wait: Duration },
    /// Save memory state to disk; the next start restores it.
    Save,
    /// Force off at once.
    Hard,
}

pub fn stop(env: &Env, project: &str, only: &[String], mode: StopMode) -> Result<Vec<Outcome>, String> {
    in_order(env, project, only, "Stop", |_, name| stop_host(env, name, mode))
}

fn stop_host(env: &Env, name: &str, mode: StopMode) -> Result<String, String> {
    if env.lv.state(name) != "running" {
        return Ok(format!("not running ({})", env.lv.state(name)));
    }
    match mode {
        StopMode::Save => env.lv.save(name).map(|_| "saved".into()),
        StopMode::Hard => env.lv.destroy(name).map(|_| "forced off".into()),
        StopMode::Graceful { wait } => {
            env.lv.shutdown(name)?;
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if !env.lv.is_active(name)? {
                    return Ok("shut down".into());
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            env.lv.destroy(name)?;
            Ok(format!("did not shut down within {} s: forced off", wait.as_secs()))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub project: String,
    pub host: String,
    /// `running`, `saved`, `shut off` or `absent`.
    pub state: String,
    pub service_host: Option<String>,
    pub addresses: Vec<String>,
}

pub fn status(env: &Env, project: &str) -> Result<Vec<HostStatus>, String> {
    let plan = plan_of(env, project)?;
    Ok(plan
        .hosts
        .iter()
        .map(|h| HostStatus {
            project: project.to_string(),
            host: h.name.clone(),
            state: env.lv.state(&domain_name(project, &h.name)).to_string(),
            service_host: h.service_host.clone(),
            addresses: h
                .interfaces
                .iter()
                .map(|i| format!("{}={}", i.name, if i.dhcp { "dhcp".into() } else { i.address.clone().unwrap_or_default() }))
                .collect(),
        })
        .collect())
}

pub fn remove(env: &Env, project: &str) -> Result<Vec<Outcome>, String> {
    let lock = env.state.lock(project)?;
    let outcomes = remove_locked(env, project)?;
    if env.state.project(project)?.is_none() {
        // Nothing of the project is left, its lock file included (deleted
        // while held: see `ProjectLock::acquire`).
        env.state.drop_lock_file(project);
    }
    drop(lock);
    Ok(outcomes)
}

/// Removes everything recorded for the project; what is already gone is
/// fine, so an interrupted remove can be run again.
pub(super) fn remove_locked(env: &Env, project: &str) -> Result<Vec<Outcome>, String> {
    if env.state.project(project)?.is_none() {
        return Err(format!("no project {project} (see `mln list`)"));
    }
    let resources = env.state.resources(project)?;
    // Project-wide resources (switch bridges) have no host; they go last.
    let mut hosts: Vec<String> = resources.iter().filter(|r| !r.host.is_empty()).map(|r| r.host.clone()).collect();
    hosts.dedup();
    let refs: Vec<&String> = hosts.iter().collect();
    let outcomes = each("remove", &refs, |h| h.to_string(), |h| {
        // Domains first (a running guest holds its disk), then files.
        let mut mine: Vec<_> = resources.iter().filter(|r| &r.host == h).collect();
        mine.sort_by_key(|r| match r.kind.as_str() {
            "domain" => 0,
            "disk" | "seed" => 1,
            _ => 2,
        });
        for r in mine {
            match r.kind.as_str() {
                "domain" => env.lv.destroy_and_undefine(&r.ident)?,
                // A path outside the project's directories (recorded by an
                // older mln from a name it should have refused) is
                // forgotten, never followed.
                "dir" if env.state.owns_path(std::path::Path::new(&r.ident)) => remove_path(&r.ident, true)?,
                _ if env.state.owns_path(std::path::Path::new(&r.ident)) => remove_path(&r.ident, false)?,
                _ => {}
            }
            env.state.forget_resource(project, r)?;
        }
        Ok("removed".into())
    });
    let mut outcomes = outcomes;
    if outcomes.iter().all(|o| o.result.is_ok()) {
        for r in resources.iter().filter(|r| r.host.is_empty() && r.kind == "bridge") {
            let result = crate::backend::bridge::remove(&r.ident).and_then(|_| env.state.forget_resource(project, r));
            outcomes.push(Outcome { host: format!("switch bridge {}", r.ident), result: result.map(|_| "removed".into()) });
        }
    }
    if outcomes.iter().all(|o| o.result.is_ok()) {
        if let Ok(dir) = env.state.project_dir(project) {
            let _ = std::fs::remove_dir(dir);
        }
        env.state.forget_project(project)?;
        env.state.journal(project, "remove", None, true, "removed");
    }
    Ok(outcomes)
}

/// Removes a file or a directory tree; what does not exist, or cannot
/// exist (a name too long for the file system), is already gone.
fn remove_path(path: &str, dir: bool) -> Result<(), String> {
    let r = if dir { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidFilename) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", crate::term::escape(path))),
    }
}
