//! The fabric: one project over many service hosts, reached over SSH, each
//! running `mln agent` (the same binary, copied over when missing) that
//! drives its own libvirt with the local lifecycle code.

pub mod agent;
pub mod capacity;
pub mod config;
pub mod exec;
pub mod known_hosts;
pub mod project;
pub mod proto;
pub mod push;
pub mod relay;
pub mod remote;
pub mod ssh;

pub use config::{Fabric, Server};
