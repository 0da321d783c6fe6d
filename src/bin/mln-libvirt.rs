//! `mln-libvirt`: every `mln` command, libvirt linked in. `mln` hands it
//! the commands that build, run or inspect machines (`cli::front`); it is
//! also what goes to service hosts as the agent (it sends its own file).

use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `cli::front` (and what only it uses) is `mln`'s.
#[allow(dead_code)]
#[path = "../cli/mod.rs"]
mod cli;

fn main() -> ExitCode {
    mln::memory::no_huge_pages();
    // The watcher of libvirt's capability probes is this same binary.
    if let Some(root) = std::env::var_os(mln::backend::probes::WATCH_ENV) {
        return mln::backend::probes::run_watcher(root.into());
    }
    // So is the process beside the network boot's dnsmasq.
    if let Some(interface) = std::env::var_os(mln::baremetal::netboot::companion::COMPANION_ENV) {
        return mln::baremetal::netboot::companion::run(&interface);
    }
    mln::backend::probes::enable_watcher();
    mln::baremetal::netboot::companion::enable();
    cli::main()
}
