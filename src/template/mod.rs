//! Guest OS templates that mln makes itself: `mln template build` from a
//! recipe (`recipes/*.toml`), and the templates directory's housekeeping
//! (list, show, remove, import). The result is an ordinary kernel-bundle
//! template (src/backend/template.rs), pushed to service hosts as any
//! other.

pub mod build;
pub mod error;
pub mod export;
pub mod manifest;
pub mod mirror;
pub mod recipe;
pub mod scratch;
pub mod store;
pub mod tools;
pub mod tuning;

pub use error::TemplateError;
