//! The `mln` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use mln::diag::{render_all, RenderStyle, Severity};
use mln::plugin::Registry;
use mln::source::{DiskFs, FileSystem};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// Plans of thousands of hosts are allocation-heavy; mimalloc cuts the
// allocator's share of `mln plan` by about half (measured: book, benchmarks).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod fabric_commands;
mod vm_commands;

#[derive(Parser)]
#[command(name = "mln", version, about = "Manage Large Networks: one project file, a whole cluster")]
struct Cli {
    #[command(flatten)]
    place: vm_commands::Where,
    /// Extra directories to search for `mln-plugin-NAME` executables
    /// (before $MLN_PLUGIN_PATH and $PATH).
    #[arg(long, global = true, value_name = "DIR")]
    plugin_path: Vec<PathBuf>,
    /// Let project files read from DIR too (`#include`, `files` sources,
    /// `kernel`, `ramdisk`); by default only from the project file's own
    /// directory. Repeatable.
    #[arg(long, global = true, value_name = "DIR")]
    allow_path: Vec<PathBuf>,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report every problem in project files, or nothing and exit 0.
    Check { files: Vec<PathBuf> },
    /// The resolved cluster, one row per host.
    Plan {
        /// Machine-readable (schema in the book).
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
    /// A host's value and every place that shaped it.
    Explain {
        file: PathBuf,
        host: String,
        /// e.g. `memory`, `network.eth0.gateway`, `users`.
        path: String,
    },
    /// Rewrite files in the canonical layout (comments kept).
    Fmt {
        /// Only report files that are not formatted; exit 1 if any.
        #[arg(long)]
        check: bool,
        files: Vec<PathBuf>,
    },
    /// The resolved tree in MLN syntax (MLN's `parse`).
    Parse {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        flag_file: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    #[command(flatten)]
    Vm(vm_commands::VmCommand),
    /// Service hosts: status, parallel commands.
    #[command(subcommand)]
    Fabric(fabric_commands::FabricCommand),
    /// Templates on service hosts.
    #[command(subcommand)]
    Template(fabric_commands::TemplateCommand),
    /// Serve one request from a managing mln over stdin/stdout (run by mln
    /// over SSH on service hosts).
    #[command(hide = true)]
    Agent,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MLN_LOG").unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .init();
    let style = if std::io::stderr().is_terminal() { RenderStyle::Fancy } else { RenderStyle::Plain };
    let mut plugin_path = cli.plugin_path.clone();
    for var in ["MLN_PLUGIN_PATH", "PATH"] {
        if let Some(v) = std::env::var_os(var) {
            plugin_path.extend(std::env::split_paths(&v));
        }
    }
    let fs = DiskFs;
    let options = mln::CompileOptions { allowed_roots: cli.allow_path.clone() };
    let compile = |file: &Path| {
        let mut c = mln::compile_with(file, &fs, Registry::new(plugin_path.clone()), &options);
        fabric_commands::check_capacity(&mut c, &cli.place);
        c
    };
    let report = |c: &mln::Compilation| {
        let ds = c.diags.sorted();
        if !ds.is_empty() {
            eprint!("{}", render_all(ds, &c.sources, style));
            let (e, w) = (c.diags.error_count(), ds_count(&c.diags, Severity::Warning));
            if e > 0 {
                eprintln!("{e} error{}, {w} warning{}", plural(e), plural(w));
            }
        }
        c.ok()
    };
    match cli.command {
        Command::Check { files } => {
            if files.is_empty() {
                eprintln!("mln check: name at least one project file");
                return ExitCode::from(2);
            }
            let mut ok = true;
            for f in &files {
                ok &= report(&compile(f));
            }
            exit(ok)
        }
        Command::Plan { json, file } => {
            let c = compile(&file);
            if !report(&c) {
                return ExitCode::FAILURE;
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &c.plan).map_err(std::io::Error::from).and_then(|_| writeln!(out))
            } else {
                write!(out, "{}", mln::render::plan_table(&c.plan))
            };
            // A large plan takes a while to free, and the process ends here.
            std::mem::forget(c);
            match written.and_then(|_| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mln plan: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Explain { file, host, path } => {
            let c = compile(&file);
            report(&c);
            match mln::explain::explain(&c, &host, &path, style) {
                Ok(text) => {
                    print!("{text}");
                    exit(c.ok())
                }
                Err(e) => {
                    eprintln!("mln explain: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Fmt { check, files } => fmt(&fs, check, &files, style),
        Command::Vm(cmd) => vm_commands::run(cmd, &cli.place, |file| {
            let c = compile(file);
            if report(&c) {
                Some(c.plan)
            } else {
                None
            }
        }),
        Command::Fabric(cmd) => fabric_commands::fabric(cmd, &cli.place),
        Command::Template(cmd) => fabric_commands::template(cmd, &cli.place),
        Command::Agent => fabric_commands::agent(&cli.place),
        Command::Parse { flag_file, file } => {
            let Some(file) = flag_file.or(file) else {
                eprintln!("mln parse: name a project file");
                return ExitCode::from(2);
            };
            let c = compile(&file);
            if !report(&c) {
                return ExitCode::FAILURE;
            }
            let mut scratch = mln::diag::Diagnostics::default();
            let resolver = mln::resolve::Resolver::new(&c.tree, &mut scratch);
            let global = resolver.plain(&c.tree.global().section, &c.tree.core.global, &mut scratch);
            let switches: Vec<_> = c
                .tree
                .ids(mln::tree::DefKind::Switch)
                .map(|id| {
                    let d = c.tree.def(id);
                    (d.name.clone(), resolver.plain(&d.section, &c.tree.core.switch, &mut scratch))
                })
                .collect();
            print!("{}", mln::render::resolved_tree(&c.tree, &global, &switches, &c.resolved));
            ExitCode::SUCCESS
        }
    }
}

fn fmt(fs: &DiskFs, check: bool, files: &[PathBuf], style: RenderStyle) -> ExitCode {
    let mut ok = true;
    let mut unformatted = 0;
    for f in files {
        let text = match fs.read(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mln fmt: cannot read {}: {e}", f.display());
                ok = false;
                continue;
            }
        };
        let mut sources = mln::source::SourceMap::default();
        let id = sources.add(f.clone(), f.display().to_string(), text.clone());
        let mut diags = mln::diag::Diagnostics::default();
        let entries = mln::syntax::parse_file(id, &text, &mut diags);
        if diags.has_errors() {
            eprint!("{}", render_all(diags.sorted(), &sources, style));
            eprintln!("mln fmt: {} not formatted: fix the syntax errors first", f.display());
            ok = false;
            continue;
        }
        let formatted = mln::fmt::format(&entries, &text);
        if formatted != text {
            unformatted += 1;
            if check {
                println!("{}", f.display());
            } else if let Err(e) = std::fs::write(f, formatted) {
                eprintln!("mln fmt: cannot write {}: {e}", f.display());
                ok = false;
            }
        }
    }
    exit(ok && !(check && unformatted > 0))
}

fn ds_count(d: &mln::diag::Diagnostics, s: Severity) -> usize {
    d.iter().filter(|x| x.severity == s).count()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
