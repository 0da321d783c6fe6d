//! The `mln` command line: one file per command, each a thin layer over
//! the library. Nothing here decides where machines are (the library's
//! `fabric::places::with_places` does) or how they are driven.

mod agent;
mod build;
mod check;
mod completions;
mod console;
mod context;
mod diff;
mod env;
mod exec;
mod explain;
mod fabric;
mod fmt;
mod list;
mod migrate;
mod output;
mod parse;
mod plan;
mod reconfigure;
mod remove;
mod ssh;
mod start;
mod stats;
mod status;
mod stop;
mod template;
mod upgrade;

pub use context::Global;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mln", version, about = "Manage Large Networks: one project file, a whole cluster")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Report every problem in project files, or nothing and exit 0.
    Check(check::Args),
    /// The resolved cluster, one row per host.
    Plan(plan::Args),
    /// A host's value and every place that shaped it.
    Explain(explain::Args),
    /// Rewrite files in the canonical layout (comments kept).
    Fmt(fmt::Args),
    /// The resolved tree in MLN syntax (MLN's `parse`).
    Parse(parse::Args),
    /// Create every VM of a project (not started).
    Build(build::Args),
    /// What changing one project file into another would do, host by host.
    Diff(diff::Args),
    /// Start a project's VMs in boot order; saved VMs are restored.
    Start(start::Args),
    /// Stop a project's VMs in reverse boot order: shut down, wait, then force off.
    Stop(stop::Args),
    /// Per host: state, service host, addresses.
    Status(status::Args),
    /// Projects and their state.
    List(list::Args),
    /// A guest's serial console (what it has printed; follows it).
    Console(console::Args),
    /// Log into a guest (project key, strict host-key checking), or run a command there.
    Ssh(ssh::Args),
    /// Run a command on every (or the named) guest at once; outputs folded.
    Exec(exec::Args),
    /// Remove everything a project created.
    Remove(remove::Args),
    /// Apply an edited project file to what is built (preview with -s).
    Upgrade(upgrade::Args),
    /// Bring built hosts back to the recorded plan (configuration written anew).
    Reconfigure(reconfigure::Args),
    /// Move a running host to another service host while it runs.
    Migrate(migrate::Args),
    /// Service hosts: status, parallel commands.
    #[command(subcommand)]
    Fabric(fabric::Command),
    /// Guest OS templates: build from a recipe, list, show, remove, import, push.
    #[command(subcommand)]
    Template(template::Command),
    /// Bare-metal deployments per node: how many, failures, step times.
    Stats(stats::Args),
    /// Bare-metal environments: add, list, show, remove.
    #[command(subcommand)]
    Env(env::Command),
    /// Shell completions (bash, zsh, fish) or the man page, on stdout.
    Completions(completions::Args),
    /// Serve one request from a managing mln over stdin/stdout (run by mln
    /// over SSH on service hosts).
    #[command(hide = true)]
    Agent,
    /// Carry stdin/stdout to a guest's SSH port (ssh's ProxyCommand for `mln ssh`).
    #[command(hide = true)]
    SshProxy(ssh::ProxyArgs),
}

/// The whole command line: what `mln-libvirt` runs.
pub fn main() -> ExitCode {
    let cli = parse();
    cli.global.init_logging();
    run(cli.command, &cli.global)
}

/// What `mln` itself runs: the commands that only read project files
/// (and `--help`, `--version`, usage errors); every other command is
/// handed to `mln-libvirt`, installed beside it. `mln` then never calls
/// into libvirt, so the linker leaves libvirt and the ~50 libraries it
/// brings out of it, and the dynamic loader does not bind their symbols
/// at every start (about half of `mln check`'s CPU at 1,000 hosts;
/// book: benchmarks, planning).
pub fn front() -> ExitCode {
    let cli = parse();
    let g = &cli.global;
    let own = matches!(
        cli.command,
        Command::Check(_) | Command::Plan(_) | Command::Explain(_) | Command::Fmt(_) | Command::Parse(_) | Command::Diff(_) | Command::Completions(_)
    );
    if !own {
        return hand_over();
    }
    g.init_logging();
    match cli.command {
        Command::Check(a) => check::run(a, g),
        Command::Plan(a) => plan::run(a, g),
        Command::Explain(a) => explain::run(a, g),
        Command::Fmt(a) => fmt::run(a, g),
        Command::Parse(a) => parse::run(a, g),
        Command::Diff(a) => diff::run(a, g),
        Command::Completions(a) => completions::run(a),
        _ => hand_over(),
    }
}

/// The file name of the binary with every command (libvirt linked in).
pub const FULL: &str = "mln-libvirt";

/// Replaces this process with `mln-libvirt`, same arguments; returns
/// only if that cannot be done.
fn hand_over() -> ExitCode {
    use std::os::unix::process::CommandExt;
    // /proc/self/exe: the real file, so a symlinked `mln` finds its sibling.
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(e) => return context::fail(format!("cannot find mln's own executable: {e}")),
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "mln".into());
    let e = std::process::Command::new(&full).arg0(arg0).args(args).exec();
    context::fail(format!("this command runs {} (installed beside mln): {e}", full.display()))
}

fn parse() -> Cli {
    quiet_on_closed_stdout();
    Cli::parse()
}

/// A closed pipe on stdout (`mln status --json | head`) ends mln quietly,
/// with the status a shell shows for a SIGPIPE death (141), instead of a
/// panic message from `println!`. SIGPIPE itself stays ignored (Rust's
/// default): with its default action, any write to a socket or pipe whose
/// reader is gone (a service host lost mid-transfer, through a call that
/// cannot take `MSG_NOSIGNAL`) killed the whole of mln instead of failing
/// that host (e2e_fabric's lost-host test, wait status 13).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("");
        // println!'s own panic, or a library's (clap_complete) that wrote
        // to stdout and met the closed pipe.
        if (msg.contains("Broken pipe") || msg.contains("BrokenPipe")) && context::stdout_closed() {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn run(command: Command, g: &Global) -> ExitCode {
    match command {
        Command::Check(a) => check::run(a, g),
        Command::Plan(a) => plan::run(a, g),
        Command::Explain(a) => explain::run(a, g),
        Command::Fmt(a) => fmt::run(a, g),
        Command::Parse(a) => parse::run(a, g),
        Command::Build(a) => build::run(a, g),
        Command::Diff(a) => diff::run(a, g),
        Command::Upgrade(a) => upgrade::run(a, g),
        Command::Reconfigure(a) => reconfigure::run(a, g),
        Command::Migrate(a) => migrate::run(a, g),
        Command::Start(a) => start::run(a, g),
        Command::Stop(a) => stop::run(a, g),
        Command::Status(a) => status::run(a, g),
        Command::List(a) => list::run(a, g),
        Command::Console(a) => console::run(a, g),
        Command::Ssh(a) => ssh::run(a, g),
        Command::Exec(a) => exec::run(a, g),
        Command::SshProxy(a) => ssh::proxy(a, g),
        Command::Remove(a) => remove::run(a, g),
        Command::Fabric(c) => fabric::run(c, g),
        Command::Template(c) => template::run(c, g),
        Command::Env(c) => env::run(c, g),
        Command::Stats(a) => stats::run(a, g),
        Command::Completions(a) => completions::run(a),
        Command::Agent => agent::run(g),
    }
}
