//! `mln parse [-f] FILE`: the resolved tree in MLN syntax (MLN's `parse`).

use super::context::{usage, Global};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub flag_file: Option<PathBuf>,
    pub file: Option<PathBuf>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let Some(file) = a.flag_file.or(a.file) else {
        return usage("parse: name a project file");
    };
    let c = g.compile_whole(&file);
    if !g.report(&c) {
        return ExitCode::FAILURE;
    }
    let mut scratch = mln::diag::Diagnostics::default();
    let resolver = mln::resolve::Resolver::new(&c.tree, &mut scratch);
    let global = resolver.plain(&c.tree.global().section, &c.tree.core.global, &mut scratch);
    let switches: Vec<_> = c
        .tree
        .ids(mln::definitions::DefKind::Switch)
        .map(|id| {
            let d = c.tree.def(id);
            (d.name.clone(), resolver.plain(&d.section, &c.tree.core.switch, &mut scratch))
        })
        .collect();
    print!("{}", mln::display::resolved_tree(&c.tree, &global, &switches, &c.resolved));
    ExitCode::SUCCESS
}
