//! A small FAT image holding a few files, made in memory: the NoCloud seed
//! disk. Pure Rust (the fatfs crate), so no mkfs.vfat or mtools is needed.

use std::io::{self, Cursor, Read, Write};

/// A FAT image with the given volume label and files in its root.
pub fn fat_image(label: &str, files: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    let payload: usize = files.iter().map(|(_, d)| d.len().div_ceil(4096) * 4096).sum();
    // FAT12 wants at least a little room for its tables; 1 MiB is plenty
    // for a seed, more if the files need it.
    let size = (payload + (512 << 10)).max(1 << 20).next_multiple_of(1 << 20);
    let mut label_bytes = [b' '; 11];
    for (i, b) in label.bytes().take(11).enumerate() {
        label_bytes[i] = b.to_ascii_uppercase();
    }
    let mut disk = Cursor::new(vec![0u8; size]);
    fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new().volume_label(label_bytes)).map_err(to_io)?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(to_io)?;
        {
            let root = fs.root_dir();
            for (name, data) in files {
                let mut f = root.create_file(name).map_err(to_io)?;
                f.truncate().map_err(to_io)?;
                f.write_all(data)?;
            }
        }
        fs.unmount().map_err(to_io)?;
    }
    Ok(disk.into_inner())
}

/// Reads one file back from a FAT image (for tests and `mln` checks).
pub fn read_fat_file(image: &[u8], name: &str) -> io::Result<Vec<u8>> {
    let mut disk = Cursor::new(image.to_vec());
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(to_io)?;
    let mut f = fs.root_dir().open_file(name).map_err(to_io)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

fn to_io<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_back_and_the_label_is_set() {
        let img = fat_image("cidata", &[("meta-data", b"a: 1\n"), ("user-data", &[b'x'; 70_000])]).unwrap();
        assert_eq!(read_fat_file(&img, "meta-data").unwrap(), b"a: 1\n");
        assert_eq!(read_fat_file(&img, "user-data").unwrap().len(), 70_000);
        // The label sits in the boot sector at offset 43 (FAT12/16).
        assert_eq!(&img[43..54], b"CIDATA     ");
    }
}
