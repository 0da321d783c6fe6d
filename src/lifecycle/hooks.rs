//! Project hook scripts (`beforeProjectStart`...), run on the managing
//! machine; a failing hook aborts the operation with its output.

use crate::plan::Plan;
use std::process::Command;

pub fn run(plan: &Plan, hook: &str) -> Result<(), String> {
    let Some(lines) = plan.hooks.get(hook) else { return Ok(()) };
    let script = lines.join("\n");
    let out = Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(&script)
        .env("MLN_PROJECT", &plan.project)
        .output()
        .map_err(|e| format!("hook {hook}: cannot run sh: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "hook {hook} failed ({}):\n{}{}",
        out.status,
        crate::term::escape_lines(&String::from_utf8_lossy(&out.stdout)),
        crate::term::escape_lines(&String::from_utf8_lossy(&out.stderr))
    ))
}
