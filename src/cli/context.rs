//! What every command shares: the global options, compiling a project
//! file with its diagnostics shown, opening the state directory.

use mln::diag::{render_all, RenderStyle, Severity};
use mln::fabric::places::Target;
use mln::plugin::Registry;
use mln::source::DiskFs;
use mln::state::State;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Clone, Debug)]
pub struct Global {
    /// libvirt connection (default: the embedded QEMU driver in the state
    /// directory, no daemon needed; or what the project was built with).
    #[arg(long, global = true, value_name = "URI")]
    pub connect: Option<String>,
    /// Where mln keeps its records, disks and seeds (default: $MLN_STATE_DIR,
    /// /var/lib/mln for root, ~/.local/state/mln otherwise).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Templates directory (default: $MLN_TEMPLATES, else STATE_DIR/templates).
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Service hosts: a fabric configuration (.toml) or an MLN servers file
    /// (default: $MLN_FABRIC, else STATE_DIR/fabric.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// Extra directories to search for `mln-plugin-NAME` executables
    /// (before $MLN_PLUGIN_PATH and $PATH).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugin_path: Vec<PathBuf>,
    /// A directory outside the project file's own from which `#include`,
    /// `files`, `kernel` and `ramdisk` may read (repeat for several).
    #[arg(long = "allow-path", global = true, value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    /// The library logs what people should know but is not progress
    /// (an agent installed, a host key recorded, waiting for another mln)
    /// at `info`: shown as plain `mln: ...` lines by default; `-v` shows
    /// more, with levels and sources.
    pub fn init_logging(&self) {
        let filter = |level: &str| tracing_subscriber::EnvFilter::try_from_env("MLN_LOG").unwrap_or_else(|_| level.into());
        let plain = tracing_subscriber::fmt::format().without_time().with_target(false).with_level(false);
        match self.verbose {
            0 => tracing_subscriber::fmt()
                .event_format(plain)
                .with_env_filter(filter("warn,mln=info"))
                .with_writer(std::io::stderr)
                .init(),
            v => tracing_subscriber::fmt().with_env_filter(filter(if v == 1 { "info" } else { "debug" })).with_writer(std::io::stderr).init(),
        }
    }

    pub fn style(&self) -> RenderStyle {
        if std::io::stderr().is_terminal() {
            RenderStyle::Fancy
        } else {
            RenderStyle::Plain
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(State::default_dir)
    }

    pub fn open_state(&self) -> Result<State, ExitCode> {
        State::open(&self.state_dir()).map_err(|e| fail_diagnostic(e.into()))
    }

    pub fn target(&self, state: &State) -> Target {
        let templates = self
            .templates
            .clone()
            .or_else(|| std::env::var_os("MLN_TEMPLATES").map(PathBuf::from))
            .unwrap_or_else(|| state.templates_dir());
        Target { connect: self.connect.clone(), templates, fabric: self.fabric.clone() }
    }

    /// Compiles a project file, with placement checked against the fabric
    /// configuration when the plan names service hosts.
    pub fn compile(&self, file: &Path) -> mln::Compilation {
        self.compile_keeping(file, false)
    }

    /// [`Global::compile`] keeping every host's whole resolved form, for
    /// the commands that show it (`explain`, `parse`).
    pub fn compile_whole(&self, file: &Path) -> mln::Compilation {
        self.compile_keeping(file, true)
    }

    fn compile_keeping(&self, file: &Path, keep_resolved: bool) -> mln::Compilation {
        let mut plugin_path = self.plugin_path.clone();
        for var in ["MLN_PLUGIN_PATH", "PATH"] {
            if let Some(v) = std::env::var_os(var) {
                plugin_path.extend(std::env::split_paths(&v));
            }
        }
        let options = mln::CompileOptions { allowed_roots: self.allow_path.clone(), keep_resolved };
        let mut c = mln::compile_with(file, &DiskFs, Registry::new(plugin_path), &options);
        if !c.diags.has_errors() && c.plan.hosts.iter().any(|h| h.service_host.is_some()) {
            let target = Target { connect: None, templates: PathBuf::new(), fabric: self.fabric.clone() };
            match target.fabric(&self.state_dir()) {
                Ok(f) => {
                    let ds = mln::fabric::capacity::check(&c, &f);
                    c.diags.extend(ds);
                }
                Err(e) => c.diags.push(mln::diag::Diagnostic::error("mln::fabric::file", e.to_string())),
            }
        }
        c
    }

    /// Shows a compilation's diagnostics; whether it has no errors.
    pub fn report(&self, c: &mln::Compilation) -> bool {
        let ds = c.diags.sorted();
        if !ds.is_empty() {
            eprint!("{}", render_all(ds, &c.sources, self.style()));
            let (e, w) = (c.diags.error_count(), c.diags.iter().filter(|x| x.severity == Severity::Warning).count());
            if e > 0 {
                eprintln!("{e} error{}, {w} warning{}", plural(e), plural(w));
            }
        }
        c.ok()
    }
}

impl Global {
    /// Runs `op` on the machines of a recorded project (`act` with its
    /// record), or says why the project cannot be opened.
    pub fn act_on(
        &self,
        op: &str,
        project: &str,
        json: bool,
        f: impl FnOnce(&mln::runtime::Runtime) -> Result<Vec<mln::machine::Outcome>, mln::runtime::RuntimeError>,
    ) -> ExitCode {
        match self.open_project(project) {
            Ok((state, rec)) => self.act(op, &state, None, Some(&rec), json, f),
            Err(code) => code,
        }
    }

    /// The state directory and a project recorded in it.
    pub fn open_project(&self, name: &str) -> Result<(State, mln::state::ProjectRecord), ExitCode> {
        let state = self.open_state()?;
        let rec = state.require(name).map_err(|e| fail_diagnostic(e.into()))?;
        Ok((state, rec))
    }

    /// Runs `op` on the project's machines, wherever they are (hooks in the
    /// shell, progress on stderr), and reports the outcomes.
    pub fn act(
        &self,
        op: &str,
        state: &State,
        plan: Option<&mln::plan::Plan>,
        rec: Option<&mln::state::ProjectRecord>,
        json: bool,
        f: impl FnOnce(&mln::runtime::Runtime) -> Result<Vec<mln::machine::Outcome>, mln::runtime::RuntimeError>,
    ) -> ExitCode {
        let progress = super::output::Progress::new(json);
        let r = mln::fabric::places::with_places(state, &self.target(state), plan, rec, |places| {
            f(&mln::runtime::Runtime { state, places, hooks: &mln::runtime::hooks::Shell, telemetry: &progress })
        });
        match r {
            Ok(r) => super::output::outcomes(op, r, json),
            Err(e) => fail(e),
        }
    }

    /// The fabric configuration and an async runtime for talking to it.
    pub fn fabric(&self, state: &State) -> Result<(mln::fabric::Fabric, tokio::runtime::Runtime), ExitCode> {
        let fabric = self.target(state).fabric(state.dir()).map_err(fail)?;
        let rt = mln::fabric::places::async_runtime().map_err(fail)?;
        Ok((fabric, rt))
    }
}

impl Global {
    /// The status of one project's hosts (`status`, `list`).
    pub fn status_of(&self, state: &State, project: &str, hosts: &[String]) -> Result<Vec<mln::runtime::HostStatus>, String> {
        let rec = state.require(project).map_err(|e| e.to_string())?;
        mln::fabric::places::with_places(state, &self.target(state), None, Some(&rec), |places| {
            mln::runtime::Runtime { state, places, hooks: &mln::runtime::hooks::Shell, telemetry: &mln::progress::Quiet }
                .status(project, hosts)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?
    }
}

/// The hosts named with -w, else every host of the fabric.
pub fn servers(fabric: &mln::fabric::Fabric, hosts: Option<&str>) -> Result<Vec<mln::fabric::Server>, String> {
    let names = match hosts {
        Some(h) => mln::fabric::config::expand_nodeset(h)?,
        None => fabric.names(),
    };
    if names.is_empty() {
        return Err("no service hosts: name them with -w, or list them in a fabric file (--fabric, $MLN_FABRIC)".into());
    }
    Ok(names.iter().map(|n| fabric.server(n)).collect())
}


pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Prints an error (escaped) and returns the failure exit code.
pub fn fail(e: impl std::fmt::Display) -> ExitCode {
    // Output's reader gone (`mln plan --json | head`): said by nobody, as
    // the SIGPIPE death of any other tool would be (mln ignores SIGPIPE:
    // cli::quiet_on_closed_stdout).
    if stdout_closed() {
        return ExitCode::from(141);
    }
    eprintln!("mln: {}", mln::term::escape_lines(&e.to_string()));
    ExitCode::FAILURE
}

/// Whether stdout is a pipe or socket whose reader has gone (its write end
/// polls as an error).
pub fn stdout_closed() -> bool {
    let mut p = libc::pollfd { fd: 1, events: 0, revents: 0 };
    // SAFETY: one pollfd of ours, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLERR != 0 }
}

/// Shows one diagnostic (a runtime error, rendered as the compiler's are)
/// and returns the failure exit code.
pub fn fail_diagnostic(d: mln::diag::Diagnostic) -> ExitCode {
    let style = if std::io::stderr().is_terminal() { RenderStyle::Fancy } else { RenderStyle::Plain };
    eprint!("{}", render_all(vec![&d], &mln::source::SourceMap::default(), style));
    ExitCode::FAILURE
}

/// A usage error: exit status 2, as for errors clap finds.
pub fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("mln: {e}");
    ExitCode::from(2)
}

pub fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
