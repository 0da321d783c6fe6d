//! What an edit of a project file means for what is deployed: the plan a
//! project was built from against a new one, host by host, on fully
//! resolved values, each change classified by the lightest action that
//! applies it (`mln diff`, `mln upgrade -s`). Pure: no state, no machine.

mod classify;
mod diff;
mod preview;

pub use classify::Class;
pub use diff::{classes_of, diff, Change, HostDiff, ProjectChange, Upgrade, UpgradeError};
pub use preview::preview;
