//! Project hook scripts (`beforeProjectStart`...), run on the managing
//! machine; a failing hook aborts the operation with its output.

use crate::plan::Plan;
use std::process::Command;

/// Runs a project's hook scripts. Behind a trait so the orchestration can
/// be tested without a shell.
pub trait Hooks: Sync {
    /// Runs `hook` of `plan` if it has one.
    fn run(&self, plan: &Plan, hook: &str) -> Result<(), HookError>;
}

/// A hook that could not run or failed: the operation stops before what
/// the hook guards. A person decides whether to try again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("hook {hook}: cannot run sh: {message}")]
    NoShell { hook: String, message: String },
    /// Its exit status and output (escaped for the terminal).
    #[error("hook {hook} failed ({status}):\n{output}")]
    Failed { hook: String, status: String, output: String },
}

/// Each hook as `sh -e -c LINES` with `MLN_PROJECT` set.
pub struct Shell;

impl Hooks for Shell {
    fn run(&self, plan: &Plan, hook: &str) -> Result<(), HookError> {
        let Some(lines) = plan.hooks.get(hook) else { return Ok(()) };
        let script = lines.join("\n");
        let out = Command::new("sh")
            .arg("-e")
            .arg("-c")
            .arg(&script)
            .env("MLN_PROJECT", &plan.project)
            .output()
            .map_err(|e| HookError::NoShell { hook: hook.to_string(), message: e.to_string() })?;
        if out.status.success() {
            return Ok(());
        }
        Err(HookError::Failed {
            hook: hook.to_string(),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                crate::term::escape_lines(&String::from_utf8_lossy(&out.stdout)),
                crate::term::escape_lines(&String::from_utf8_lossy(&out.stderr))
            ),
        })
    }
}

/// No hooks at all: a service host's share of a project has none (they
/// run on the managing machine).
pub struct NoHooks;

impl Hooks for NoHooks {
    fn run(&self, _: &Plan, _: &str) -> Result<(), HookError> {
        Ok(())
    }
}
