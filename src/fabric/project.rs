//! Projects spread over service hosts: each service host's share of the
//! plan goes to its agent, all hosts at once; hosts without a service host
//! are built here by the same lifecycle code, at the same time. The
//! managing machine records the whole plan and which service hosts hold
//! parts of it; each service host records its own share.

use super::config::{Fabric, Server};
use super::proto::{Info, Request, StopMode};
use super::push::push_entry;
use super::remote::{attach, fan_out, Agent};
use crate::lifecycle::{self, Env, HostStatus, Outcome};
use crate::plan::{Host, Plan};
use crate::state::{FabricRow, State};
use indexmap::IndexMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use crate::term::{escape, escape_lines};

pub struct Ctx<'a> {
    pub fabric: &'a Fabric,
    pub state: &'a State,
    /// The local templates directory (what gets pushed).
    pub templates: PathBuf,
    pub rt: &'a tokio::runtime::Runtime,
}

/// Whether a plan needs the fabric.
pub fn uses_fabric(plan: &Plan) -> bool {
    plan.hosts.iter().any(|h| h.service_host.is_some())
}

/// A service host's share of the plan: its hosts, the switches they use,
/// no hooks (those run here), templates named by the exact local entry.
fn share(plan: &Plan, hosts: &[&Host], templates: &Path) -> Plan {
    let mut p = plan.clone();
    p.hooks.clear();
    // Each template looked up once, not once per host.
    let mut entries: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    p.hosts = hosts
        .iter()
        .map(|h| {
            let mut h = (*h).clone();
            h.service_host = None;
            let entry = entries.entry(h.template.clone()).or_insert_with(|| crate::backend::template::find(templates, &h.template).ok().map(|t| t.name));
            if let Some(e) = entry {
                h.template = e.clone();
            }
            h
        })
        .collect();
    p.switches.retain(|s| p.hosts.iter().any(|h| h.interfaces.iter().any(|i| i.switch.as_deref() == Some(&s.name))));
    p
}

fn by_server<'p>(hosts: &[&'p Host]) -> IndexMap<Option<String>, Vec<&'p Host>> {
    let mut m: IndexMap<Option<String>, Vec<&Host>> = IndexMap::new();
    for h in hosts {
        m.entry(h.service_host.clone()).or_default().push(h);
    }
    m
}

/// A service host's outcomes, named `vm@server`; its text escaped for the
/// terminal (it came from elsewhere).
fn tag(outcomes: Vec<Outcome>, server: &str) -> Vec<Outcome> {
    let esc = |s: String| escape_lines(&s).into_owned();
    outcomes
        .into_iter()
        .map(|o| Outcome { host: format!("{}@{server}", escape(&o.host)), result: o.result.map(esc).map_err(esc) })
        .collect()
}

fn failed_all(hosts: &[String], server: &str, e: &str) -> Vec<Outcome> {
    hosts.iter().map(|h| Outcome { host: format!("{h}@{server}"), result: Err(format!("service host {server}: {e}")) }).collect()
}

fn printer(server: String) -> impl Fn(&str) + Sync + Send {
    move |l: &str| eprintln!("{server}: {l}")
}

async fn attach_all(servers: &[Server], fanout: usize) -> Vec<Result<Arc<Agent>, String>> {
    fan_out(servers, fanout, None, |s| async move { attach(&s).await.map(Arc::new) }).await
}

/// Builds every host of `plan` on its service host (or here).
pub fn build(ctx: &Ctx, local: Option<&Env>, plan: &Plan, file: &Path, replace: bool) -> Result<Vec<Outcome>, String> {
    let _lock = ctx.state.lock(&format!("{}.fabric", plan.project))?;
    let old = ctx.state.fabric_project(&plan.project)?;
    if let Some(row) = &old {
        if row.state == "built" && !replace {
            return Err(format!(
                "project {} is already built (from {}); `mln build -r` replaces it, `mln remove -p {}` removes it",
                plan.project, row.file, plan.project
            ));
        }
    }
    let hosts: Vec<&Host> = plan.hosts.iter().collect();
    let groups = by_server(&hosts);
    let names: Vec<String> = groups.keys().flatten().cloned().collect();
    let mut servers_recorded = old.as_ref().map(|r| r.servers.clone()).unwrap_or_default();
    for n in &names {
        if !servers_recorded.contains(n) {
            servers_recorded.push(n.clone());
        }
    }
    // Recorded before anything is made on them, so `remove` finds them.
    ctx.state.save_fabric_project(&FabricRow {
        name: plan.project.clone(),
        state: "building".into(),
        file: file.display().to_string(),
        plan_json: serde_json::to_string(plan).map_err(|e| e.to_string())?,
        servers: servers_recorded.clone(),
    })?;
    let mut outcomes = Vec::new();
    // Service hosts that held part of the project before and hold none now.
    if replace {
        let gone: Vec<Server> = servers_recorded.iter().filter(|s| !names.contains(s)).map(|s| ctx.fabric.server(s)).collect();
        if !gone.is_empty() {
            let r = remove_on(ctx, &gone, &plan.project);
            outcomes.extend(r.into_iter().filter(|o| o.result.is_err()));
        }
    }
    let shares: Vec<(Server, Plan)> = names
        .iter()
        .map(|n| (ctx.fabric.server(n), share(plan, &groups[&Some(n.clone())], &ctx.templates)))
        .collect();
    let resume = old.as_ref().is_some_and(|r| r.state == "building");
    let remote = ctx.rt.spawn(build_remote(
        shares,
        file.display().to_string(),
        replace,
        resume,
        ctx.templates.clone(),
        ctx.state.dir().join("cache"),
        ctx.fabric.fanout,
    ));
    if let Some(local_hosts) = groups.get(&None) {
        let env = local.ok_or("hosts without a service host need the local libvirt")?;
        let mine = share(plan, local_hosts, &ctx.templates);
        let done = if resume && !replace { super::agent::built_from(env.state, &mine)? } else { None };
        match done.map(Ok).unwrap_or_else(|| lifecycle::build(env, &mine, file, replace)) {
            Ok(o) => outcomes.extend(o),
            Err(e) => outcomes.extend(local_hosts.iter().map(|h| Outcome { host: h.name.clone(), result: Err(e.clone()) })),
        }
    }
    outcomes.extend(ctx.rt.block_on(remote).map_err(|e| e.to_string())?);
    let ok = outcomes.iter().all(|o| o.result.is_ok());
    ctx.state.journal(&plan.project, "fabric build", None, ok, if ok { "built" } else { "some hosts failed" });
    if ok {
        let mut row = ctx.state.fabric_project(&plan.project)?.ok_or("the project's record vanished")?;
        row.state = "built".into();
        row.servers = names;
        ctx.state.save_fabric_project(&row)?;
    }
    Ok(outcomes)
}

async fn build_remote(shares: Vec<(Server, Plan)>, file: String, replace: bool, resume: bool, templates: PathBuf, cache: PathBuf, fanout: usize) -> Vec<Outcome> {
    let servers: Vec<Server> = shares.iter().map(|(s, _)| s.clone()).collect();
    let vm_names = |i: usize| -> Vec<String> { shares[i].1.hosts.iter().map(|h| h.name.clone()).collect() };
    let agents = attach_all(&servers, fanout).await;
    let mut failed: Vec<Option<String>> = agents.iter().map(|a| a.as_ref().err().cloned()).collect();
    // Live capacity: memory for the VMs not there yet.
    let infos = futures_join(agents.iter().map(|a| {
        let a = a.as_ref().ok().cloned();
        async move {
            match a {
                Some(a) => a.call_as::<Info>(&Request::Info, &|_| {}).await.map(Some),
                None => Ok(None),
            }
        }
    }))
    .await;
    for (i, info) in infos.into_iter().enumerate() {
        match info {
            Err(e) => failed[i] = Some(e),
            Ok(Some(info)) => {
                let project = &shares[i].1.project;
                let new: Vec<&Host> = shares[i]
                    .1
                    .hosts
                    .iter()
                    .filter(|h| !info.domains.iter().any(|d| d.name == crate::backend::domain::domain_name(project, &h.name)))
                    .collect();
                let need = super::capacity::total(&new, |h| h.memory_mib);
                if need > info.memory_available_mib {
                    failed[i] = Some(format!(
                        "not enough memory: {} new VMs need {need} MiB, {} has {} MiB available",
                        new.len(),
                        info.hostname,
                        info.memory_available_mib
                    ));
                }
            }
            Ok(None) => {}
        }
    }
    // Templates: each entry to the hosts that use it and lack it.
    let mut entries: IndexMap<String, Vec<usize>> = IndexMap::new();
    for (i, (_, p)) in shares.iter().enumerate() {
        for h in &p.hosts {
            if templates.join(&h.template).exists() && failed[i].is_none() {
                let e = entries.entry(h.template.clone()).or_default();
                if !e.contains(&i) {
                    e.push(i);
                }
            }
        }
    }
    for (entry, users) in entries {
        let chosen: Vec<Arc<Agent>> = users.iter().filter_map(|&i| agents[i].as_ref().ok().cloned()).collect();
        for ((name, r), &i) in push_entry(&chosen, &templates, &cache, &entry).await.into_iter().zip(&users) {
            match r {
                Ok(m) => eprintln!("{name}: template {m}"),
                Err(e) => failed[i] = Some(format!("template {entry}: {e}")),
            }
        }
    }
    let mut running = Vec::new();
    for (i, (server, plan)) in shares.iter().enumerate() {
        let agent = agents[i].as_ref().ok().cloned();
        let req = Request::Build { plan: plan.clone(), file: file.clone(), replace, resume };
        let (name, skip) = (server.name.clone(), failed[i].clone());
        running.push(tokio::spawn(async move {
            if let Some(e) = skip {
                return Err(e);
            }
            let agent = agent.ok_or("not connected")?;
            agent.call_as::<Vec<Outcome>>(&req, &printer(name)).await
        }));
    }
    let mut out = Vec::new();
    for (i, r) in running.into_iter().enumerate() {
        let name = &shares[i].0.name;
        match r.await.unwrap_or_else(|e| Err(e.to_string())) {
            Ok(o) => out.extend(tag(o, name)),
            Err(e) => out.extend(failed_all(&vm_names(i), name, &e)),
        }
    }
    out
}

async fn futures_join<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a task does not panic"));
    }
    out
}

fn fabric_row(ctx: &Ctx, project: &str) -> Result<(FabricRow, Plan), String> {
    let row = ctx.state.fabric_project(project)?.ok_or_else(|| format!("no fabric project {project}"))?;
    let plan = serde_json::from_str(&row.plan_json).map_err(|e| format!("the recorded plan of {project} is unreadable: {e}"))?;
    Ok((row, plan))
}

/// Start or stop, in boot order (reversed to stop): each boot-order group
/// on every service host at once, one group after the other.
fn in_order(ctx: &Ctx, local: Option<&Env>, project: &str, only: &[String], verb: &str, req: impl Fn(Vec<String>) -> Request, here: impl Fn(&Env, &[String]) -> Result<Vec<Outcome>, String>) -> Result<Vec<Outcome>, String> {
    let _lock = ctx.state.lock(&format!("{project}.fabric"))?;
    let (_, plan) = fabric_row(ctx, project)?;
    for o in only {
        if !plan.hosts.iter().any(|h| &h.name == o) {
            return Err(format!("project {project} has no host {o}"));
        }
    }
    let whole = only.is_empty();
    if whole {
        lifecycle::hooks::run(&plan, &format!("beforeProject{verb}"))?;
    }
    let mut chosen: Vec<&Host> = plan.hosts.iter().filter(|h| whole || only.contains(&h.name)).collect();
    chosen.sort_by_key(|h| h.boot_order);
    if verb == "Stop" {
        chosen.reverse();
    }
    let names: Vec<String> = by_server(&chosen).keys().flatten().cloned().collect();
    let servers: Vec<Server> = names.iter().map(|n| ctx.fabric.server(n)).collect();
    let agents = ctx.rt.block_on(attach_all(&servers, ctx.fabric.fanout));
    let mut outcomes = Vec::new();
    let mut i = 0;
    while i < chosen.len() {
        let order = chosen[i].boot_order;
        let round: Vec<&Host> = chosen[i..].iter().take_while(|h| h.boot_order == order).copied().collect();
        i += round.len();
        let groups = by_server(&round);
        let mut tasks = Vec::new();
        for (k, n) in names.iter().enumerate() {
            let Some(hs) = groups.get(&Some(n.clone())) else { continue };
            let vms: Vec<String> = hs.iter().map(|h| h.name.clone()).collect();
            let agent = agents[k].clone();
            let r = req(vms.clone());
            let n: String = n.clone();
            tasks.push(ctx.rt.spawn(async move {
                let got: Result<Vec<Outcome>, String> = match agent {
                    Ok(a) => a.call_as::<Vec<Outcome>>(&r, &printer(n.clone())).await,
                    Err(e) => Err(e),
                };
                match got {
                    Ok(o) => tag(o, &n),
                    Err(e) => failed_all(&vms, &n, &e),
                }
            }));
        }
        if let Some(hs) = groups.get(&None) {
            let vms: Vec<String> = hs.iter().map(|h| h.name.clone()).collect();
            match local.ok_or("hosts without a service host need the local libvirt".to_string()).and_then(|env| here(env, &vms)) {
                Ok(o) => outcomes.extend(o),
                Err(e) => outcomes.extend(vms.iter().map(|v| Outcome { host: v.clone(), result: Err(e.clone()) })),
            }
        }
        for t in tasks {
            outcomes.extend(ctx.rt.block_on(t).map_err(|e| e.to_string())?);
        }
    }
    if whole {
        lifecycle::hooks::run(&plan, &format!("afterProject{verb}"))?;
    }
    Ok(outcomes)
}

pub fn start(ctx: &Ctx, local: Option<&Env>, project: &str, only: &[String]) -> Result<Vec<Outcome>, String> {
    let p = project.to_string();
    in_order(ctx, local, project, only, "Start", |hosts| Request::Start { project: p.clone(), hosts }, |env, hosts| lifecycle::start(env, project, hosts))
}

pub fn stop(ctx: &Ctx, local: Option<&Env>, project: &str, only: &[String], mode: StopMode) -> Result<Vec<Outcome>, String> {
    let p = project.to_string();
    let local_mode = match mode {
        StopMode::Save => lifecycle::StopMode::Save,
        StopMode::Hard => lifecycle::StopMode::Hard,
        StopMode::Graceful { wait_secs } => lifecycle::StopMode::Graceful { wait: std::time::Duration::from_secs(wait_secs) },
    };
    in_order(ctx, local, project, only, "Stop", |hosts| Request::Stop { project: p.clone(), hosts, mode }, |env, hosts| lifecycle::stop(env, project, hosts, local_mode))
}

/// Every host of the project with its state, asked of every service host
/// at once; a host that cannot be asked shows `unknown` and why.
pub fn status(ctx: &Ctx, local: Option<&Env>, project: &str) -> Result<Vec<HostStatus>, String> {
    let (_, plan) = fabric_row(ctx, project)?;
    let hosts: Vec<&Host> = plan.hosts.iter().collect();
    let groups = by_server(&hosts);
    let names: Vec<String> = groups.keys().flatten().cloned().collect();
    let servers: Vec<Server> = names.iter().map(|n| ctx.fabric.server(n)).collect();
    let p = project.to_string();
    let answers = ctx.rt.block_on(fan_out(&servers, ctx.fabric.fanout, None, move |s| {
        let p = p.clone();
        async move {
            let a = attach(&s).await?;
            a.call_as::<Vec<HostStatus>>(&Request::Status { project: p }, &|_| {}).await
        }
    }));
    let mut known: IndexMap<String, HostStatus> = IndexMap::new();
    let mut why: IndexMap<String, String> = IndexMap::new();
    for (n, a) in names.iter().zip(answers) {
        match a {
            Ok(list) => {
                for mut s in list {
                    s.service_host = Some(n.clone());
                    // Printed as a table: nothing in it may move the cursor.
                    s.project = project.to_string();
                    s.state = escape(&s.state).into_owned();
                    s.addresses = s.addresses.iter().map(|a| escape(a).into_owned()).collect();
                    known.insert(s.host.clone(), s);
                }
            }
            Err(e) => {
                why.insert(n.clone(), e);
            }
        }
    }
    if let (Some(env), true) = (local, groups.contains_key(&None)) {
        if ctx.state.project(project)?.is_some() {
            for s in lifecycle::status(env, project)? {
                known.insert(s.host.clone(), s);
            }
        }
    }
    let mut out = Vec::new();
    for h in &plan.hosts {
        out.push(match known.shift_remove(&h.name) {
            Some(s) => s,
            None => HostStatus {
                project: project.to_string(),
                host: h.name.clone(),
                state: match h.service_host.as_ref().and_then(|s| why.get(s)) {
                    Some(e) => format!("unknown ({e})"),
                    None => "absent".into(),
                },
                service_host: h.service_host.clone(),
                addresses: h.interfaces.iter().map(|i| format!("{}={}", i.name, if i.dhcp { "dhcp".into() } else { i.address.clone().unwrap_or_default() })).collect(),
            },
        });
    }
    Ok(out)
}

fn remove_on(ctx: &Ctx, servers: &[Server], project: &str) -> Vec<Outcome> {
    let p = project.to_string();
    let answers = ctx.rt.block_on(fan_out(servers, ctx.fabric.fanout, None, move |s| {
        let p = p.clone();
        async move {
            let a = attach(&s).await?;
            a.call_as::<Vec<Outcome>>(&Request::Remove { project: p }, &printer(s.name.clone())).await
        }
    }));
    let mut out = Vec::new();
    for (s, a) in servers.iter().zip(answers) {
        match a {
            Ok(o) => out.extend(tag(o, &s.name)),
            Err(e) => out.push(Outcome { host: format!("(all)@{}", s.name), result: Err(e) }),
        }
    }
    out
}

/// Removes the project from every service host that may hold part of it;
/// the record goes only when all of them are done, so a re-run finishes.
pub fn remove(ctx: &Ctx, local: Option<&Env>, project: &str) -> Result<Vec<Outcome>, String> {
    let _lock = ctx.state.lock(&format!("{project}.fabric"))?;
    let (row, _) = fabric_row(ctx, project)?;
    let servers: Vec<Server> = row.servers.iter().map(|n| ctx.fabric.server(n)).collect();
    let mut outcomes = remove_on(ctx, &servers, project);
    if ctx.state.project(project)?.is_some() {
        let env = local.ok_or("the local part needs the local libvirt")?;
        outcomes.extend(lifecycle::remove(env, project)?);
    }
    if outcomes.iter().all(|o| o.result.is_ok()) {
        ctx.state.forget_fabric_project(project)?;
        ctx.state.journal(project, "fabric remove", None, true, "removed");
    }
    Ok(outcomes)
}

/// `mln fabric status`: every service host, reachable or not, with what
/// its agent reports.
pub fn fabric_status(ctx: &Ctx, servers: &[Server]) -> Vec<(String, Result<Info, String>)> {
    let answers = ctx.rt.block_on(fan_out(servers, ctx.fabric.fanout, None, |s| async move {
        let a = attach(&s).await?;
        a.call_as::<Info>(&Request::Info, &|_| {}).await
    }));
    servers.iter().map(|s| s.name.clone()).zip(answers).collect()
}

/// The template push of `mln template push`.
pub fn push(ctx: &Ctx, servers: &[Server], entry: &str) -> Vec<(String, Result<String, String>)> {
    let templates = ctx.templates.clone();
    let cache = ctx.state.dir().join("cache");
    let entry = match crate::backend::template::find(&templates, entry) {
        Ok(t) => t.name,
        Err(e) => return servers.iter().map(|s| (s.name.clone(), Err(e.clone()))).collect(),
    };
    let fanout = ctx.fabric.fanout;
    let servers = servers.to_vec();
    ctx.rt.block_on(async move {
        let agents = attach_all(&servers, fanout).await;
        let live: Vec<Arc<Agent>> = agents.iter().filter_map(|a| a.as_ref().ok().cloned()).collect();
        let mut pushed = push_entry(&live, &templates, &cache, &entry).await.into_iter();
        servers
            .iter()
            .zip(agents)
            .map(|(s, a)| match a {
                Ok(_) => pushed.next().unwrap_or_else(|| (s.name.clone(), Err("lost".into()))),
                Err(e) => (s.name.clone(), Err(e)),
            })
            .collect()
    })
}
