//! What goes into a guest: its configuration in formats real images
//! understand. Today: a cloud-init NoCloud seed (a FAT image labelled
//! `cidata`), built in Rust from the plan.

mod early;
mod fat;
pub mod fstemplate;
mod nocloud;

pub use fat::{fat_image, read_fat_file};
pub use nocloud::{is_cluster, seed_files, seed_files_with_keys, SeedFiles, SWAP_SPEC};
