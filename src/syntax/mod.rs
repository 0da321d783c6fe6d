//! Source text to syntax tree: the pest grammar, lowering to an owned tree,
//! and the `#include` loader.

mod ast;
mod load;
mod parse;
mod plain;

pub use ast::*;
pub use load::{load, Loaded};
pub use parse::{parse_file, parse_shared, MAX_DEPTH, MAX_FILE_BYTES};
pub use plain::{is_plain, parse as parse_plain};
