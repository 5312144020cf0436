//! The io_uring backend: one driver thread owns the ring; futures wait on its completions.
//!
//! A caller sends an [`Operation`] (read, write or fdatasync at a position) over a channel
//! and writes to an eventfd; the driver keeps a poll on that eventfd in the ring, so one
//! `submit_and_wait` wakes for both new work and finished IO. Completions are delivered
//! through a oneshot channel, which wakes the awaiting future on the tokio runtime.
//!
//! Invariants: the buffer of every submitted operation is owned by the driver's in-flight
//! table until its completion arrives, so the kernel never writes into or reads from freed
//! memory; in-flight operations are bounded by a semaphore below the ring size, so the
//! submission queue never overflows and the completion queue (twice the size) never drops.
//!
//! Opening, truncating and stat-ing files go through std on the blocking pool: they are rare,
//! and `IORING_OP_FTRUNCATE` needs a newer kernel than edge boxes run.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Disk, DiskError, DiskFile, OpenMode, std_fs};

/// Submission queue entries of the ring; completions get twice as many.
pub(super) const RING_ENTRIES_DEFAULT: u32 = 256;

/// The largest single read or write handed to the kernel; longer ones are split.
const SINGLE_OPERATION_BYTES_MAX: usize = 1 << 30;

/// `user_data` of the eventfd poll; operation ids never reach it.
const WAKE_TOKEN: u64 = u64::MAX;

/// io_uring disk backend.
#[derive(Clone)]
pub struct UringDisk {
    driver: Arc<Driver>,
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
    driver: Arc<Driver>,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UringFile")
            .field("path", &self.path)
            .finish()
    }
}

struct Driver {
    submissions: Mutex<Option<Sender<Operation>>>,
    wake: OwnedFd,
    in_flight: Arc<Semaphore>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
    /// Sets up a ring with `entries` submission slots and starts its driver thread.
    ///
    /// Fails when io_uring is unavailable (old kernel, `kernel.io_uring_disabled`, seccomp)
    /// or when a no-op submitted to the new ring does not complete.
    pub fn new(entries: u32) -> io::Result<Self> {
        let mut ring = IoUring::new(entries)?;
        probe(&mut ring)?;
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(raw) };
        let (sender, receiver) = std::sync::mpsc::channel();
        // One slot stays free for the eventfd poll.
        let permits = entries.saturating_sub(1).max(1) as usize;
        let wake_fd = wake.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("ledge-io-uring".into())
            .spawn(move || drive(ring, receiver, wake_fd))?;
        Ok(Self {
            driver: Arc::new(Driver {
                submissions: Mutex::new(Some(sender)),
                wake,
                in_flight: Arc::new(Semaphore::new(permits)),
                thread: Mutex::new(Some(thread)),
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

impl Driver {
    async fn submit(
        &self,
        file: &Arc<File>,
        position: u64,
        kind: OperationKind,
    ) -> io::Result<Vec<u8>> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("io_uring driver stopped"))?;
        let (reply, completion) = oneshot::channel();
        let operation = Operation {
            file: Arc::clone(file),
            position,
            kind,
            reply,
            _permit: permit,
        };
        {
            let guard = self
                .submissions
                .lock()
                .map_err(|_| io::Error::other("io_uring submission lock poisoned"))?;
            let sender = guard
                .as_ref()
                .ok_or_else(|| io::Error::other("io_uring driver stopped"))?;
            sender
                .send(operation)
                .map_err(|_| io::Error::other("io_uring driver stopped"))?;
        }
        self.wake()?;
        completion
            .await
            .map_err(|_| io::Error::other("io_uring driver dropped an operation"))?
    }

    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let written = unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                8,
            )
        };
        // EAGAIN means the counter is saturated: the driver is already due to wake.
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EAGAIN) {
                return Err(error);
            }
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropping the sender tells the driver to finish in-flight work and exit.
        if let Ok(mut sender) = self.submissions.lock() {
            sender.take();
        }
        let _ = self.wake();
        if let Ok(mut thread) = self.thread.lock()
            && let Some(handle) = thread.take()
        {
            let _ = handle.join();
        }
    }
}

fn arm_wake(ring: &mut IoUring, wake_fd: RawFd) -> io::Result<()> {
    let poll = opcode::PollAdd::new(types::Fd(wake_fd), libc::POLLIN as u32)
        .build()
        .user_data(WAKE_TOKEN);
    push(ring, &poll)
}

fn push(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> io::Result<()> {
    // SAFETY: every entry we build points into a buffer owned by the in-flight table (or no
    // buffer at all), which outlives the operation.
    if unsafe { ring.submission().push(entry) }.is_ok() {
        return Ok(());
    }
    ring.submit()?;
    // SAFETY: as above.
    unsafe { ring.submission().push(entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))
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

fn drive(mut ring: IoUring, receiver: Receiver<Operation>, wake_fd: RawFd) {
    let mut in_flight: HashMap<u64, Operation> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut disconnected = false;
    if let Err(error) = arm_wake(&mut ring, wake_fd) {
        tracing::error!(%error, "io_uring driver could not arm its wake-up poll");
        return;
    }
    loop {
        if disconnected && in_flight.is_empty() {
            return;
        }
        if let Err(error) = ring.submit_and_wait(1) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(%error, "io_uring driver failed; failing in-flight operations");
            for (_, operation) in in_flight.drain() {
                let _ = operation
                    .reply
                    .send(Err(io::Error::new(error.kind(), error.to_string())));
            }
            return;
        }
        let completions: Vec<(u64, i32)> = ring
            .completion()
            .map(|completion| (completion.user_data(), completion.result()))
            .collect();
        for (id, result) in completions {
            if id == WAKE_TOKEN {
                drain_eventfd(wake_fd);
                loop {
                    match receiver.try_recv() {
                        Ok(mut operation) => {
                            let id = next_id;
                            next_id = (next_id + 1) % WAKE_TOKEN;
                            let entry = entry_for(&mut operation, id);
                            match push(&mut ring, &entry) {
                                Ok(()) => {
                                    in_flight.insert(id, operation);
                                }
                                Err(error) => {
                                    let _ = operation.reply.send(Err(error));
                                }
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
                if !disconnected && let Err(error) = arm_wake(&mut ring, wake_fd) {
                    tracing::error!(%error, "io_uring driver could not re-arm its wake-up poll");
                    disconnected = true;
                }
                continue;
            }
            let Some(mut operation) = in_flight.remove(&id) else {
                continue;
            };
            match complete(&mut operation, result) {
                Progress::Done(outcome) => {
                    let _ = operation.reply.send(outcome);
                }
                Progress::Again => {
                    let entry = entry_for(&mut operation, id);
                    match push(&mut ring, &entry) {
                        Ok(()) => {
                            in_flight.insert(id, operation);
                        }
                        Err(error) => {
                            let _ = operation.reply.send(Err(error));
                        }
                    }
                }
            }
        }
    }
}

fn drain_eventfd(wake_fd: RawFd) {
    let mut counter: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from an eventfd we own; non-blocking.
    let _ = unsafe { libc::read(wake_fd, (&raw mut counter).cast::<libc::c_void>(), 8) };
}

impl DiskFile for UringFile {
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let kind = OperationKind::Read {
            buffer: Vec::with_capacity(len),
            len,
        };
        self.driver
            .submit(&self.file, position, kind)
            .await
            .map_err(|source| DiskError::new("read", &self.path, source))
    }

    async fn write_at(&self, position: u64, data: Bytes) -> Result<(), DiskError> {
        if data.is_empty() {
            return Ok(());
        }
        let kind = OperationKind::Write { data, written: 0 };
        self.driver
            .submit(&self.file, position, kind)
            .await
            .map(drop)
            .map_err(|source| DiskError::new("write", &self.path, source))
    }

    async fn sync_data(&self) -> Result<(), DiskError> {
        self.driver
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
            driver: Arc::clone(&self.driver),
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
