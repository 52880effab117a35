//! The `store-fault` scenario (issue 7, fault 7): the disk under the worker's store fills
//! up, or turns read-only, while it runs. The worker must pause (`/readyz` 503, no calls
//! to the downstream once what was in flight is done), and resume by itself once the
//! disk takes writes again. Needs root: it mounts the store's disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::downstream::Call;

/// How the disk fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreFault {
    /// A tmpfs filled with a filler file (ENOSPC); freed by deleting it.
    DiskFull,
    /// An ext4 image made read-only by an injected error (EROFS); repaired by unmounting
    /// and mounting it again.
    ReadOnly,
}

/// The store's disk, mounted for the run and unmounted when dropped.
pub struct Disk {
    kind: StoreFault,
    dir: PathBuf,
    image: PathBuf,
    filler: PathBuf,
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {} (the store-fault scenario mounts the store's disk and needs root)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn text(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("paths must be UTF-8")
}

impl Disk {
    /// Mounts a fresh disk of `kind` at `dir` (created if needed).
    pub fn mount(kind: StoreFault, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let image = dir.with_extension("img");
        let disk = Self {
            kind,
            dir: dir.to_owned(),
            filler: dir.join("filler"),
            image,
        };
        match kind {
            StoreFault::DiskFull => run(
                "mount",
                &["-t", "tmpfs", "-o", "size=32m", "tmpfs", text(dir)?],
            )?,
            StoreFault::ReadOnly => {
                std::fs::File::create(&disk.image)?.set_len(64 << 20)?;
                run("mkfs.ext4", &["-q", "-F", text(&disk.image)?])?;
                disk.mount_image()?;
            }
        }
        Ok(disk)
    }

    fn mount_image(&self) -> anyhow::Result<()> {
        let (image, dir) = (text(&self.image)?, text(&self.dir)?);
        run("mount", &["-o", "loop,errors=remount-ro", image, dir])
    }

    /// Makes the disk refuse writes.
    pub fn inject(&self) -> anyhow::Result<()> {
        match self.kind {
            StoreFault::DiskFull => {
                let mut file = std::fs::File::create(&self.filler)?;
                let chunk = vec![0xa5u8; 4096];
                loop {
                    match file.write_all(&chunk) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Ok(()),
                        Err(e) => return Err(e).context("filling the store's disk"),
                    }
                }
            }
            StoreFault::ReadOnly => {
                let out = Command::new("findmnt")
                    .args(["-no", "SOURCE", text(&self.dir)?])
                    .output()?;
                let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let device = source.rsplit('/').next().unwrap_or_default();
                let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
                std::fs::write(&trigger, "1").with_context(|| format!("writing {trigger}"))
            }
        }
    }

    /// Makes the disk take writes again, as an operator would. Waits (at most `within`)
    /// for the worker to close its files on a read-only disk so it can be unmounted.
    pub async fn repair(&self, within: Duration) -> anyhow::Result<()> {
        match self.kind {
            StoreFault::DiskFull => Ok(std::fs::remove_file(&self.filler)?),
            StoreFault::ReadOnly => {
                let began = Instant::now();
                while let Err(err) = run("umount", &[text(&self.dir)?]) {
                    if began.elapsed() > within {
                        return Err(err.context("the read-only disk stayed busy"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                self.mount_image()
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// What happened during the fault.
#[derive(Default)]
pub struct Record {
    /// When the disk failed.
    pub injected: Option<Instant>,
    /// When `/readyz` first said not ready after that.
    pub not_ready: Option<Instant>,
    /// When the disk was repaired.
    pub repaired: Option<Instant>,
    /// When `/readyz` said ready again after that.
    pub ready_again: Option<Instant>,
}

impl Record {
    /// Prints the figures; whether the worker paused and resumed as it must: not ready
    /// during the fault, no downstream call from a second after it went not ready until
    /// the repair, ready again afterwards.
    pub fn print(&self, kind: StoreFault, calls: &[Call]) -> bool {
        let (Some(injected), Some(repaired)) = (self.injected, self.repaired) else {
            println!("store fault              NOT INJECTED");
            return false;
        };
        let Some(not_ready) = self.not_ready else {
            println!("store fault              {kind:?}: /readyz never said not ready");
            return false;
        };
        let settled = (not_ready + Duration::from_secs(1)).min(repaired);
        let held = calls
            .iter()
            .filter(|c| settled <= c.at && c.at < repaired)
            .count();
        let in_flight = calls
            .iter()
            .filter(|c| injected <= c.at && c.at < settled)
            .count();
        let resumed = self.ready_again.map(|at| at - repaired);
        println!(
            "store fault              {kind:?} for {:.1}s: not ready after {:?}; {in_flight} calls in its first second (in flight), {held} after it; ready again {resumed:?} after the repair",
            (repaired - injected).as_secs_f64(),
            not_ready - injected,
        );
        held == 0 && resumed.is_some()
    }
}
