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

/// A tool's run with the time each of its `I: ` lines (mmdebstrap's
/// phase announcements) arrived, so a build can say where its time went.
pub struct Phased {
    pub ran: Ran,
    /// `(phase, seconds until the next announcement or the end)`.
    pub phases: Vec<(String, f64)>,
}

/// Like [`run`], reading stderr as it comes; stdout is read beside it so
/// neither pipe can fill and stall the tool.
pub fn run_phased(tool: (&'static str, &'static str), args: &[&std::ffi::OsStr]) -> Result<Phased, TemplateError> {
    use std::io::{BufRead, Read};
    let exe = which(tool)?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(TemplateError::io("run", &exe))?;
    let started = std::time::Instant::now();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let mut err = Vec::new();
    let mut marks: Vec<(String, f64)> = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if let Some(p) = text.strip_prefix("I: ") {
                    marks.push((phase_name(p), started.elapsed().as_secs_f64()));
                }
                err.extend_from_slice(&line);
            }
        }
    }
    let status = child.wait().map_err(TemplateError::io("wait for", &exe))?;
    let end = started.elapsed().as_secs_f64();
    let mut output = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    Ok(Phased { ran: Ran { ok: status.success(), output }, phases: durations(&marks, end) })
}

/// An announcement without its details (paths, the hook's text), so runs
/// with different directories name their phases alike.
fn phase_name(line: &str) -> String {
    let l = line.trim();
    let cut = [l.find(": "), l.find("...")].into_iter().flatten().min().unwrap_or(l.len());
    let l = &l[..cut];
    // "success in 118.0 seconds": the time is in the phase's duration.
    if l.starts_with("success in ") { "success".into() } else { l.to_string() }
}

fn durations(marks: &[(String, f64)], end: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some((_, first)) = marks.first() {
        out.push(("start".to_string(), *first));
    }
    for (i, (name, at)) in marks.iter().enumerate() {
        let next = marks.get(i + 1).map_or(end, |m| m.1);
        out.push((name.clone(), next - at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_named_without_details_and_timed_to_the_next() {
        assert_eq!(phase_name("running --customize-hook in shell: sh -c 'x' exec /r\n"), "running --customize-hook in shell");
        assert_eq!(phase_name("extracting archives..."), "extracting archives");
        assert_eq!(phase_name("success in 118.2042 seconds"), "success");
        let d = durations(&[("a".into(), 1.0), ("b".into(), 3.5)], 4.0);
        assert_eq!(d, [("start".to_string(), 1.0), ("a".to_string(), 2.5), ("b".to_string(), 0.5)]);
    }

    #[test]
    fn a_phased_run_keeps_both_streams_and_the_status() {
        let p = run_phased(("sh", "dash"), &[std::ffi::OsStr::new("-c"), std::ffi::OsStr::new("echo out; echo 'I: one...' >&2; echo 'I: two' >&2; exit 3")]).unwrap();
        assert!(!p.ran.ok);
        assert!(p.ran.output.contains("out") && p.ran.output.contains("I: two"), "{}", p.ran.output);
        let names: Vec<&str> = p.phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["start", "one", "two"]);
    }
}
