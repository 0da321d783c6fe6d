//! Logging into guests: the project's key pairs (`keys`), the guests'
//! host keys as their consoles published them (`known_hosts`), and how a
//! guest's SSH port is reached from the machine that runs it (`reach`),
//! a refused login tried again while `mln ssh --wait` waits (`refusal`)
//! and what it waits for (`configured`);
//! guests on service hosts through those hosts (`remote`).
//! book/src/login.md says why each is as it is.

pub mod error;
pub mod given;
pub mod keys;
pub mod command;
pub mod configured;
pub mod known_hosts;
pub mod reach;
pub mod refusal;
pub mod remote;

pub use error::LoginError;
