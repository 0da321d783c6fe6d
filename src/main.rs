//! The `mln` command line (see `cli`).

use std::process::ExitCode;

// Plans of thousands of hosts are allocation-heavy; mimalloc cuts the
// allocator's share of `mln plan` by about half (measured: book, benchmarks).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() -> ExitCode {
    mln::memory::no_huge_pages();
    // The watcher of libvirt's capability probes is this same binary.
    if let Some(root) = std::env::var_os(mln::backend::probes::WATCH_ENV) {
        return mln::backend::probes::run_watcher(root.into());
    }
    mln::backend::probes::enable_watcher();
    cli::main()
}
