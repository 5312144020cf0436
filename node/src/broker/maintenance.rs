//! Maintenance: retention, compaction, the disk guard and the background verifier, each
//! driven on the node's clock.
//!
//! None of these answers a request, so none has an error to send: a partition whose
//! retention or compaction fails is logged and tried again at the next check. The disk
//! guard's reason is what produce answers `DiskFull` with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Broker;
use super::topic_config::CleanupPolicy;
use super::{read, write};
use crate::storage::Disk;
use crate::storage::retention::RetentionPolicy;

/// Default of [`super::BrokerConfig::verify_bytes_per_second`]: 4 MiB/s re-reads 100 GiB of sealed
/// segments about every 7 hours, a small share of even an SD card's read bandwidth.
pub const VERIFY_BYTES_PER_SECOND_DEFAULT: u64 = 4 * 1024 * 1024;

/// What one pass of the background verifier did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyPassReport {
    /// Sealed segments read to the end or to their damage.
    pub segments_checked: usize,
    /// Of those, damaged.
    pub segments_damaged: usize,
    /// Bytes read.
    pub bytes_read: u64,
}

impl<D: Disk> Broker<D> {
    /// Deletes segments past their topic's retention in every partition of every topic with
    /// `cleanup.policy` including `delete`. Returns how many partitions moved their start.
    pub async fn enforce_retention(&self) -> usize {
        let now_ms = self.clock.wall_time_ms();
        let work = self.online_logs(|config| {
            matches!(
                config.cleanup_policy,
                CleanupPolicy::Delete | CleanupPolicy::CompactAndDelete
            )
        });
        let mut moved = 0;
        for (log, config) in work {
            let policy = RetentionPolicy {
                retention: config.retention,
                retention_bytes: config.retention_bytes,
            };
            match log.enforce_retention(now_ms, &policy).await {
                Ok(Some(_)) => moved += 1,
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(directory = %log.directory().display(), %error, "retention failed")
                }
            }
        }
        moved
    }

    /// Compacts every partition of every topic with `cleanup.policy` including `compact`
    /// whose dirty ratio reached `min.cleanable.dirty.ratio`, or whose oldest dirty segment is
    /// older than `max.compaction.lag.ms`. Returns how many partitions were compacted.
    pub async fn enforce_compaction(&self) -> usize {
        let now_ms = self.clock.wall_time_ms();
        let work = self.online_logs(|config| {
            matches!(
                config.cleanup_policy,
                CleanupPolicy::Compact | CleanupPolicy::CompactAndDelete
            )
        });
        let mut compacted = 0;
        for (log, config) in work {
            let (dirty, total) = log.compaction_stats();
            if dirty == 0 || total == 0 {
                continue;
            }
            let ratio_reached = dirty as f64 / total as f64 >= config.min_cleanable_dirty_ratio;
            let overdue = config.max_compaction_lag.is_some_and(|lag| {
                let lag_ms = i64::try_from(lag.as_millis()).unwrap_or(i64::MAX);
                log.segment_infos()
                    .iter()
                    .filter(|segment| !segment.active && !segment.compacted)
                    .filter_map(|segment| segment.max_timestamp_ms)
                    .any(|newest| newest < now_ms.saturating_sub(lag_ms))
            });
            if !(ratio_reached || overdue) {
                continue;
            }
            let policy = crate::storage::compaction::CompactionPolicy {
                delete_retention: config.delete_retention,
                min_compaction_lag: config.min_compaction_lag,
                key_map_bytes_max: self.config.compaction_key_map_bytes_max,
            };
            match log.compact(now_ms, &policy).await {
                Ok(report) if report.segments_rewritten > 0 => compacted += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(directory = %log.directory().display(), %error, "compaction failed")
                }
            }
        }
        compacted
    }

    /// Enforces retention every `retention_check_interval`, and re-checks the disk guard
    /// every second, for as long as the broker lives.
    pub async fn run_retention(self: Arc<Self>) {
        let mut since_retention = Duration::ZERO;
        let step = Duration::from_secs(1).min(self.config.retention_check_interval);
        loop {
            crate::clock::sleep(&*self.clock, step).await;
            since_retention += step;
            if since_retention >= self.config.retention_check_interval {
                since_retention = Duration::ZERO;
                self.enforce_retention().await;
                self.enforce_compaction().await;
            }
            self.check_disk_usage();
        }
    }

    /// Verifies the sealed segments of every online partition, over and over, reading at
    /// most `verify_bytes_per_second` (0: never). The driver of `storage::verify`.
    pub async fn run_verifier(self: Arc<Self>) {
        let rate = self.config.verify_bytes_per_second;
        if rate == 0 {
            return;
        }
        loop {
            let report = self.verify_pass(rate).await;
            if report.bytes_read == 0 {
                // Nothing sealed yet: look again when retention does.
                crate::clock::sleep(&*self.clock, self.config.retention_check_interval).await;
            }
        }
    }

    /// One pass over every sealed segment of every online partition, sleeping after each
    /// read so as to read at most `bytes_per_second` (reading itself takes time too, so the
    /// real rate is lower). Damage is logged and kept by the partition log: `topic
    /// describe` shows it and reads of the damaged range fail with it.
    pub async fn verify_pass(&self, bytes_per_second: u64) -> VerifyPassReport {
        use crate::storage::verify::VerifyStep;
        let rate = bytes_per_second.max(1);
        // One read is at most a second's budget, so the pace stays even.
        let step_bytes = rate.min(self.config.log.recovery_read_bytes as u64).max(1);
        let mut report = VerifyPassReport::default();
        for (log, _) in self.online_logs(|_| true) {
            for mut check in log.sealed_segment_checks() {
                loop {
                    match check.step(step_bytes, self.clock.wall_time_ms()).await {
                        Ok(VerifyStep::Read(bytes)) => {
                            report.bytes_read += bytes;
                            crate::clock::sleep(
                                &*self.clock,
                                Duration::from_secs_f64(bytes as f64 / rate as f64),
                            )
                            .await;
                        }
                        Ok(VerifyStep::Clean) => {
                            report.segments_checked += 1;
                            break;
                        }
                        // Replaced by compaction or removed by retention meanwhile: the
                        // next pass checks what is there then.
                        Ok(VerifyStep::Abandoned) => break,
                        Ok(VerifyStep::Damaged(damage)) => {
                            report.segments_checked += 1;
                            report.segments_damaged += 1;
                            log.report_damage(damage);
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(directory = %log.directory().display(), segment_base = check.segment_base(), %error, "verifier could not read a sealed segment");
                            break;
                        }
                    }
                }
            }
        }
        report
    }

    /// Bytes used by every partition log.
    pub fn log_bytes(&self) -> u64 {
        self.online_logs(|_| true)
            .iter()
            .map(|(log, _)| log.size_bytes())
            .sum()
    }

    /// Trips or resets the disk guard: produce is refused while the logs exceed
    /// `disk_usage_bytes_max` or the filesystem is fuller than `disk_usage_percent_max`.
    /// Reads and retention carry on, so the guard resets itself once retention frees space.
    pub fn check_disk_usage(&self) -> Option<String> {
        let log_bytes = self
            .disk_guard
            .bytes_max
            .is_some()
            .then(|| self.log_bytes());
        self.disk_guard
            .check(log_bytes)
            .map(|trip| trip.to_string())
    }
}

/// Why the disk guard refuses produce.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DiskGuardTrip {
    /// The logs use more than `limits.disk_usage_bytes_max`.
    #[error("logs use {used} bytes, over limits.disk_usage_bytes_max ({limit})")]
    LogBytes {
        /// Bytes the logs use.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The data directory's filesystem is fuller than `limits.disk_usage_percent_max`.
    #[error(
        "the filesystem of {} is {percent:.1}% full, over limits.disk_usage_percent_max ({limit}%)",
        data_dir.display()
    )]
    FilesystemFull {
        /// The data directory.
        data_dir: PathBuf,
        /// How full its filesystem is.
        percent: f64,
        /// The limit.
        limit: u8,
    },
}

/// The disk guard's state: whether produce is refused right now, and why.
pub(super) struct DiskGuard {
    data_dir: PathBuf,
    bytes_max: Option<u64>,
    percent_max: Option<u8>,
    tripped: RwLock<Option<DiskGuardTrip>>,
}

impl DiskGuard {
    pub(super) fn new(data_dir: &Path, bytes_max: Option<u64>, percent_max: Option<u8>) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            bytes_max,
            percent_max,
            tripped: RwLock::new(None),
        }
    }

    /// (size, bytes available) of the data directory's filesystem, if statvfs answers.
    pub(super) fn filesystem(&self) -> Option<(u64, u64)> {
        filesystem_bytes(&self.data_dir)
    }

    /// Why produce is refused, if it is.
    pub(super) fn tripped(&self) -> Option<DiskGuardTrip> {
        read(&self.tripped).clone()
    }

    /// Checks the limits against `log_bytes` (the logs' size, read only when a byte limit
    /// is set) and the filesystem, and records the outcome, logging each change.
    fn check(&self, log_bytes: Option<u64>) -> Option<DiskGuardTrip> {
        let mut trip = None;
        if let (Some(limit), Some(used)) = (self.bytes_max, log_bytes)
            && used > limit
        {
            trip = Some(DiskGuardTrip::LogBytes { used, limit });
        }
        if trip.is_none()
            && let Some(limit) = self.percent_max
            && let Some(percent) = filesystem_used_percent(&self.data_dir)
            && percent > f64::from(limit)
        {
            trip = Some(DiskGuardTrip::FilesystemFull {
                data_dir: self.data_dir.clone(),
                percent,
                limit,
            });
        }
        let mut guard = write(&self.tripped);
        if *guard != trip {
            match &trip {
                Some(why) => {
                    tracing::warn!(reason = %why, "disk guard: refusing produce until space is freed")
                }
                None => tracing::info!("disk guard: space available again; produce resumes"),
            }
            guard.clone_from(&trip);
        }
        trip
    }
}

/// How full the filesystem holding `path` is, from statvfs; `None` if it cannot be read.
fn filesystem_used_percent(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `text` is a NUL-terminated path and `stats` points at writable memory the size
    // of a statvfs; the result is only read after statvfs reports success.
    let result = unsafe { libc::statvfs(text.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    let total = stats.f_blocks as f64;
    if total <= 0.0 {
        return None;
    }
    Some((total - stats.f_bavail as f64) / total * 100.0)
}

/// (size, bytes available to unprivileged users) of the filesystem holding `path`.
pub fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `text` is a NUL-terminated path and `stats` points at writable memory the size
    // of a statvfs; the result is only read after statvfs reports success.
    let result = unsafe { libc::statvfs(text.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    let block = stats.f_frsize;
    Some((
        stats.f_blocks.saturating_mul(block),
        stats.f_bavail.saturating_mul(block),
    ))
}
