//! `manifest.json` beside a built template: what went into it (the
//! recipe's hash, every package with its version) and the SHA-256 of every
//! file of the template, so a copy can be checked against it.

use super::error::TemplateError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub recipe_origin: String,
    pub recipe_sha256: String,
    pub distribution: String,
    pub suite: String,
    pub mirror: String,
    /// The root file system's size (the qcow2's virtual size).
    pub image_bytes: u64,
    pub cmdline: String,
    pub built_unix: u64,
    /// Packages found in the cache at the start, and fetched this time.
    pub packages_cached: usize,
    pub packages_downloaded: usize,
    /// `(package, version)`, sorted.
    pub packages: Vec<(String, String)>,
    pub files: Vec<FileEntry>,
    /// Each step's wall time, seconds.
    pub steps: Vec<(String, f64)>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest's name in a template's directory.
pub const FILE: &str = "manifest.json";

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The size and SHA-256 of each of `names` in `dir`. coreutils'
/// `sha256sum` reads them: in-process hashing of a 600 MB disk takes half a
/// minute in an unoptimized build (the e2e tests'), and ~2 s here.
pub fn hash_files(dir: &Path, names: &[&str]) -> Result<Vec<FileEntry>, TemplateError> {
    let paths: Vec<std::path::PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let mut args: Vec<&std::ffi::OsStr> = vec![std::ffi::OsStr::new("-b"), std::ffi::OsStr::new("--")];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let out = super::tools::must(super::tools::SHA256SUM, &args)?;
    let sums: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    if sums.len() != names.len() || sums.iter().any(|s| s.len() != 64) {
        return Err(TemplateError::Tool { tool: "sha256sum", output: out });
    }
    let mut entries = Vec::new();
    for ((n, p), sum) in names.iter().zip(&paths).zip(sums) {
        let bytes = std::fs::metadata(p).map_err(TemplateError::io("read", p))?.len();
        entries.push(FileEntry { file: n.to_string(), bytes, sha256: sum.to_string() });
    }
    Ok(entries)
}

pub fn write(m: &Manifest, path: &Path) -> Result<(), TemplateError> {
    let text = serde_json::to_string_pretty(m).expect("a manifest serializes");
    std::fs::write(path, text + "\n").map_err(TemplateError::io("write", path))
}

/// The manifest of a template directory, if it has a readable one.
pub fn read(dir: &Path) -> Option<Manifest> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_are_hashed_as_sha256() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"abc").unwrap();
        let f = super::hash_files(d.path(), &["a"]).unwrap();
        assert_eq!((f[0].bytes, f[0].sha256.as_str()), (3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_eq!(super::sha256_hex(b"abc"), f[0].sha256);
    }
}
