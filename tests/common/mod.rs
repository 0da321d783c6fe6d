#![allow(dead_code)]
use mln::diag::{render_all, RenderStyle};
use mln::plugin::Registry;
use mln::source::{DiskFs, MemoryFs};
use std::path::{Path, PathBuf};

pub fn compile_disk(path: &Path) -> mln::Compilation {
    mln::compile(path, &DiskFs, Registry::new(vec![]))
}

/// As `mln --allow-path DIR... check`: the project may also read files
/// under `roots`.
pub fn compile_disk_allowing(path: &Path, roots: &[&str]) -> mln::Compilation {
    let options = mln::CompileOptions { allowed_roots: roots.iter().map(PathBuf::from).collect(), keep_resolved: true };
    mln::compile_with(path, &DiskFs, Registry::new(vec![]), &options)
}

pub fn compile_mem(files: &[(&str, &str)]) -> mln::Compilation {
    let mut fs = MemoryFs::default();
    for (p, t) in files {
        fs = fs.with(*p, *t);
    }
    mln::compile(Path::new(files[0].0), &fs, Registry::new(vec![]))
}

pub fn rendered(c: &mln::Compilation) -> String {
    render_all(c.diags.sorted(), &c.sources, RenderStyle::Plain).to_string()
}

pub fn codes(c: &mln::Compilation) -> Vec<&'static str> {
    c.diags.sorted().iter().map(|d| d.code).collect()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the test guest (testguest/build.sh) as template `mln-testguest`
/// in `templates`.
pub fn test_guest(templates: &Path) {
    let st = std::process::Command::new("bash").arg(root().join("testguest/build.sh")).arg(templates.join("mln-testguest")).status().unwrap();
    assert!(st.success(), "building the test guest failed");
}

/// What the guest's `mln-reach` said: each address and whether it answered.
pub fn reach_all(console: &str) -> Option<serde_json::Value> {
    console.lines().find_map(|l| l.trim().strip_prefix("MLN-REACH-ALL ")).and_then(|j| serde_json::from_str(j).ok())
}

/// The lines the guest's `mln-recv` got: each line's number and length.
pub fn lines_got(console: &str) -> Vec<(u64, usize)> {
    console
        .lines()
        .filter_map(|l| {
            let mut w = l.trim().strip_prefix("MLN-GOT ")?.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// Writes an executable file from a child `sh`: written by this process,
/// it could fail to run with ETXTBSY while another test thread's fork
/// still holds the write descriptor (between its fork and exec).
pub fn write_executable(path: &Path, content: &str) {
    use std::io::Write;
    let mut sh = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin.take().unwrap().write_all(content.as_bytes()).unwrap();
    assert!(sh.wait().unwrap().success(), "cannot write {}", path.display());
}
