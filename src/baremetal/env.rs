//! The environment library (Kadeploy's kaenv): what a bare-metal node is
//! deployed with. An environment is described by a TOML file (name,
//! version, image, kernel, initrd, post-install scripts...); `add` copies
//! its files into the state directory's library under names mln chooses
//! (nothing the file says reaches a path), records each file's SHA-256 in
//! the state database, and [`verify`] checks them again before a
//! deployment.

use crate::name::{self, NameKind};
use crate::state::{EnvRow, State, StateError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::EnvRef;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{}: {why}", file.display())]
    Description { file: PathBuf, why: String },
    #[error("cannot {what} {}: {source}", path.display())]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error("environment {name}:{version} is in the library already; give the file a new `version`")]
    Exists { name: String, version: u32 },
    #[error("no environment {0} in the library (see `mln env list`)")]
    Missing(String),
    #[error("environment {env}: {file} has changed since it was added (SHA-256 {found}, recorded {expected}); add it again as a new version")]
    Checksum { env: String, file: String, expected: String, found: String },
    #[error("the recorded environment {env} is unreadable: {why}")]
    Unreadable { env: String, why: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Escape(#[from] name::Escape),
}

impl EnvError {
    fn io(path: &Path, what: &'static str, source: std::io::Error) -> EnvError {
        EnvError::Io { path: path.to_path_buf(), what, source }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A tar archive of the root file system: unpacked onto a fresh file
    /// system of the partition.
    Tar,
    /// A raw image written to the partition (or disk) as it is.
    Dd,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The program that decompresses it on the node (a pipe stage), None
    /// when it is not compressed.
    pub fn decompressor(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip -dc"),
            Compression::Xz => Some("xz -dc"),
            Compression::Zstd => Some("zstd -dc"),
        }
    }
}

/// Kadeploy's visibilities: who may deploy it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    #[default]
    Private,
    Shared,
}

/// The description file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    name: String,
    version: Option<u32>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    visibility: Visibility,
    #[serde(default = "linux")]
    os: String,
    image: ImageDescription,
    kernel: Option<String>,
    initrd: Option<String>,
    #[serde(default)]
    kernel_params: String,
    filesystem: Option<String>,
    #[serde(default)]
    postinstall: Vec<String>,
}

fn linux() -> String {
    "linux".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageDescription {
    file: String,
    kind: ImageKind,
    #[serde(default)]
    compression: Compression,
}

/// A file of the library: its name in the version's directory (chosen by
/// mln), the name it had (for people), its SHA-256 and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub stored: String,
    pub original: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub kind: ImageKind,
    pub compression: Compression,
    pub file: StoredFile,
}

/// One version of an environment, as the library holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub visibility: Visibility,
    pub os: String,
    pub image: Image,
    pub kernel: Option<StoredFile>,
    pub initrd: Option<StoredFile>,
    pub kernel_params: String,
    /// The file system made on the partition for a tar image (`ext4`).
    pub filesystem: Option<String>,
    /// Run in order in the deployed system, after the configuration.
    pub postinstall: Vec<StoredFile>,
}

impl Environment {
    pub fn label(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
    /// Every file with its role.
    pub fn files(&self) -> Vec<&StoredFile> {
        let mut out = vec![&self.image.file];
        out.extend(self.kernel.iter());
        out.extend(self.initrd.iter());
        out.extend(self.postinstall.iter());
        out
    }
    /// Where a file of this version is.
    pub fn path(&self, state: &State, f: &StoredFile) -> Result<PathBuf, EnvError> {
        Ok(name::inside(&state.environments_dir(), &[&self.name, &self.version.to_string(), &f.stored])?)
    }
}

/// `NAME` or `NAME:VERSION` (a command-line argument).
pub fn parse_ref(s: &str) -> Result<EnvRef, String> {
    let (n, v) = match s.split_once(':') {
        Some((n, v)) => (n, Some(v.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| format!("`{v}` is not a version (1, 2, ...)"))?)),
        None => (s, None),
    };
    name::check(NameKind::Environment, n).map_err(|e| e.to_string())?;
    Ok(EnvRef { name: n.to_string(), version: v })
}

pub fn display_ref(r: &EnvRef) -> String {
    match r.version {
        Some(v) => format!("{}:{v}", r.name),
        None => r.name.clone(),
    }
}

/// Copies `from` to `to` (made 0644), returning its SHA-256 and size.
fn copy_hashed(from: &Path, to: &Path) -> Result<(String, u64), EnvError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::File::open(from).map_err(|e| EnvError::io(from, "read", e))?;
    if !src.metadata().map_err(|e| EnvError::io(from, "read", e))?.is_file() {
        return Err(EnvError::io(from, "read", std::io::Error::other("not a regular file")));
    }
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(to).map_err(|e| EnvError::io(to, "write", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| EnvError::io(from, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(|e| EnvError::io(to, "write", e))?;
        size += n as u64;
    }
    dst.sync_all().map_err(|e| EnvError::io(to, "write", e))?;
    Ok((hex(&h.finalize()), size))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SHA-256 of a file.
pub fn sha256_of(path: &Path) -> Result<String, EnvError> {
    let mut f = std::fs::File::open(path).map_err(|e| EnvError::io(path, "read", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| EnvError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn decode(row: &EnvRow) -> Result<Environment, EnvError> {
    let env: Environment = serde_json::from_str(&row.json).map_err(|e| EnvError::Unreadable { env: format!("{}:{}", row.name, row.version), why: e.to_string() })?;
    // A row whose JSON names another environment, or file names that are
    // not plain names, was not written by `add`: refuse it.
    let plain = env.files().iter().all(|f| name::inside(Path::new("/"), &[&f.stored]).is_ok());
    if env.name != row.name || env.version != row.version || !plain {
        return Err(EnvError::Unreadable { env: format!("{}:{}", row.name, row.version), why: "it does not describe itself".into() });
    }
    Ok(env)
}

/// Adds the environment described by `file` to the library.
pub fn add(state: &State, file: &Path) -> Result<Environment, EnvError> {
    let bad = |why: String| EnvError::Description { file: file.to_path_buf(), why };
    let text = std::fs::read_to_string(file).map_err(|e| EnvError::io(file, "read", e))?;
    let d: Description = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    name::check(NameKind::Environment, &d.name).map_err(|e| bad(e.to_string()))?;
    if d.version == Some(0) {
        return Err(bad("versions are numbered from 1".into()));
    }
    if let Some(fs) = &d.filesystem {
        if !fs.chars().all(|c| c.is_ascii_alphanumeric()) || fs.is_empty() {
            return Err(bad(format!("`{}` is not a file system type (ext4, xfs...)", crate::term::escape(fs))));
        }
    }
    if d.image.kind == ImageKind::Tar && d.filesystem.is_none() {
        return Err(bad("a tar image needs `filesystem` (the file system it is unpacked onto, e.g. \"ext4\")".into()));
    }
    let version = match d.version {
        Some(v) => v,
        None => state.environment(&d.name, None)?.map(|r| r.version + 1).unwrap_or(1),
    };
    if state.environment(&d.name, Some(version))?.is_some() {
        return Err(EnvError::Exists { name: d.name, version });
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let lib = state.environments_dir();
    std::fs::create_dir_all(&lib).map_err(|e| EnvError::io(&lib, "create", e))?;
    let env_dir = name::inside(&lib, &[&d.name])?;
    std::fs::create_dir_all(&env_dir).map_err(|e| EnvError::io(&env_dir, "create", e))?;
    // Copied into a temporary directory beside the version's, renamed in
    // place when complete: an interrupted add leaves no half version.
    let tmp = tempfile::Builder::new().prefix(".adding-").tempdir_in(&env_dir).map_err(|e| EnvError::io(&env_dir, "create", e))?;
    let store = |stored: String, original: &str| -> Result<StoredFile, EnvError> {
        let from = base.join(original);
        let to = name::inside(tmp.path(), &[&stored])?;
        let (sha256, size) = copy_hashed(&from, &to)?;
        let shown = Path::new(original).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(StoredFile { stored, original: shown, sha256, size })
    };
    let image = Image { kind: d.image.kind, compression: d.image.compression, file: store("image".into(), &d.image.file)? };
    let kernel = d.kernel.as_deref().map(|k| store("kernel".into(), k)).transpose()?;
    let initrd = d.initrd.as_deref().map(|k| store("initrd".into(), k)).transpose()?;
    let postinstall = d.postinstall.iter().enumerate().map(|(i, p)| store(format!("postinstall-{:02}", i + 1), p)).collect::<Result<Vec<_>, _>>()?;
    let env = Environment {
        name: d.name,
        version,
        description: d.description,
        visibility: d.visibility,
        os: d.os,
        image,
        kernel,
        initrd,
        kernel_params: d.kernel_params,
        filesystem: d.filesystem,
        postinstall,
    };
    let dest = state.environment_dir(&env.name, version)?;
    if dest.exists() {
        // Files of a version removed from the database but not from disk.
        std::fs::remove_dir_all(&dest).map_err(|e| EnvError::io(&dest, "remove", e))?;
    }
    let kept = tmp.keep();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o755)).map_err(|e| EnvError::io(&kept, "set permissions of", e))?;
    std::fs::rename(&kept, &dest).map_err(|e| EnvError::io(&dest, "create", e))?;
    let json = serde_json::to_string(&env).expect("an environment serializes");
    if !state.add_environment(&EnvRow { name: env.name.clone(), version, json })? {
        return Err(EnvError::Exists { name: env.name, version });
    }
    Ok(env)
}

/// Every version of every environment.
pub fn list(state: &State) -> Result<Vec<Result<Environment, EnvError>>, EnvError> {
    Ok(state.environments()?.iter().map(decode).collect())
}

/// The version named, or the newest.
pub fn get(state: &State, r: &EnvRef) -> Result<Environment, EnvError> {
    match state.environment(&r.name, r.version)? {
        Some(row) => decode(&row),
        None => Err(EnvError::Missing(display_ref(r))),
    }
}

/// Removes a version (the newest when none is named): its row and files.
pub fn remove(state: &State, r: &EnvRef) -> Result<Environment, EnvError> {
    let env = get(state, r)?;
    let dir = state.environment_dir(&env.name, env.version)?;
    state.forget_environment(&env.name, env.version)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| EnvError::io(&dir, "remove", e))?;
    }
    if let Ok(parent) = name::inside(&state.environments_dir(), &[&env.name]) {
        let _ = std::fs::remove_dir(parent); // only when no version is left
    }
    Ok(env)
}

/// Every file of the version as it was added: checked before deploying.
pub fn verify(state: &State, env: &Environment) -> Result<(), EnvError> {
    for f in env.files() {
        let found = sha256_of(&env.path(state, f)?)?;
        if found != f.sha256 {
            return Err(EnvError::Checksum { env: env.label(), file: f.original.clone(), expected: f.sha256.clone(), found });
        }
    }
    Ok(())
}

/// The plan's bare-metal hosts whose environment the library lacks, each
/// with the `environment` line that names it: `mln build` refuses the
/// project before any node is touched.
pub fn missing(state: &State, c: &crate::Compilation) -> Result<Vec<crate::diag::Diagnostic>, EnvError> {
    let mut out = Vec::new();
    for h in &c.plan.hosts {
        let Some(node) = &h.baremetal else { continue };
        if state.environment(&node.environment.name, node.environment.version)?.is_some() {
            continue;
        }
        // Planning keeps no resolved hosts: the one line is looked up again.
        let span = c.span_of(&h.name, "environment").unwrap_or_default();
        out.push(
            crate::diag::Diagnostic::error("mln::baremetal::unknown_environment", format!("the library holds no environment {}", display_ref(&node.environment)))
                .label(span, format!("{}'s environment", h.name))
                .help("add it with `mln env add FILE.toml`; `mln env list` shows what there is"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, State, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let state = State::open(&d.path().join("state")).unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("post")).unwrap();
        std::fs::write(src.join("rootfs.tar.gz"), b"not really a tarball").unwrap();
        std::fs::write(src.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(src.join("post/setup.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        (d, state, src)
    }

    const DESC: &str = r#"
name = "deb"
description = "a test"
visibility = "public"
filesystem = "ext4"
kernel = "vmlinuz"
kernel_params = "console=ttyS0"
postinstall = ["post/setup.sh"]
[image]
file = "rootfs.tar.gz"
kind = "tar"
compression = "gzip"
"#;

    #[test]
    fn added_versions_are_copied_hashed_and_verified() {
        let (_d, state, src) = setup();
        std::fs::write(src.join("env.toml"), DESC).unwrap();
        let one = add(&state, &src.join("env.toml")).unwrap();
        assert_eq!(one.version, 1);
        assert_eq!(one.image.file.sha256, sha256_of(&src.join("rootfs.tar.gz")).unwrap());
        assert_eq!(one.postinstall[0].original, "setup.sh");
        let two = add(&state, &src.join("env.toml")).unwrap();
        assert_eq!(two.version, 2, "no version in the file: the next one");
        let newest = get(&state, &parse_ref("deb").unwrap()).unwrap();
        assert_eq!(newest.version, 2);
        verify(&state, &newest).unwrap();
        let img = newest.path(&state, &newest.image.file).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&img).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(img.starts_with(state.dir()));
        // Changed after it was added: refused before a deployment.
        std::fs::write(&img, b"tampered").unwrap();
        let err = verify(&state, &newest).unwrap_err();
        assert!(matches!(err, EnvError::Checksum { .. }), "{err}");
        // The first version is untouched, and removing the newest leaves it.
        remove(&state, &parse_ref("deb").unwrap()).unwrap();
        assert_eq!(get(&state, &parse_ref("deb").unwrap()).unwrap().version, 1);
        verify(&state, &get(&state, &parse_ref("deb:1").unwrap()).unwrap()).unwrap();
    }

    #[test]
    fn a_version_is_never_replaced() {
        let (_d, state, src) = setup();
        std::fs::write(src.join("env.toml"), format!("version = 3\n{DESC}")).unwrap();
        add(&state, &src.join("env.toml")).unwrap();
        let err = add(&state, &src.join("env.toml")).unwrap_err();
        assert!(matches!(err, EnvError::Exists { version: 3, .. }), "{err}");
    }

    #[test]
    fn bad_descriptions_are_refused_and_nothing_escapes() {
        let (_d, state, src) = setup();
        for (text, why) in [
            (DESC.replace("name = \"deb\"", "name = \"../etc\""), "name"),
            (DESC.replace("name = \"deb\"", "name = \"deb\"\nsecret = 1"), "unknown field"),
            (DESC.replace("kind = \"tar\"", "kind = \"zip\""), "kind"),
            (DESC.replace("filesystem = \"ext4\"", "filesystem = \"ext4; rm -rf /\""), "file system"),
            (DESC.replace("filesystem = \"ext4\"\n", ""), "needs `filesystem`"),
            (DESC.replace("rootfs.tar.gz", "missing.tar.gz"), "missing"),
        ] {
            std::fs::write(src.join("env.toml"), &text).unwrap();
            let err = add(&state, &src.join("env.toml")).err().unwrap_or_else(|| panic!("accepted: {why}"));
            let _ = err.to_string();
        }
        assert!(list(&state).unwrap().is_empty());
        // Nothing half-added stays in the library.
        let left: Vec<_> = std::fs::read_dir(state.environments_dir()).map(|d| d.flatten().collect()).unwrap_or_default();
        for e in left {
            assert_eq!(std::fs::read_dir(e.path()).unwrap().count(), 0, "{:?}", e.path());
        }
    }

    #[test]
    fn references_parse() {
        assert_eq!(parse_ref("deb:2").unwrap(), EnvRef { name: "deb".into(), version: Some(2) });
        assert_eq!(parse_ref("deb").unwrap().version, None);
        for bad in ["deb:0", "deb:x", "../x", ""] {
            assert!(parse_ref(bad).is_err(), "{bad}");
        }
    }
}
