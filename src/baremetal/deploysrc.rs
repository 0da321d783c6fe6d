//! The deploy system's build script and the files it reads, inside the
//! binary: an installed mln has no source tree to find them in. Written
//! out (same layout as the source tree, so the script finds its
//! neighbours) into the state directory when the deploy system is built;
//! `[netboot] deploy_build` names another script instead.

use std::path::{Path, PathBuf};

const FILES: [(&str, &str, u32); 5] = [
    ("deploysys/build.sh", include_str!("../../deploysys/build.sh"), 0o755),
    ("deploysys/init", include_str!("../../deploysys/init"), 0o755),
    ("deploysys/udhcpc.script", include_str!("../../deploysys/udhcpc.script"), 0o755),
    ("scripts/kernel-modules.sh", include_str!("../../scripts/kernel-modules.sh"), 0o644),
    ("scripts/copy-binary.sh", include_str!("../../scripts/copy-binary.sh"), 0o644),
];

/// Writes the embedded sources under `dir`; the build script's path.
pub fn unpack(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, text, mode) in FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(dir.join(FILES[0].0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_script_finds_its_neighbours_where_it_sources_them() {
        let d = tempfile::tempdir().unwrap();
        let build = super::unpack(d.path()).unwrap();
        let script = std::fs::read_to_string(&build).unwrap();
        assert!(script.contains("$here/../scripts/kernel-modules.sh") && script.contains("$here/../scripts/copy-binary.sh") && script.contains("$here/init"), "the layout the script expects");
        for rel in ["scripts/kernel-modules.sh", "scripts/copy-binary.sh", "deploysys/init", "deploysys/udhcpc.script"] {
            assert!(d.path().join(rel).metadata().unwrap().len() > 0, "{rel}");
        }
    }
}
