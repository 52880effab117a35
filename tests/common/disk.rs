//! Disks that fail on demand, for the store-fault tests: a tmpfs that a filler file makes
//! full, and an ext4 image that an injected error makes read-only. Both need root
//! (CAP_SYS_ADMIN); without it the tests fail and say so, they never skip.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NEEDS_ROOT: &str = "the store-fault tests mount a filesystem for the store and \
need root (CAP_SYS_ADMIN) with mount, umount, mkfs.ext4 and loop devices; run them as \
root on a machine (or a privileged container) that allows mounting";

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A filesystem mounted for one test, unmounted when dropped (also when the test fails).
pub struct Mounted {
    pub dir: PathBuf,
    /// The ext4 image behind the mount, if it is one.
    image: Option<PathBuf>,
    _parent: tempfile::TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Lazy: a test that failed may still hold files on it.
        let _ = run("umount", &["-l", text(&self.dir)]);
    }
}

/// A tmpfs of `size_kib` KiB.
pub fn tmpfs(size_kib: u64) -> Mounted {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("disk");
    std::fs::create_dir(&dir).unwrap();
    let size = format!("size={size_kib}k");
    run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", text(&dir)])
        .unwrap_or_else(|why| panic!("{NEEDS_ROOT}: {why}"));
    Mounted {
        dir,
        image: None,
        _parent: parent,
    }
}

/// Fills the filesystem under `dir` until a write fails with "no space"; returns the
/// filler file, whose removal frees the space again.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(28) => break, // ENOSPC
            Err(err) => panic!("filling {}: {err}", dir.display()),
        }
    }
    // Whatever a partial write left fits nowhere else either.
    let _ = file.sync_all();
    path
}

/// An ext4 filesystem of `size_mib` MiB in an image file on a loop device, mounted so
/// that an error makes it read-only (`errors=remount-ro`).
pub fn ext4(size_mib: u64) -> Mounted {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("disk");
    std::fs::create_dir(&dir).unwrap();
    let image = parent.path().join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(size_mib << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", text(&image)])
        .unwrap_or_else(|why| panic!("{NEEDS_ROOT}: {why}"));
    mount_ext4(&image, &dir).unwrap_or_else(|why| panic!("{NEEDS_ROOT}: {why}"));
    Mounted {
        dir,
        image: Some(image),
        _parent: parent,
    }
}

fn mount_ext4(image: &Path, dir: &Path) -> Result<(), String> {
    run(
        "mount",
        &["-o", "loop,errors=remount-ro", text(image), text(dir)],
    )
}

impl Mounted {
    /// Makes the ext4 filesystem read-only at once, as the kernel does after an I/O
    /// error: every later write fails with EROFS, also on files already open.
    pub fn make_read_only(&self) {
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE", text(&self.dir)])
            .output()
            .unwrap();
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let device = source.rsplit('/').next().unwrap_or_default().to_owned();
        let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
        std::fs::write(&trigger, "1")
            .unwrap_or_else(|e| panic!("{NEEDS_ROOT}: writing {trigger}: {e}"));
    }

    /// Repairs what [`make_read_only`](Self::make_read_only) did the way an operator
    /// would: unmounts (waiting up to `within` for the last open file on it to close)
    /// and mounts the filesystem again, writable. Returns how long the unmount waited.
    pub fn remount_writable(&self, within: Duration) -> Duration {
        let image = self.image.as_ref().expect("an ext4 mount");
        let began = Instant::now();
        loop {
            match run("umount", &[text(&self.dir)]) {
                Ok(()) => break,
                Err(why) if began.elapsed() > within => {
                    panic!("the read-only disk stayed busy for {within:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let waited = began.elapsed();
        mount_ext4(image, &self.dir).unwrap();
        waited
    }
}
