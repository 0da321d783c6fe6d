//! `mln template push NAME [-w HOSTS]`: a template to the service hosts
//! that lack it or hold another copy.

use super::context::{fail, Global};
use mln::machine::{Outcome, Status};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
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
    let Command::Push { name, hosts, json } = cmd;
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = g.target(&state);
    let (fab, rt) = match g.fabric(&state) {
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
