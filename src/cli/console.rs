//! `mln console -p PROJECT -h HOST [--no-follow]`: what a guest's serial
//! console printed, here or on its service host, then what it prints next.

use super::context::{fail, Global};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    #[arg(short = 'h', long = "host")]
    pub host: String,
    /// Print what is there and return instead of following.
    #[arg(long)]
    pub no_follow: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Console text as a terminal wants it: the guest's tty ends lines with
/// CRLF.
fn write(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.replace("\r\n", "\n").as_bytes())?;
    out.flush()
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (state, rec) = match g.open_project(&a.project) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(host) = rec.plan.hosts.iter().find(|h| h.name == a.host) else {
        return fail(format!("project {} has no host {}", a.project, a.host));
    };
    let mut out = std::io::stdout().lock();
    // Kept here: the async runtime must outlive every remote read.
    let mut _rt = None;
    let read: Box<dyn Fn(u64) -> Result<mln::fabric::proto::ConsoleChunk, String>> = match &host.service_host {
        None => {
            let path = match state.host_dir(&a.project, &a.host) {
                Ok(d) => d.join("console.log"),
                Err(e) => return fail(e),
            };
            Box::new(move |offset| mln::fabric::agent::console_chunk(&path, offset))
        }
        Some(server) => {
            let (fabric, runtime) = match g.fabric(&state) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let remote = mln::fabric::machines::RemoteMachines::new(fabric.server(server), runtime.handle().clone(), state.templates_dir());
            _rt = Some(runtime);
            let (project, name) = (a.project.clone(), a.host.clone());
            Box::new(move |offset| remote.console(&project, &name, offset).map_err(|e| e.to_string()))
        }
    };
    let mut offset = 0;
    loop {
        let got = match read(offset) {
            Ok(chunk) => {
                if write(&mut out, &chunk.data).is_err() {
                    return ExitCode::SUCCESS;
                }
                let got = chunk.offset > offset;
                offset = chunk.offset;
                got
            }
            Err(e) => return fail(format!("no console for {} in {}: {e}", a.host, a.project)),
        };
        if !got {
            if a.no_follow {
                return ExitCode::SUCCESS;
            }
            std::thread::sleep(Duration::from_millis(if host.service_host.is_some() { 1000 } else { 200 }));
        }
    }
}
