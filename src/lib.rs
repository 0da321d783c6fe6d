//! mln: turns one declarative project file into a running cluster.
//!
//! The compiler is free of I/O beyond the [`source::FileSystem`] trait and
//! external plugin processes; the CLI in `main.rs` is a thin layer on top.

pub mod backend;
pub mod baremetal;
pub mod compile;
pub mod diag;
pub mod explain;
pub mod fabric;
pub mod fmt;
pub mod guest;
pub mod local_error;
pub mod login;
pub mod machine;
pub mod memory;
pub mod name;
mod parallel;
pub mod percent;
pub mod plan;
pub mod plugin;
pub mod progress;
pub mod display;
pub mod resolve;
pub mod runtime;
pub mod schema;
pub mod source;
pub mod state;
pub mod syntax;
pub mod template;
pub mod term;
#[cfg(test)]
mod test_exec;
pub mod upgrade;
pub mod definitions;

#[path = "../plugins/autoenum/mod.rs"]
pub mod autoenum;
#[path = "../plugins/cluster/mod.rs"]
pub mod cluster;

pub use compile::{compile, compile_with, Compilation, CompileOptions};

/// The plugins built into mln, in the order they are offered.
pub fn builtin_plugins() -> Vec<Box<dyn plugin::Plugin>> {
    vec![Box::new(autoenum::Autoenum), Box::new(cluster::Cluster)]
}
