//! `mln env add FILE | list | show NAME[:V] | remove NAME[:V]`: the
//! bare-metal environment library (Kadeploy's kaenv).

use super::context::{fail, Global};
use mln::baremetal::env::{self, Environment};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add the environment a TOML description file describes (its files
    /// copied into the library, each with its SHA-256).
    Add {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Every version of every environment.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One environment (the newest version unless NAME:VERSION).
    Show {
        #[arg(value_parser = env::parse_ref)]
        name: mln::baremetal::EnvRef,
        #[arg(long)]
        json: bool,
    },
    /// Remove one version (the newest unless NAME:VERSION) and its files.
    Remove {
        #[arg(value_parser = env::parse_ref)]
        name: mln::baremetal::EnvRef,
    },
}

fn shown(e: &Environment) -> String {
    let mut s = format!(
        "{}\n  description: {}\n  visibility:  {:?}\n  os:          {}\n  image:       {:?}, {:?}, {} bytes, sha256 {}\n",
        e.label(),
        e.description,
        e.visibility,
        e.os,
        e.image.kind,
        e.image.compression,
        e.image.file.size,
        e.image.file.sha256
    );
    if let Some(fs) = &e.filesystem {
        s += &format!("  filesystem:  {fs}\n");
    }
    for (what, f) in [("kernel", &e.kernel), ("initrd", &e.initrd)] {
        if let Some(f) = f {
            s += &format!("  {what:12} {} ({} bytes, sha256 {})\n", f.original, f.size, f.sha256);
        }
    }
    if !e.kernel_params.is_empty() {
        s += &format!("  parameters:  {}\n", e.kernel_params);
    }
    for f in &e.postinstall {
        s += &format!("  postinstall: {} (sha256 {})\n", f.original, f.sha256);
    }
    s
}

pub fn run(cmd: Command, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    match cmd {
        Command::Add { file, json } => match env::add(&state, &file) {
            Ok(e) if json => {
                println!("{}", serde_json::to_string_pretty(&e).expect("serializes"));
                ExitCode::SUCCESS
            }
            Ok(e) => {
                println!("added {}", mln::term::escape(&e.label()));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::List { json } => {
            let all = match env::list(&state) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            if json {
                let items: Vec<serde_json::Value> = all
                    .iter()
                    .map(|r| match r {
                        Ok(e) => serde_json::to_value(e).expect("serializes"),
                        Err(err) => serde_json::json!({ "error": err.to_string() }),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items).expect("serializes"));
            } else {
                for r in &all {
                    let line = match r {
                        Ok(e) => format!("{:24} {:8} {:4} {:>12}  {}", e.label(), format!("{:?}", e.visibility).to_lowercase(), format!("{:?}", e.image.kind).to_lowercase(), e.image.file.size, e.description),
                        Err(err) => err.to_string(),
                    };
                    println!("{}", mln::term::escape(&line));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Show { name, json } => match env::get(&state, &name) {
            Ok(e) if json => {
                println!("{}", serde_json::to_string_pretty(&e).expect("serializes"));
                ExitCode::SUCCESS
            }
            Ok(e) => {
                print!("{}", mln::term::escape_lines(&shown(&e)));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Remove { name } => match env::remove(&state, &name) {
            Ok(e) => {
                println!("removed {}", mln::term::escape(&e.label()));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
