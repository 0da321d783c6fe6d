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
    /// Where the scratch root was (memory or disk); absent in manifests
    /// of builds before mln chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<super::scratch::Place>,
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

/// The size and SHA-256 of each of `names` in `dir`, hashed in-process:
/// sha2 uses the CPU's SHA extensions where it has them (~1.5 GB/s here
/// against coreutils' `sha256sum` at ~0.25 GB/s, which a build paid for
/// its whole qcow2). Cargo.toml builds sha2 optimized in debug builds
/// too, or the e2e tests' unoptimized binary would take half a minute.
pub fn hash_files(dir: &Path, names: &[&str]) -> Result<Vec<FileEntry>, TemplateError> {
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            let (bytes, sha256) = hash_file(&p).map_err(TemplateError::io("read", &p))?;
            Ok(FileEntry { file: n.to_string(), bytes, sha256 })
        })
        .collect()
}

/// A file's length and SHA-256, read once in large blocks.
fn hash_file(p: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((bytes, hex(&h.finalize())))
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

    #[test]
    fn a_file_larger_than_the_read_block_hashes_whole_and_a_missing_one_fails() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(d.path().join("big"), &data).unwrap();
        let f = super::hash_files(d.path(), &["big"]).unwrap();
        assert_eq!((f[0].bytes, f[0].sha256.as_str()), (data.len() as u64, super::sha256_hex(&data).as_str()));
        let e = super::hash_files(d.path(), &["big", "gone"]).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }
}
