//! The commands that act on virtual machines: a thin layer over
//! `mln::lifecycle`.

use clap::Subcommand;
use mln::backend::libvirt::Libvirt;
use mln::lifecycle::{self, Env, Outcome, StopMode};
use mln::state::State;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct Where {
    /// libvirt connection (default: the embedded QEMU driver in the state
    /// directory, no daemon needed; or what the project was built with).
    #[arg(long, global = true, value_name = "URI")]
    connect: Option<String>,
    /// Where mln keeps its records, disks and seeds (default: $MLN_STATE_DIR,
    /// /var/lib/mln for root, ~/.local/state/mln otherwise).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Templates directory (default: $MLN_TEMPLATES, else STATE_DIR/templates).
    #[arg(long, global = true, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Service hosts: a fabric configuration (.toml) or an MLN servers file
    /// (default: $MLN_FABRIC, else STATE_DIR/fabric.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    fabric: Option<PathBuf>,
}

impl Where {
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(State::default_dir)
    }
    pub fn templates_of(&self, state: &State) -> PathBuf {
        self.templates
            .clone()
            .or_else(|| std::env::var_os("MLN_TEMPLATES").map(PathBuf::from))
            .unwrap_or_else(|| state.templates_dir())
    }
    pub fn fabric(&self) -> Result<mln::fabric::Fabric, String> {
        let f = mln::fabric::Fabric::find(self.fabric.as_deref(), &self.state_dir())?;
        let problems = f.problems();
        if problems.is_empty() {
            Ok(f)
        } else {
            Err(problems.join("\n"))
        }
    }
    pub fn connect(&self) -> Option<&str> {
        self.connect.as_deref()
    }
}

#[derive(Subcommand)]
pub enum VmCommand {
    /// Create every VM of a project (not started).
    Build {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Replace a project built before.
        #[arg(short = 'r', long)]
        replace: bool,
        /// Show what would be built, build nothing.
        #[arg(short = 's', long)]
        dry_run: bool,
    },
    /// Start a project's VMs in boot order; saved VMs are restored.
    #[command(disable_help_flag = true)]
    Start {
        #[arg(short = 'p', long)]
        project: String,
        #[arg(short = 'h', long = "host")]
        hosts: Vec<String>,
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Stop a project's VMs: shut down, wait, then force off.
    #[command(disable_help_flag = true)]
    Stop {
        #[arg(short = 'p', long)]
        project: String,
        #[arg(short = 'h', long = "host")]
        hosts: Vec<String>,
        /// Save memory state to disk instead; the next start restores it.
        #[arg(short = 'S', long)]
        save: bool,
        /// Force off at once.
        #[arg(short = 'H', long)]
        hard: bool,
        /// Seconds to wait for a graceful shutdown before forcing.
        #[arg(short = 'w', long, default_value_t = 60)]
        wait: u64,
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Per host: state, service host, addresses.
    Status {
        #[arg(short = 'p', long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Projects and their state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A guest's serial console (what it has printed; follows it).
    #[command(disable_help_flag = true)]
    Console {
        #[arg(short = 'p', long)]
        project: String,
        #[arg(short = 'h', long = "host")]
        host: String,
        /// Print what is there and return instead of following.
        #[arg(long)]
        no_follow: bool,
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Remove everything a project created.
    Remove {
        #[arg(short = 'p', long)]
        project: String,
    },
}

pub fn fail(e: String) -> ExitCode {
    eprintln!("mln: {}", mln::term::escape_lines(&e));
    ExitCode::FAILURE
}

pub fn report(op: &str, r: Result<Vec<Outcome>, String>) -> ExitCode {
    match r {
        Err(e) => fail(e),
        Ok(outcomes) => {
            let (text, ok) = lifecycle::summary(op, &outcomes);
            print!("{text}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

pub fn run(cmd: VmCommand, w: &Where, compile: impl Fn(&std::path::Path) -> Option<mln::plan::Plan>) -> ExitCode {
    let state = match State::open(&w.state_dir()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let templates = w.templates_of(&state);
    // The connection: as asked, else the one the project was built with,
    // else the embedded driver.
    let project_of = |c: &VmCommand| match c {
        VmCommand::Start { project, .. }
        | VmCommand::Stop { project, .. }
        | VmCommand::Console { project, .. }
        | VmCommand::Remove { project } => Some(project.clone()),
        VmCommand::Status { project, .. } => project.clone(),
        _ => None,
    };
    let recorded = project_of(&cmd).and_then(|p| state.project(&p).ok().flatten()).map(|r| r.connect);
    let uri = w
        .connect
        .clone()
        .or(recorded)
        .unwrap_or_else(|| format!("qemu:///embed?root={}", state.libvirt_root().display()));
    if let VmCommand::List { json } = &cmd {
        return list(&state, *json);
    }
    if let VmCommand::Console { project, host, no_follow, .. } = &cmd {
        return console(&state, project, host, *no_follow);
    }
    let mut plan = None;
    if let VmCommand::Build { file, replace, dry_run } = &cmd {
        let Some(p) = compile(file) else { return ExitCode::FAILURE };
        if mln::fabric::project::uses_fabric(&p) && !dry_run {
            return crate::fabric_commands::build(w, &state, templates, &uri, &p, file, *replace);
        }
        plan = Some(p);
    }
    if let Some(p) = project_of(&cmd) {
        if matches!(state.fabric_project(&p), Ok(Some(_))) {
            return crate::fabric_commands::project(cmd, w, &state, templates, &uri);
        }
    }
    let lv = match Libvirt::connect(&uri) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let env = Env { state: &state, lv: &lv, templates };
    match cmd {
        VmCommand::Build { file, replace, dry_run } => {
            let plan = plan.expect("compiled above");
            if dry_run {
                return dry(&env, &plan);
            }
            report("build", lifecycle::build(&env, &plan, &file, replace))
        }
        VmCommand::Start { project, hosts, .. } => report("start", lifecycle::start(&env, &project, &hosts)),
        VmCommand::Stop { project, hosts, save, hard, wait, .. } => match stop_mode(save, hard, wait) {
            Ok(mode) => report("stop", lifecycle::stop(&env, &project, &hosts, mode)),
            Err(e) => fail(e),
        },
        VmCommand::Status { json, .. } => {
            let fabric = state.fabric_projects().unwrap_or_default();
            let projects: Vec<String> =
                state.projects().map(|v| v.into_iter().map(|r| r.name).filter(|n| !fabric.iter().any(|f| &f.name == n)).collect()).unwrap_or_default();
            let mut all = Vec::new();
            for p in &projects {
                match lifecycle::status(&env, p) {
                    Ok(s) => all.extend(s),
                    Err(e) => return fail(e),
                }
            }
            if !fabric.is_empty() {
                match crate::fabric_commands::all_status(w, &state, Some(&env), &fabric) {
                    Ok(s) => all.extend(s),
                    Err(e) => return fail(e),
                }
            }
            print_status(&all, json)
        }
        VmCommand::Remove { project } => report("remove", lifecycle::remove(&env, &project)),
        VmCommand::List { .. } | VmCommand::Console { .. } => unreachable!("handled above"),
    }
}

pub fn stop_mode(save: bool, hard: bool, wait: u64) -> Result<StopMode, String> {
    match (save, hard) {
        (true, true) => Err("-S and -H exclude each other".into()),
        (true, false) => Ok(StopMode::Save),
        (false, true) => Ok(StopMode::Hard),
        _ => Ok(StopMode::Graceful { wait: Duration::from_secs(wait) }),
    }
}

pub fn print_status(all: &[lifecycle::HostStatus], json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(all).expect("status serializes"));
    } else {
        for s in all {
            let line = format!("{:12} {:12} {:9} {:18} {}", s.project, s.host, s.state, s.service_host.as_deref().unwrap_or("(local)"), s.addresses.join(" "));
            println!("{}", mln::term::escape(&line));
        }
    }
    ExitCode::SUCCESS
}

fn dry(env: &Env, plan: &mln::plan::Plan) -> ExitCode {
    let mut ok = true;
    for h in &plan.hosts {
        match mln::backend::template::find(&env.templates, &h.template) {
            Ok(t) => println!(
                "{}: would build from {} ({}), a NoCloud seed, and domain {}",
                h.name,
                t.name,
                if t.disk.is_some() { format!("{:?} disk", h.disk_mode).to_lowercase() } else { "direct kernel boot".into() },
                mln::backend::domain::domain_name(&plan.project, &h.name)
            ),
            Err(e) => {
                ok = false;
                println!("{}: {e}", h.name)
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn list(state: &State, json: bool) -> ExitCode {
    let (rows, fabric) = match state.projects().and_then(|r| Ok((r, state.fabric_projects()?))) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let hosts_of = |plan: &str| serde_json::from_str::<mln::plan::Plan>(plan).map(|p| p.hosts.len()).unwrap_or(0);
    let mut items: Vec<serde_json::Value> = fabric
        .iter()
        .map(|r| serde_json::json!({"project": r.name, "state": r.state, "hosts": hosts_of(&r.plan_json), "file": r.file, "connect": "fabric", "service_hosts": r.servers}))
        .collect();
    // The local share of a fabric project is listed with the project.
    items.extend(
        rows.iter()
            .filter(|r| !fabric.iter().any(|f| f.name == r.name))
            .map(|r| serde_json::json!({"project": r.name, "state": r.state, "hosts": hosts_of(&r.plan_json), "file": r.file, "connect": r.connect})),
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&items).expect("list serializes"));
    } else {
        for i in &items {
            let line = format!("{:16} {:9} {:4} hosts  {}", i["project"].as_str().unwrap_or(""), i["state"].as_str().unwrap_or(""), i["hosts"], i["file"].as_str().unwrap_or(""));
            println!("{}", mln::term::escape(&line));
        }
    }
    ExitCode::SUCCESS
}

fn console(state: &State, project: &str, host: &str, no_follow: bool) -> ExitCode {
    use std::io::{Read, Write};
    let path = match state.host_dir(project, host) {
        Ok(d) => d.join("console.log"),
        Err(e) => return fail(e),
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return fail(format!("no console for {host} in {project} ({}: {e})", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if f.read_to_end(&mut buf).is_err() || out.write_all(&buf).and_then(|_| out.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
        if no_follow {
            return ExitCode::SUCCESS;
        }
        // read_to_end left the position at the end: the next read gets
        // only what the guest printed since.
        std::thread::sleep(Duration::from_millis(200));
    }
}
