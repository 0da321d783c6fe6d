//! `mln template build | list | show | remove | import | push`: the
//! templates directory, and a template to the service hosts that lack it.

use super::context::{fail, Global};
use mln::machine::{Outcome, Status};
use mln::template::{build, export, recipe, store};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a template from a recipe: a recipe file, or one shipped with
    /// mln (debian-12, debian-12-openmpi). Needs root and mmdebstrap.
    Build {
        recipe: String,
        /// Another Debian mirror than the recipe's.
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// The template's name (default: the recipe's).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The templates in the templates directory.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One template: its files, and for a built one its manifest.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a template that no project's disk is made from.
    Remove { name: String },
    /// Copy a qcow2 or raw disk image into the templates directory.
    Import {
        file: PathBuf,
        /// The template's name (default: the file's name, ending .qcow2).
        #[arg(long)]
        name: Option<String>,
    },
    /// Export a built template as a bare-metal tar environment: the root
    /// file system as a tar archive, the kernel, the initrd, and the
    /// env.toml that `mln env add` takes.
    Export {
        name: String,
        /// As a tar environment for bare-metal nodes (the one export there is).
        #[arg(long, required = true)]
        env: bool,
        /// Where the files go (default: ./NAME-env).
        #[arg(short = 'o', value_name = "DIR")]
        out: Option<PathBuf>,
        /// gzip the archive instead of zstd (for nodes without zstd).
        #[arg(long)]
        gzip: bool,
    },
    /// Send a template to service hosts that lack it or hold another copy.
    Push {
        name: String,
        #[arg(short = 'w', value_name = "HOSTS")]
        hosts: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Command, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let templates = g.target(&state).templates;
    let projects = state.dir().join("projects");
    match cmd {
        Command::Build { recipe, mirror, name, json } => {
            let loaded = match recipe::load(&recipe) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let cache = state.dir().join("cache").join("debs");
            let req = build::Request {
                recipe: &loaded,
                templates: &templates,
                cache: &cache,
                projects: Some(&projects),
                mirror: mirror.as_deref(),
                name: name.as_deref(),
            };
            let mut note = |s: &str| {
                if !json {
                    eprintln!("mln: {}", mln::term::escape(s));
                }
            };
            match build::build(&req, &mut note) {
                Ok(b) if json => {
                    println!("{}", serde_json::to_string_pretty(&b.manifest).expect("a manifest serializes"));
                    ExitCode::SUCCESS
                }
                Ok(b) => {
                    let m = &b.manifest;
                    let disk = m.files.iter().find(|f| f.file == "disk.qcow2").map_or(0, |f| f.bytes);
                    println!(
                        "built {} in {:.1} s: {} packages ({} downloaded), disk.qcow2 {} MiB, in {}",
                        b.name,
                        m.seconds,
                        m.packages.len(),
                        m.packages_downloaded,
                        disk >> 20,
                        b.dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::List { json } => match store::list(&templates) {
            Ok(list) if json => {
                let rows: Vec<serde_json::Value> = list.iter().map(|e| serde_json::json!({"name": e.name, "kind": e.kind, "bytes": e.bytes, "built": e.manifest.is_some()})).collect();
                println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize"));
                ExitCode::SUCCESS
            }
            Ok(list) => {
                if list.is_empty() {
                    println!("no templates in {}", templates.display());
                }
                for e in list {
                    let from = e.manifest.as_ref().map(|m| format!("  {} {}, {} packages", m.distribution, m.suite, m.packages.len())).unwrap_or_default();
                    println!("{:<32} {:<7} {:>8} MiB{from}", mln::term::escape(&e.name), e.kind, e.bytes >> 20);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Show { name, json } => match store::show(&templates, &name) {
            Ok(e) if json => {
                println!("{}", serde_json::to_string_pretty(&e).expect("an entry serializes"));
                ExitCode::SUCCESS
            }
            Ok(e) => {
                println!("{} ({}, {} MiB) in {}", mln::term::escape(&e.name), e.kind, e.bytes >> 20, templates.display());
                if let Some(m) = &e.manifest {
                    println!("recipe   {} (sha256 {})", mln::term::escape(&m.recipe_origin), m.recipe_sha256);
                    println!("base     {} {} from {}", m.distribution, m.suite, m.mirror);
                    println!("cmdline  {}", m.cmdline);
                    println!("built    in {:.1} s, {} packages ({} downloaded)", m.seconds, m.packages.len(), m.packages_downloaded);
                    for f in &m.files {
                        println!("file     {:<11} {:>10} bytes  sha256 {}", f.file, f.bytes, f.sha256);
                    }
                    for (p, v) in &m.packages {
                        println!("package  {p} {v}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Remove { name } => match store::remove(&templates, &name, Some(&projects)) {
            Ok(()) => {
                println!("removed {}", mln::term::escape(&name));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Import { file, name } => {
            let name = name.unwrap_or_else(|| store::default_import_name(&file));
            match store::import(&templates, &file, &name) {
                Ok(e) => {
                    println!("imported {} ({} MiB)", mln::term::escape(&e.name), e.bytes >> 20);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Export { name, env: _, out, gzip } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}-env")));
            let compression = if gzip { export::Compression::Gzip } else { export::Compression::Zstd };
            let mut note = |s: &str| eprintln!("mln: {}", mln::term::escape(s));
            match export::export(&templates, &name, &out, compression, &mut note) {
                Ok(x) => {
                    println!(
                        "exported {} as an environment: {} ({} MiB, {} entries); add it with: mln env add {}",
                        mln::term::escape(&name),
                        x.tarball.display(),
                        x.tar_bytes >> 20,
                        x.entries,
                        x.env_toml.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Push { name, hosts, json } => push(g, &state, name, hosts, json),
    }
}

fn push(g: &Global, state: &mln::state::State, name: String, hosts: Option<String>, json: bool) -> ExitCode {
    let target = g.target(state);
    let (fab, rt) = match g.fabric(state) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let list = match super::context::servers(&fab, hosts.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let ctx = mln::fabric::inventory::Ctx { fabric: &fab, templates: target.templates.clone(), cache: state.dir().join("cache"), rt: &rt };
    let outcomes: Vec<Outcome> = mln::fabric::inventory::push(&ctx, &list, &name)
        .into_iter()
        .map(|(host, r)| match r {
            Ok(m) => Outcome { host, place: None, status: Status::Ok, message: m, retry: false },
            Err(e) => Outcome::failed(&host, &e.into()),
        })
        .collect();
    super::output::outcomes("push", Ok(outcomes), json)
}
