//! `mln agent` (hidden): serves one request from a managing mln over
//! stdin/stdout; run by mln over SSH on service hosts.

use super::context::Global;
use mln::state::State;
use std::process::ExitCode;

pub fn run(g: &Global) -> ExitCode {
    let state_dir = g.state_dir();
    let state = match State::open(&state_dir) {
        Ok(s) => s,
        Err(e) => {
            println!("{}", serde_json::json!({"error": e.to_string()}));
            return ExitCode::FAILURE;
        }
    };
    let target = g.target(&state);
    let connect = mln::runtime::places::local_uri(&state, g.connect.as_deref(), None);
    drop(state);
    let code = mln::fabric::agent::serve(&mln::fabric::agent::Options { state_dir, templates: target.templates, connect });
    ExitCode::from(code as u8)
}
