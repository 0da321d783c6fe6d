//! The fabric: one project over many service hosts, reached over SSH, each
//! running `mln agent` (the same binary, copied over when missing) that
//! runs the same orchestration (`crate::runtime`) on its share with its
//! own libvirt. What is only the fabric's lives here: SSH, the agent and
//! its protocol, the relay, placement, the segments joining a switch's
//! bridges across service hosts, and the remote backend.

pub mod agent;
mod error;
pub mod capacity;
pub mod carry;
pub mod config;
pub mod exec;
pub mod inventory;
pub mod machines;
pub mod places;
pub mod known_hosts;
pub mod proto;
pub mod push;
pub mod relay;
pub mod remote;
pub mod segment;
pub mod ssh;
pub mod tree;
pub mod tunnel;

pub use config::{Fabric, Server};
pub use error::FabricError;
