//! The programs a build runs, found on PATH (and in the sbin directories a
//! user's PATH may lack), each run with its arguments as argv: no shell
//! on this side ever sees a recipe's value.

use super::error::TemplateError;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `(tool, Debian package that has it)`.
pub const MMDEBSTRAP: (&str, &str) = ("mmdebstrap", "mmdebstrap");
pub const MKE2FS: (&str, &str) = ("mke2fs", "e2fsprogs");
pub const QEMU_IMG: (&str, &str) = ("qemu-img", "qemu-utils");
pub const DPKG_QUERY: (&str, &str) = ("dpkg-query", "dpkg");
pub const DEBUGFS: (&str, &str) = ("debugfs", "e2fsprogs");
pub const TAR: (&str, &str) = ("tar", "tar");
pub const ZSTD: (&str, &str) = ("zstd", "zstd");
pub const SHA256SUM: (&str, &str) = ("sha256sum", "coreutils");

pub fn which(tool: (&'static str, &'static str)) -> Result<PathBuf, TemplateError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool.0))
        .find(|p| p.is_file())
        .ok_or(TemplateError::ToolMissing { tool: tool.0, package: tool.1 })
}

/// What a finished tool printed.
pub struct Ran {
    pub ok: bool,
    /// stdout then stderr.
    pub output: String,
}

pub fn run(tool: (&'static str, &'static str), args: &[&std::ffi::OsStr]) -> Result<Ran, TemplateError> {
    let exe = which(tool)?;
    let out = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(TemplateError::io("run", exe))?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Ran { ok: out.status.success(), output })
}

/// A tool that must succeed; its failure carries its last lines.
pub fn must(tool: (&'static str, &'static str), args: &[&std::ffi::OsStr]) -> Result<String, TemplateError> {
    let r = run(tool, args)?;
    if r.ok {
        Ok(r.output)
    } else {
        Err(TemplateError::Tool { tool: tool.0, output: tail(&r.output, 20) })
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
