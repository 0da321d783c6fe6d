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

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The size and SHA-256 of each of `names` in `dir`, read in 1 MiB blocks.
pub fn hash_files(dir: &Path, names: &[&str]) -> Result<Vec<FileEntry>, TemplateError> {
    use std::io::Read;
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(n);
        let mut f = std::fs::File::open(&p).map_err(TemplateError::io("read", &p))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let k = f.read(&mut buf).map_err(TemplateError::io("read", &p))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            bytes += k as u64;
        }
        out.push(FileEntry { file: n.to_string(), bytes, sha256: hex(&h.finalize()) });
    }
    Ok(out)
}

pub fn write(m: &Manifest, path: &Path) -> Result<(), TemplateError> {
    let text = serde_json::to_string_pretty(m).expect("a manifest serializes");
    std::fs::write(path, text + "\n").map_err(TemplateError::io("write", path))
}

/// The manifest of a template directory, if it has a readable one.
pub fn read(dir: &Path) -> Option<Manifest> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).ok()?).ok()
}
