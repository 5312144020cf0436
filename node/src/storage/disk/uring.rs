//! The io_uring backend: the ring lives in the runtime; no thread of our own.
//!
//! A caller pushes its [`Operation`] (read, write or fdatasync at a position) and enters the
//! kernel with `io_uring_enter` from the task that wants the IO, so a submission costs one
//! syscall and no thread hand-off. Completions are reaped by one tokio task that waits on
//! the ring's file descriptor (epoll reports it readable when completions are queued) and
//! answers each operation through a oneshot channel. An earlier design had a driver thread
//! own the ring and take submissions over a channel plus an eventfd: two thread wake-ups
//! per operation, which put ~0.2 ms on every acks=all produce (benches/RESULTS.md).
//!
//! Invariants: the buffer of every submitted operation is owned by the in-flight table until
//! its completion arrives, so the kernel never writes into or reads from freed memory (if
//! the ring is dropped with operations in flight, the drop waits for them); in-flight
//! operations are bounded by a semaphore below the ring size, so the submission queue never
//! overflows and the completion queue (twice the size) never drops.
//!
//! Opening, truncating and stat-ing files go through std on the blocking pool: they are rare,
//! and `IORING_OP_FTRUNCATE` needs a newer kernel than edge boxes run.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};
use tokio::io::unix::AsyncFd;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Disk, DiskError, DiskFile, OpenMode, std_fs};

/// Submission queue entries of the ring; completions get twice as many.
pub(super) const RING_ENTRIES_DEFAULT: u32 = 256;

/// The largest single read or write handed to the kernel; longer ones are split.
const SINGLE_OPERATION_BYTES_MAX: usize = 1 << 30;

/// The longest the reaper sleeps without looking at the completion queue.
const REAP_INTERVAL_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// `user_data` of the no-op that wakes the reaper when the disk is dropped; operation ids
/// never reach it.
const STOP_TOKEN: u64 = u64::MAX;

/// io_uring disk backend.
#[derive(Clone)]
pub struct UringDisk {
    submitter: Arc<Submitter>,
}

impl std::fmt::Debug for UringDisk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UringDisk")
    }
}

/// A file of the io_uring backend.
pub struct UringFile {
    file: Arc<File>,
    path: PathBuf,
    submitter: Arc<Submitter>,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UringFile")
            .field("path", &self.path)
            .finish()
    }
}

/// What every disk and file handle holds to submit operations: the shared ring and the bound
/// on operations in flight.
struct Submitter {
    ring: Arc<RingShared>,
    in_flight: Arc<Semaphore>,
}

/// The ring and its in-flight table, shared by the submitters and the reaper task.
struct RingShared {
    state: Mutex<RingState>,
    fd: RawFd,
    /// A reaper task is running (it clears this when it ends, e.g. with its runtime).
    reaper_running: AtomicBool,
    /// The disk was dropped: the reaper ends once nothing is in flight.
    stopped: AtomicBool,
}

struct RingState {
    ring: IoUring,
    in_flight: HashMap<u64, Operation>,
    next_id: u64,
}

enum OperationKind {
    Read { buffer: Vec<u8>, len: usize },
    Write { data: Bytes, written: usize },
    SyncData,
}

struct Operation {
    file: Arc<File>,
    position: u64,
    kind: OperationKind,
    reply: oneshot::Sender<io::Result<Vec<u8>>>,
    _permit: OwnedSemaphorePermit,
}

impl UringDisk {
    /// Sets up a ring with `entries` submission slots. No thread starts: the reaper task
    /// starts with the first operation, on the runtime that submits it.
    ///
    /// Fails when io_uring is unavailable (old kernel, `kernel.io_uring_disabled`, seccomp)
    /// or when a no-op submitted to the new ring does not complete.
    pub fn new(entries: u32) -> io::Result<Self> {
        let mut ring = IoUring::new(entries)?;
        probe(&mut ring)?;
        // One slot stays free for the stop no-op.
        let permits = entries.saturating_sub(1).max(1) as usize;
        let fd = ring.as_raw_fd();
        Ok(Self {
            submitter: Arc::new(Submitter {
                ring: Arc::new(RingShared {
                    state: Mutex::new(RingState {
                        ring,
                        in_flight: HashMap::new(),
                        next_id: 0,
                    }),
                    fd,
                    reaper_running: AtomicBool::new(false),
                    stopped: AtomicBool::new(false),
                }),
                in_flight: Arc::new(Semaphore::new(permits)),
            }),
        })
    }
}

/// Submits a no-op and waits for it: some sandboxes accept `io_uring_setup` and then fail
/// every operation, and we would rather find out now than on the first append.
fn probe(ring: &mut IoUring) -> io::Result<()> {
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op references no memory.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| io::Error::other("io_uring submission queue full on probe"))?;
    ring.submit_and_wait(1)?;
    match ring.completion().next() {
        Some(completion) if completion.result() >= 0 => Ok(()),
        Some(completion) => Err(io::Error::from_raw_os_error(-completion.result())),
        None => Err(io::Error::other("io_uring probe produced no completion")),
    }
}

impl Submitter {
    async fn submit(
        &self,
        file: &Arc<File>,
        position: u64,
        kind: OperationKind,
    ) -> io::Result<Vec<u8>> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("io_uring backend stopped"))?;
        self.ensure_reaper()?;
        let (reply, completion) = oneshot::channel();
        let mut operation = Operation {
            file: Arc::clone(file),
            position,
            kind,
            reply,
            _permit: permit,
        };
        {
            let mut state = self.ring.lock()?;
            let id = state.next_id;
            state.next_id = (id + 1) % STOP_TOKEN;
            // The entry points into the operation's heap buffer, which moving the operation
            // into the table does not move.
            let entry = entry_for(&mut operation, id);
            state.in_flight.insert(id, operation);
            if let Err(error) = push_and_enter(&mut state.ring, &entry) {
                state.in_flight.remove(&id);
                return Err(error);
            }
        }
        completion
            .await
            .map_err(|_| io::Error::other("io_uring backend dropped an operation"))?
    }

    /// Starts the reaper on the current runtime unless one runs.
    fn ensure_reaper(&self) -> io::Result<()> {
        // A load first: this runs on every submission, and a swap would write the line.
        if self.ring.reaper_running.load(Ordering::Acquire)
            || self.ring.reaper_running.swap(true, Ordering::AcqRel)
        {
            return Ok(());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reap(Arc::clone(&self.ring)));
                Ok(())
            }
            Err(_) => {
                self.ring.reaper_running.store(false, Ordering::Release);
                Err(io::Error::other(
                    "the io_uring backend is used outside a tokio runtime",
                ))
            }
        }
    }
}

impl RingShared {
    fn lock(&self) -> io::Result<MutexGuard<'_, RingState>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("io_uring ring lock poisoned"))
    }

    /// Answers every operation in flight with `error` (the reaper cannot go on).
    fn fail_all(&self, error: &io::Error) {
        if let Ok(mut state) = self.lock() {
            let waiting: Vec<u64> = state.in_flight.keys().copied().collect();
            // The kernel may still use their buffers: keep them in the table (the ring's
            // drop waits for them) and answer through a fresh channel each.
            for id in waiting {
                if let Some(operation) = state.in_flight.get_mut(&id) {
                    let (closed, _) = oneshot::channel();
                    let reply = std::mem::replace(&mut operation.reply, closed);
                    let _ = reply.send(Err(io::Error::new(error.kind(), error.to_string())));
                }
            }
        }
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        // Wake the reaper so it sees `stopped` and ends once nothing is in flight.
        self.ring.stopped.store(true, Ordering::Release);
        if let Ok(mut state) = self.ring.lock() {
            let nop = opcode::Nop::new().build().user_data(STOP_TOKEN);
            let _ = push_and_enter(&mut state.ring, &nop);
        }
    }
}

impl Drop for RingState {
    fn drop(&mut self) {
        // Never free a buffer the kernel may still read or write.
        while !self.in_flight.is_empty() {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            let done: Vec<u64> = self
                .ring
                .completion()
                .map(|completion| completion.user_data())
                .collect();
            for id in done {
                self.in_flight.remove(&id);
            }
        }
        // Only if the ring failed: leak what is left rather than free it under the kernel.
        if !self.in_flight.is_empty() {
            std::mem::forget(std::mem::take(&mut self.in_flight));
        }
    }
}

/// The ring's descriptor for tokio's reactor; the ring owns (and closes) it.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Clears `reaper_running` when the reaper ends, also when its runtime drops it.
struct ReaperRunning(Arc<RingShared>);

impl Drop for ReaperRunning {
    fn drop(&mut self) {
        self.0.reaper_running.store(false, Ordering::Release);
    }
}

/// The reaper task: waits until the ring has completions, answers finished operations and
/// resubmits short ones.
async fn reap(ring: Arc<RingShared>) {
    let running = ReaperRunning(Arc::clone(&ring));
    // SAFETY: the ring owns the descriptor and stays alive (through `ring`) for as long as
    // `readiness`, a local dropped before `ring`.
    let registered =
        unsafe { AsyncFd::register_with_interest(RingFd(ring.fd), tokio::io::Interest::READABLE) };
    let readiness = match registered {
        Ok(readiness) => readiness,
        Err(error) => {
            let error = io::Error::from(error);
            tracing::error!(%error, "io_uring: cannot watch the ring; failing in-flight operations");
            ring.fail_all(&error);
            return;
        }
    };
    loop {
        let (finished, busy) = {
            let Ok(mut state) = ring.lock() else {
                return;
            };
            let state = &mut *state;
            let completions: Vec<(u64, i32)> = state
                .ring
                .completion()
                .map(|completion| (completion.user_data(), completion.result()))
                .collect();
            let mut finished = Vec::with_capacity(completions.len());
            for (id, result) in completions {
                let Some(mut operation) = state.in_flight.remove(&id) else {
                    continue;
                };
                match complete(&mut operation, result) {
                    Progress::Done(outcome) => finished.push((operation.reply, outcome)),
                    Progress::Again => {
                        let entry = entry_for(&mut operation, id);
                        state.in_flight.insert(id, operation);
                        if let Err(error) = push_and_enter(&mut state.ring, &entry)
                            && let Some(operation) = state.in_flight.remove(&id)
                        {
                            finished.push((operation.reply, Err(error)));
                        }
                    }
                }
            }
            if ring.stopped.load(Ordering::Acquire) && state.in_flight.is_empty() {
                drop(running);
                return;
            }
            (finished, !state.in_flight.is_empty())
        };
        for (reply, outcome) in finished {
            let _ = reply.send(outcome);
        }
        // The kernel wakes the ring's pollers for every completion; should one wake-up ever
        // be missed, the periodic reap bounds the stall instead of leaving an fdatasync
        // unanswered until the next operation completes.
        let wait = if busy {
            // A safety net under a real kernel ring, not node logic: it must follow real
            // time even when the node's clock is simulated.
            #[expect(clippy::disallowed_methods, reason = "real-device poll interval")]
            tokio::time::timeout(REAP_INTERVAL_MAX, readiness.readable()).await
        } else {
            Ok(readiness.readable().await)
        };
        match wait {
            Err(_elapsed) => {}
            // Completions queued after the reaping above wake the reactor again, so clearing
            // here loses none (tokio clears only the readiness it reported).
            Ok(Ok(mut guard)) => guard.clear_ready(),
            Ok(Err(error)) => {
                tracing::error!(%error, "io_uring: waiting on the ring failed; failing in-flight operations");
                ring.fail_all(&error);
                return;
            }
        }
    }
}

/// Queues `entry` and enters the kernel so it starts now.
fn push_and_enter(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> io::Result<()> {
    // SAFETY: every entry we build points into a buffer owned by the in-flight table (or no
    // buffer at all), which outlives the operation.
    if unsafe { ring.submission().push(entry) }.is_err() {
        ring.submit()?;
        // SAFETY: as above.
        unsafe { ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    }
    loop {
        match ring.submit() {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

fn entry_for(operation: &mut Operation, id: u64) -> io_uring::squeue::Entry {
    let fd = types::Fd(operation.file.as_raw_fd());
    match &mut operation.kind {
        OperationKind::Read { buffer, len } => {
            let filled = buffer.len();
            let want = (*len - filled).min(SINGLE_OPERATION_BYTES_MAX);
            let spare = buffer.spare_capacity_mut();
            opcode::Read::new(fd, spare.as_mut_ptr().cast::<u8>(), want as u32)
                .offset(operation.position + filled as u64)
                .build()
                .user_data(id)
        }
        OperationKind::Write { data, written } => {
            let rest = data.slice(*written..);
            let want = rest.len().min(SINGLE_OPERATION_BYTES_MAX);
            opcode::Write::new(fd, rest.as_ptr(), want as u32)
                .offset(operation.position + *written as u64)
                .build()
                .user_data(id)
        }
        OperationKind::SyncData => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(id),
    }
}

/// What a completion means for its operation.
enum Progress {
    Again,
    Done(io::Result<Vec<u8>>),
}

fn complete(operation: &mut Operation, result: i32) -> Progress {
    if result < 0 {
        let error = io::Error::from_raw_os_error(-result);
        return match error.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => Progress::Again,
            _ => Progress::Done(Err(error)),
        };
    }
    let transferred = result as usize;
    match &mut operation.kind {
        OperationKind::Read { buffer, len } => {
            // SAFETY: the kernel initialised `transferred` bytes of the spare capacity.
            unsafe { buffer.set_len(buffer.len() + transferred) };
            if transferred == 0 || buffer.len() >= *len {
                Progress::Done(Ok(std::mem::take(buffer)))
            } else {
                Progress::Again
            }
        }
        OperationKind::Write { data, written } => {
            *written += transferred;
            if *written >= data.len() {
                Progress::Done(Ok(Vec::new()))
            } else if transferred == 0 {
                Progress::Done(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write made no progress",
                )))
            } else {
                Progress::Again
            }
        }
        OperationKind::SyncData => Progress::Done(Ok(Vec::new())),
    }
}

impl DiskFile for UringFile {
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let kind = OperationKind::Read {
            buffer: Vec::with_capacity(len),
            len,
        };
        self.submitter
            .submit(&self.file, position, kind)
            .await
            .map_err(|source| DiskError::new("read", &self.path, source))
    }

    async fn write_at(&self, position: u64, data: Bytes) -> Result<(), DiskError> {
        if data.is_empty() {
            return Ok(());
        }
        let kind = OperationKind::Write { data, written: 0 };
        self.submitter
            .submit(&self.file, position, kind)
            .await
            .map(drop)
            .map_err(|source| DiskError::new("write", &self.path, source))
    }

    async fn sync_data(&self) -> Result<(), DiskError> {
        self.submitter
            .submit(&self.file, 0, OperationKind::SyncData)
            .await
            .map(drop)
            .map_err(|source| DiskError::new("fdatasync", &self.path, source))
    }

    async fn set_len(&self, len: u64) -> Result<(), DiskError> {
        std_fs::file_set_len(&self.file, &self.path, len).await
    }

    async fn len(&self) -> Result<u64, DiskError> {
        std_fs::file_len(&self.file, &self.path).await
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Disk for UringDisk {
    type File = UringFile;

    fn backend_name(&self) -> &'static str {
        "io_uring"
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<UringFile, DiskError> {
        Ok(UringFile {
            file: std_fs::open_file(path, mode).await?,
            path: path.to_path_buf(),
            submitter: Arc::clone(&self.submitter),
        })
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::create_dir_all(path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        std_fs::list_dir(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        std_fs::rename(from, to).await
    }

    async fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::remove_file(path).await
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::remove_dir(path).await
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::sync_dir(path).await
    }
}
