//! Source text to syntax tree: the pest grammar, lowering to an owned tree,
//! and the `#include` loader.

mod ast;
mod load;
mod parse;

pub use ast::*;
pub use load::{load, Loaded};
pub use parse::{parse_file, MAX_DEPTH, MAX_FILE_BYTES};
