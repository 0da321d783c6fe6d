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

fn fail(e: String) -> ExitCode {
    eprintln!("mln: {e}");
    ExitCode::FAILURE
}

fn report(op: &str, r: Result<Vec<Outcome>, String>) -> ExitCode {
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
    let state = match State::open(&w.state_dir.clone().unwrap_or_else(State::default_dir)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let templates = w
        .templates
        .clone()
        .or_else(|| std::env::var_os("MLN_TEMPLATES").map(PathBuf::from))
        .unwrap_or_else(|| state.templates_dir());
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
    let lv = match Libvirt::connect(&uri) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let env = Env { state: &state, lv: &lv, templates };
    match cmd {
        VmCommand::Build { file, replace, dry_run } => {
            let Some(plan) = compile(&file) else { return ExitCode::FAILURE };
            if dry_run {
                return dry(&env, &plan);
            }
            report("build", lifecycle::build(&env, &plan, &file, replace))
        }
        VmCommand::Start { project, hosts, .. } => report("start", lifecycle::start(&env, &project, &hosts)),
        VmCommand::Stop { project, hosts, save, hard, wait, .. } => {
            let mode = match (save, hard) {
                (true, true) => return fail("-S and -H exclude each other".into()),
                (true, false) => StopMode::Save,
                (false, true) => StopMode::Hard,
                _ => StopMode::Graceful { wait: Duration::from_secs(wait) },
            };
            report("stop", lifecycle::stop(&env, &project, &hosts, mode))
        }
        VmCommand::Status { project, json } => {
            let projects = match project {
                Some(p) => vec![p],
                None => state.projects().map(|v| v.into_iter().map(|r| r.name).collect()).unwrap_or_default(),
            };
            let mut all = Vec::new();
            for p in &projects {
                match lifecycle::status(&env, p) {
                    Ok(s) => all.extend(s),
                    Err(e) => return fail(e),
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all).expect("status serializes"));
            } else {
                for s in &all {
                    println!(
                        "{:12} {:12} {:9} {:18} {}",
                        s.project,
                        s.host,
                        s.state,
                        s.service_host.as_deref().unwrap_or("(local)"),
                        s.addresses.join(" ")
                    );
                }
            }
            ExitCode::SUCCESS
        }
        VmCommand::Remove { project } => report("remove", lifecycle::remove(&env, &project)),
        VmCommand::List { .. } | VmCommand::Console { .. } => unreachable!("handled above"),
    }
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
    let rows = match state.projects() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let hosts = serde_json::from_str::<mln::plan::Plan>(&r.plan_json).map(|p| p.hosts.len()).unwrap_or(0);
            serde_json::json!({"project": r.name, "state": r.state, "hosts": hosts, "file": r.file, "connect": r.connect})
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&items).expect("list serializes"));
    } else {
        for i in &items {
            println!("{:16} {:9} {:4} hosts  {}", i["project"].as_str().unwrap_or(""), i["state"].as_str().unwrap_or(""), i["hosts"], i["file"].as_str().unwrap_or(""));
        }
    }
    ExitCode::SUCCESS
}

fn console(state: &State, project: &str, host: &str, no_follow: bool) -> ExitCode {
    use std::io::{Read, Write};
    let path = state.host_dir(project, host).join("console.log");
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
