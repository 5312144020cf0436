//! The real backends behave the same through the `Disk` trait.

use std::path::Path;

use bytes::Bytes;

use super::uring_in_tests::uring_disk_or_skip;
use super::*;

async fn exercise<D: Disk>(disk: D, root: &Path) {
    let directory = root.join(disk.backend_name());
    disk.create_dir_all(&directory).await.unwrap();
    let path = directory.join("a.log");
    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
    let Err(error) = disk.open(&path, OpenMode::CreateNew).await else {
        panic!("second create must fail")
    };
    assert!(error.to_string().contains("a.log"), "{error}");
    file.write_at(0, Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    file.write_at(6, Bytes::from_static(b"there"))
        .await
        .unwrap();
    file.sync_data().await.unwrap();
    assert_eq!(file.read_at(0, 11).await.unwrap(), b"hello there");
    // Reads past the end return what is there.
    assert_eq!(file.read_at(6, 100).await.unwrap(), b"there");
    assert!(file.read_at(50, 10).await.unwrap().is_empty());
    file.set_len(5).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 5);
    // A large write and read cross the kernel's per-call limits in several steps.
    let large: Vec<u8> = (0..5_000_000u32).map(|value| value as u8).collect();
    file.write_at(5, Bytes::from(large.clone())).await.unwrap();
    assert_eq!(file.read_at(5, large.len()).await.unwrap(), large);
    disk.sync_dir(&directory).await.unwrap();
    disk.rename(&path, &directory.join("b.log")).await.unwrap();
    assert_eq!(disk.list_dir(&directory).await.unwrap(), ["b.log"]);
    disk.remove_file(&directory.join("b.log")).await.unwrap();
    assert!(disk.list_dir(&directory).await.unwrap().is_empty());
    let Err(missing) = disk.open(&directory.join("missing"), OpenMode::Read).await else {
        panic!("missing file opened")
    };
    assert!(missing.is_not_found());
    // Writing through a read-only handle is an error, not a panic.
    let file = disk
        .open(&directory.join("c"), OpenMode::CreateNew)
        .await
        .unwrap();
    drop(file);
    let read_only = disk
        .open(&directory.join("c"), OpenMode::Read)
        .await
        .unwrap();
    assert!(
        read_only
            .write_at(0, Bytes::from_static(b"x"))
            .await
            .is_err()
    );
}

// Goal: io_uring and std pass the same behaviour checks (io_uring is skipped out loud where
// the kernel refuses it, and required in CI where it does not; see `uring_in_tests`).
#[test]
fn backends_behave_alike() {
    let uring = uring_disk_or_skip("backends_behave_alike");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        exercise(SystemDisk::detect(BackendChoice::Std).unwrap(), root.path()).await;
        if let Some(uring) = uring {
            exercise(SystemDisk::Uring(uring), &root.path().join("uring")).await;
        }
    });
}

// Goal: many operations in flight on io_uring at once all complete with the right data.
#[test]
fn uring_completes_many_concurrent_operations() {
    let Some(disk) = uring_disk_or_skip("uring_completes_many_concurrent_operations") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let file = std::sync::Arc::new(
            disk.open(&root.path().join("f"), OpenMode::CreateNew)
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for number in 0..200u64 {
            let file = std::sync::Arc::clone(&file);
            tasks.push(tokio::spawn(async move {
                let data = Bytes::from(vec![number as u8; 4096]);
                file.write_at(number * 4096, data).await.unwrap();
                file.sync_data().await.unwrap();
                file.read_at(number * 4096, 4096).await.unwrap()
            }));
        }
        for (number, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), vec![number as u8; 4096]);
        }
    });
}

#[test]
fn backend_choice_parses_and_explains() {
    assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
    assert_eq!("io_uring".parse(), Ok(BackendChoice::Uring));
    assert_eq!("std".parse(), Ok(BackendChoice::Std));
    let error = "fast".parse::<BackendChoice>().unwrap_err();
    assert!(error.contains("auto, std or io_uring"));
}

// Goal: when io_uring cannot be set up (here: a ring of zero entries, which the kernel
// refuses as a disabled io_uring would), `auto` falls back to std and `io_uring` is a clear
// error.
#[test]
fn auto_falls_back_to_std_when_io_uring_cannot_be_set_up() {
    let auto = SystemDisk::detect_with_ring_entries(BackendChoice::Auto, 0).unwrap();
    assert_eq!(auto.backend_name(), "std");
    let error = SystemDisk::detect_with_ring_entries(BackendChoice::Uring, 0).unwrap_err();
    assert!(error.to_string().contains("set up io_uring"), "{error}");
}

// Goal: the io_uring backend's completion reaper is a task of the runtime that uses the
// disk; when that runtime ends, the next runtime that uses the disk gets a new reaper (and a
// future polled outside any runtime gets an error, not a hang or a panic).
#[test]
fn uring_survives_its_runtime_and_refuses_no_runtime() {
    let Some(disk) = uring_disk_or_skip("uring_survives_its_runtime_and_refuses_no_runtime") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("f");
    for round in 0..3u8 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mode = if round == 0 {
                OpenMode::CreateNew
            } else {
                OpenMode::ReadWrite
            };
            let file = disk.open(&path, mode).await.unwrap();
            file.write_at(u64::from(round) * 4, Bytes::from(vec![round; 4]))
                .await
                .unwrap();
            file.sync_data().await.unwrap();
            let read = file.read_at(0, 4 * (usize::from(round) + 1)).await.unwrap();
            let expected: Vec<u8> = (0..=round).flat_map(|byte| [byte; 4]).collect();
            assert_eq!(read, expected);
        });
    }
    let file = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(disk.open(&path, OpenMode::ReadWrite))
        .unwrap();
    let error = poll_without_runtime(file.sync_data()).unwrap_err();
    assert!(
        error.to_string().contains("outside a tokio runtime"),
        "{error}"
    );
}

/// Polls a future to completion on this thread with no runtime at all.
fn poll_without_runtime<F: Future>(future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}
