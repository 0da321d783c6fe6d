//! `mln`: the commands that read project files (check, plan, explain,
//! fmt, parse, diff, completions) run here; the others are handed to
//! `mln-libvirt` (src/bin/mln-libvirt.rs), which links libvirt. See
//! `cli::front`.

use std::process::ExitCode;

// Plans of thousands of hosts are allocation-heavy; mimalloc cuts the
// allocator's share of `mln plan` by about half (measured: book, benchmarks).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The VM commands' `run`s are compiled here but only `mln-libvirt` calls
// them: that they stay unreachable is what keeps libvirt out of `mln`.
#[allow(dead_code)]
mod cli;

fn main() -> ExitCode {
    mln::memory::no_huge_pages();
    cli::front()
}
