//! The data directory lock: one node per data directory.
//!
//! Two nodes on one directory overwrite each other's records and take each other's
//! metadata for deleted topics (issue 11, bug 1). The node takes an exclusive `flock(2)` on
//! `<data-dir>/lock` before it reads or writes anything else there, and holds it for its
//! whole life; the kernel drops it when the process ends, however it ends (kill -9
//! included), so there is never a stale lock to clean up. After locking, the holder
//! (pid, host, start time) is written into the file, so a node refused the lock can say
//! who holds it.
//!
//! `flock` comes from `libc`, already a dependency (no new crate for one call). It locks an
//! open file description, so the lock also excludes a second open in the same process
//! (which the unit tests rely on), and it works on a file opened read-only: on a read-only
//! filesystem the lock is still taken (the holder line cannot be updated there; the message
//! then shows what the file last said). If the lock file cannot exist there (read-only and
//! never created), the directory itself is locked instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::DiskError;
use super::durable::{create_dir_all_durable, sync_dir};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE_NAME: &str = "lock";

/// Most bytes of the holder line read back for a refusal message.
const HOLDER_BYTES_MAX: u64 = 512;

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "data directory {} is in use by another ledge-node ({holder}); stop that node or give this one another --data-dir",
        directory.display()
    )]
    InUse {
        /// The data directory.
        directory: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// Creating or opening the directory or lock file failed.
    // The cause is part of the message and deliberately not a `source`: printed as a chain
    // (`{:#}`), it would otherwise appear twice.
    #[error("cannot lock data directory: {0}")]
    Disk(DiskError),
}

impl From<DiskError> for LockError {
    fn from(error: DiskError) -> Self {
        Self::Disk(error)
    }
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    /// The data directory is on a read-only filesystem (the lock could not be updated).
    pub read_only: bool,
}

/// Creates `data_dir` if missing (durably) and locks it, recording this process as the
/// holder with `started_ms` (wall time, ms since the epoch). Fails at once, without
/// waiting, if another process holds it.
pub fn lock_data_dir(data_dir: &Path, started_ms: i64) -> Result<DataDirLock, LockError> {
    create_dir_all_durable(data_dir)?;
    let path = data_dir.join(LOCK_FILE_NAME);
    let (mut file, read_only) = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
    {
        Ok(file) => (file, false),
        Err(cause) if cause.raw_os_error() == Some(libc::EROFS) => {
            tracing::warn!(data_dir = %data_dir.display(), "the data directory is on a read-only filesystem");
            match File::open(&path) {
                Ok(file) => (file, true),
                // Never created: lock the directory itself.
                Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => (
                    File::open(data_dir)
                        .map_err(|cause| DiskError::new("open", data_dir, cause))?,
                    true,
                ),
                Err(cause) => return Err(DiskError::new("open", &path, cause).into()),
            }
        }
        Err(cause) => return Err(DiskError::new("open", &path, cause).into()),
    };
    // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let cause = std::io::Error::last_os_error();
        if cause.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = read_holder(&mut file);
            if read_only {
                // A holder on a read-only filesystem could not record itself.
                holder.push_str(
                    "; recorded before the filesystem became read-only, so possibly an earlier holder",
                );
            }
            return Err(LockError::InUse {
                directory: data_dir.to_path_buf(),
                holder,
            });
        }
        return Err(DiskError::new("flock", &path, cause).into());
    }
    if !read_only {
        let holder = format!(
            "pid {} on host {}, started {}\n",
            std::process::id(),
            hostname(),
            format_utc(started_ms)
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|cause| DiskError::new("write", &path, cause))?;
        sync_dir(data_dir)?;
    }
    Ok(DataDirLock {
        _file: file,
        read_only,
    })
}

/// What the lock file says about its holder, for the refusal message.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file
        .rewind()
        .and_then(|()| file.take(HOLDER_BYTES_MAX).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        // The holder locked it and has not yet written its line, or the filesystem is
        // read-only and it never could.
        Ok(_) => "holder not recorded".to_string(),
        Err(error) => format!("holder unreadable: {error}"),
    }
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buffer.len()` bytes into the buffer we own.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "unknown".to_string();
    }
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    String::from_utf8_lossy(buffer.get(..end).unwrap_or_default()).into_owned()
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn format_utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_directory_and_holder() {
        // Goal: while one lock is held, a second attempt fails at once with one line naming
        // the directory and the holder's pid; once the first is dropped, it succeeds.
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        let first = lock_data_dir(&data_dir, 1_765_000_000_000).unwrap();
        assert!(!first.read_only);
        let error = lock_data_dir(&data_dir, 0).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, LockError::InUse { .. }), "{text}");
        assert!(text.contains(&data_dir.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {} on host", std::process::id())),
            "{text}"
        );
        assert!(text.contains("started 2025-12-06T05:46:40Z"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        drop(first);
        lock_data_dir(&data_dir, 0).unwrap();
    }

    #[test]
    fn a_lock_failure_names_the_os_error_once_in_a_chain() {
        // Goal: printed as an anyhow chain (as main prints errors), the OS error appears
        // once. With the cause as a `source` as well, `{:#}` repeated it.
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let error = lock_data_dir(&file.join("data"), 0).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(error));
        assert!(text.starts_with("cannot lock data directory: "), "{text}");
        assert_eq!(text.matches("Not a directory").count(), 1, "{text}");
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(-1000), "1969-12-31T23:59:59Z");
    }
}
