//! `mln agent`: the service-host side. It reads requests from stdin, one
//! JSON line each, does each with the same orchestration a local `mln`
//! uses, and answers on stdout; the manager sends the next request only
//! after the answer. When its stdin closes (the SSH channel went away) it
//! stops: between requests at once, and in the middle of work that
//! changes things too (an interrupted build is resumed by the next one,
//! as locally).

use crate::machine::MachineError;
use super::proto::{DomainInfo, Downstream, FileSum, Hello, Info, Line, Request, PROTOCOL};
use crate::backend::libvirt::Libvirt;
use crate::runtime::{Runtime, StartOptions};
use crate::state::State;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::path::{Path, PathBuf};

pub struct Options {
    pub state_dir: PathBuf,
    pub templates: PathBuf,
    pub connect: String,
}

fn say(line: &Line) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The SHA-256 of the running binary: what the manager compares with its own.
pub fn self_sha256() -> Result<String, String> {
    use std::sync::OnceLock;
    static SUM: OnceLock<Result<String, String>> = OnceLock::new();
    SUM.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let exe = std::fs::read("/proc/self/exe").map_err(|e| format!("cannot read our own binary: {e}"))?;
        Ok(super::relay::hex(&Sha256::digest(&exe)))
    })
    .clone()
}

/// Our SHA-256 as the agent reports it, remembered in `cache` by the
/// binary's size, inode and modification time (any write to the file
/// changes those): every request of every build would hash it otherwise.
pub fn own_sum(cache: &Path) -> Result<String, String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| format!("cannot find our own binary: {e}"))?;
    match super::relay::file_sum(&exe, cache) {
        Ok((_, sum)) => Ok(sum),
        Err(_) => self_sha256(),
    }
}

/// Set while a request that changes things runs: the manager going away
/// then stops the agent (the next run resumes). Questions just get
/// answered.
static CHANGING: AtomicBool = AtomicBool::new(false);
/// Set once stdin closed: the manager is gone.
static GONE: AtomicBool = AtomicBool::new(false);

/// Serves requests, one after another on the same stdin, until it
/// closes; returns the process exit code. The manager keeps the process
/// between requests (no process start per request) and closes the channel
/// (or its whole SSH session, when it exits) to end it: nothing stays
/// running on the service host once the manager is gone.
pub fn serve(opts: &Options) -> i32 {
    let lines = read_lines();
    let mut served = 0;
    while let Ok(line) = lines.recv() {
        if line.trim().is_empty() {
            continue;
        }
        served += 1;
        serve_one(opts, &line, &lines);
        CHANGING.store(false, Ordering::SeqCst);
    }
    if served == 0 {
        say(&Line::Error(MachineError::Refused("no request on stdin".into())));
        return 2;
    }
    0
}

fn serve_one(opts: &Options, line: &str, lines: &Receiver<String>) {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            say(&Line::Error(MachineError::Refused(format!("cannot read the request (protocol {PROTOCOL}): {e}"))));
            return;
        }
    };
    if matches!(
        req,
        Request::Build { .. } | Request::Start { .. } | Request::Stop { .. } | Request::Remove { .. } | Request::Upgrade { .. } | Request::Incoming { .. } | Request::Arrived { .. }
    ) {
        changing();
    }
    match handle(opts, req, lines) {
        Ok(v) => say(&Line::Ok(v)),
        Err(e) => say(&Line::Error(e)),
    }
}

/// From here on the request changes things: stop at once if the manager
/// is gone already, or as soon as it goes.
fn changing() {
    CHANGING.store(true, Ordering::SeqCst);
    if GONE.load(Ordering::SeqCst) {
        manager_gone();
    }
}

fn manager_gone() -> ! {
    eprintln!("mln agent: the manager went away; stopping (the next run resumes)");
    std::process::exit(3);
}

/// stdin's lines, read by a thread of their own, so that its closing is
/// seen while a request runs. (Either this thread sees CHANGING, or
/// `changing` sees GONE: both are sequentially consistent.)
fn read_lines() -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut l = String::new();
            match lock.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            }
        }
        GONE.store(true, Ordering::SeqCst);
        if CHANGING.load(Ordering::SeqCst) {
            manager_gone();
        }
    });
    rx
}

fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, MachineError> {
    serde_json::to_value(v).map_err(|e| MachineError::Failed(e.to_string()))
}

/// A request's answer, or why the request as a whole failed.
fn handle(opts: &Options, req: Request, lines: &Receiver<String>) -> Result<serde_json::Value, MachineError> {
    let state = || State::open(&opts.state_dir);
    match req {
        Request::Hello => {
            json(Hello { protocol: PROTOCOL, version: env!("CARGO_PKG_VERSION").into(), sha256: own_sum(&opts.state_dir.join("cache")).map_err(MachineError::Failed)? })
        }
        Request::Info => json(info(opts)?),
        Request::Templates { entries } => {
            let cache = opts.state_dir.join("cache");
            let out: Vec<Result<Vec<FileSum>, String>> = entries
                .iter()
                .map(|e| crate::name::check(crate::name::NameKind::Template, e).map_err(|err| err.to_string()).and_then(|_| sums(&opts.templates, e, &cache)))
                .collect();
            json(out)
        }
        Request::Console { project, host, offset } => {
            let state = state()?;
            let path = state.host_dir(&project, &host).map_err(|e| MachineError::Refused(e.to_string()))?.join("console.log");
            json(console_chunk(&path, offset).map_err(MachineError::Failed)?)
        }
        Request::Locate { project, host } => {
            let state = state()?;
            let dir = state.host_dir(&project, &host).map_err(|e| MachineError::Refused(e.to_string()))?;
            json(super::proto::Located { dir, templates: opts.templates.clone(), connect: opts.connect.clone() })
        }
        Request::Receive { path, size, sha256, token, bind, into } => {
            let target = match &into {
                None => {
                    let parts: Vec<&str> = path.split('/').collect();
                    crate::name::inside(&opts.templates, &parts).map_err(|e| MachineError::Refused(e.to_string()))?
                }
                // A machine's file: private, in a directory `Ready` made.
                Some(h) => {
                    let dir = state()?.host_dir(&h.project, &h.host).map_err(|e| MachineError::Refused(e.to_string()))?;
                    if !dir.is_dir() {
                        return Err(MachineError::Refused(format!("{} is not ready for {}", dir.display(), crate::term::escape(&h.host))));
                    }
                    crate::name::inside(&dir, &[path.as_str()]).map_err(|e| MachineError::Refused(e.to_string()))?
                }
            };
            let ip = super::relay::bind_address(std::env::var("SSH_CONNECTION").ok().as_deref(), bind.as_deref()).map_err(MachineError::Refused)?;
            let r = super::relay::receive(&target, size, &sha256, &token, ip, into.is_some(), |addr| {
                say(&Line::Listening(addr.port()));
                let line = lines.recv().map_err(|_| "the manager went away before sending the downstream plan".to_string())?;
                let d: Downstream = serde_json::from_str(&line).map_err(|e| format!("cannot read the downstream plan: {e}"))?;
                changing();
                Ok(d)
            });
            json(r)
        }
        Request::Send { project, host, file, size, token, to } => {
            let dir = state()?.host_dir(&project, &host).map_err(|e| MachineError::Refused(e.to_string()))?;
            let path = crate::name::inside(&dir, &[file.as_str()]).map_err(|e| MachineError::Refused(e.to_string()))?;
            let f = std::fs::File::open(&path).map_err(|e| MachineError::Failed(format!("cannot read {}: {e}", path.display())))?;
            let done = super::relay::Progress::new(size, Some(true));
            let (sent, _) = super::relay::forward(&f, size, &done, &token, std::slice::from_ref(&to));
            let ok = sent.is_some();
            json(super::proto::Received {
                ok,
                message: if ok { format!("{file} sent") } else { format!("{file}: could not be sent to {}", to.name) },
                forwarded: sent.into_iter().collect(),
                skipped: vec![],
            })
        }
        op => {
            let state = state()?;
            let places = crate::runtime::LocalPlaces::new(&state, opts.connect.clone(), opts.templates.clone());
            let rt = Runtime { state: &state, places: &places, hooks: &crate::runtime::hooks::NoHooks, telemetry: &Forward };
            let known = state.project(op_project(&op))?.is_some();
            match op {
                Request::Build { plan, file, opts, keys } => {
                    json(crate::login::given::build(&rt, &plan, Path::new(&file), opts, || give_keys(&state, &plan.project, keys.as_ref()))?)
                }
                Request::Start { project, hosts } => json(rt.start(&project, &StartOptions { hosts, pause: None })?),
                Request::Stop { project, hosts, mode } => json(rt.stop(&project, &hosts, mode)?),
                // Nothing of the project here (never built, or removed).
                Request::Status { .. } | Request::Remove { .. } if !known => json(Vec::<()>::new()),
                Request::Status { project, hosts } => json(rt.status(&project, &hosts)?),
                Request::Remove { project } => json(rt.remove(&project)?),
                Request::Upgrade { plan, file, opts, keys } => {
                    give_keys(&state, &plan.project, keys.as_ref())?;
                    json(rt.upgrade_or_build(&plan, Path::new(&file), &opts)?)
                }
                Request::Incoming { plan, host, address } => json(rt.receive(&plan, &host, &address)?),
                Request::Arrived { plan, host, arrived } => json(vec![crate::machine::Outcome::of(&host, Ok(rt.arrived(&plan, &host, arrived)?))]),
                Request::Pack { project, host, then } => json(rt.pack_here(&project, &host, then)?),
                Request::Ready { plan, host, parcel } => json(vec![crate::machine::Outcome::of(&host, Ok(rt.ready_here(&plan, &host, &parcel)?))]),
                Request::Unpack { plan, host, parcel } => json(vec![crate::machine::Outcome::of(&host, Ok(rt.unpack_here(&plan, &host, &parcel)?))]),
                Request::Home { project, host, parcel } => json(vec![crate::machine::Outcome::of(&host, Ok(rt.home_here(&project, &host, &parcel)?))]),
                _ => unreachable!("handled above"),
            }
        }
    }
}

/// The managing machine's project keys, taken before anything is built
/// with them (an older manager sends none: the project's own are used).
fn give_keys(state: &State, project: &str, keys: Option<&super::proto::ProjectKeys>) -> Result<(), MachineError> {
    match keys {
        Some(k) => crate::login::keys::give(state, project, k).map_err(|e| MachineError::Refused(e.to_string())),
        None => Ok(()),
    }
}

/// What a console log holds from `offset` on (at most 1 MiB at a time).
pub fn console_chunk(path: &Path, offset: u64) -> Result<super::proto::ConsoleChunk, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("no console log ({}: {e})", path.display()))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    Ok(super::proto::ConsoleChunk { data: String::from_utf8_lossy(&buf).into_owned(), offset: offset + buf.len() as u64 })
}

fn op_project(r: &Request) -> &str {
    match r {
        Request::Build { plan, .. } => &plan.project,
        Request::Upgrade { plan, .. } | Request::Incoming { plan, .. } | Request::Arrived { plan, .. } | Request::Ready { plan, .. } | Request::Unpack { plan, .. } => &plan.project,
        Request::Pack { project, .. } | Request::Home { project, .. } => project,
        Request::Start { project, .. } | Request::Stop { project, .. } | Request::Status { project, .. } | Request::Remove { project } => project,
        _ => "",
    }
}

/// The agent's telemetry: every event as one JSON line on stderr, which
/// the manager reads as the request's progress.
struct Forward;

impl crate::progress::Telemetry for Forward {
    fn event(&self, e: &crate::progress::Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Every file of a template entry (a file, or a directory's files) with
/// its size and SHA-256.
pub fn sums(templates: &Path, entry: &str, cache: &Path) -> Result<Vec<FileSum>, String> {
    let root = templates.join(entry);
    let mut files = Vec::new();
    if root.is_dir() {
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
                let p = e.map_err(|e| e.to_string())?.path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
    } else if root.is_file() {
        files.push(root);
    } else {
        return Err(format!("no template {entry} in {}", templates.display()));
    }
    files.sort();
    files
        .iter()
        .map(|p| {
            let (size, sha256) = super::relay::file_sum(p, cache)?;
            let rel = p.strip_prefix(templates).unwrap_or(p).to_string_lossy().into_owned();
            Ok(FileSum { path: rel, size, sha256 })
        })
        .collect()
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}

fn info(opts: &Options) -> Result<Info, MachineError> {
    // A host whose libvirt is down is still worth describing.
    let (libvirt_version, domains) = match Libvirt::connect(&opts.connect).and_then(|lv| lv.inventory()) {
        Ok(x) => x,
        Err(e) => (format!("unavailable: {e}"), Vec::new()),
    };
    let projects = match State::open(&opts.state_dir) {
        Ok(s) => s.project_names()?,
        Err(_) => Vec::new(),
    };
    Ok(Info {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
        mln_version: env!("CARGO_PKG_VERSION").into(),
        libvirt_version,
        libvirt_uri: opts.connect.clone(),
        cpus: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
        memory_total_mib: meminfo("MemTotal:"),
        memory_available_mib: meminfo("MemAvailable:"),
        domains: domains.into_iter().map(|(name, state)| DomainInfo { name, state }).collect(),
        projects,
    })
}
