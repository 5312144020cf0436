//! Uploaded modules on disk, content-addressed, and their compiled forms.
//!
//! Layout under `<data-dir>/wasm/`:
//! - `modules/<sha256>.wasm`: the bytes as uploaded (the truth; made durable before the
//!   upload is acknowledged).
//! - `compiled/<sha256>-<engine key>.cwasm`: wasmtime's compiled code, prefixed with the
//!   SHA-256 of what follows. A restart loads it instead of recompiling; a different
//!   wasmtime or engine setting has another key and compiles afresh; a damaged file (digest
//!   mismatch) is ignored and rewritten. The cache is never needed for correctness.
//!
//! Which names and transforms use a module is in `metadata.json`; unreferenced module files
//! are removed by [`ModuleStore::retain`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::abi::PluginKind;
use super::runtime::{PluginModule, WasmEngine, WasmError, content_hash};
use crate::storage::disk::create_dir_durable;
use crate::storage::{Disk, DiskError, DiskFile, OpenMode};

/// Why a module could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleStoreError {
    /// The module itself is unusable.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The data directory failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// No module with this hash was ever stored.
    #[error("module {0} is not stored on this node")]
    Missing(String),
}

/// The node's module files and an in-memory map of compiled modules.
pub struct ModuleStore<D: Disk> {
    disk: D,
    modules_dir: PathBuf,
    compiled_dir: PathBuf,
    engine: WasmEngine,
    loaded: Mutex<HashMap<(String, PluginKind), Arc<PluginModule>>>,
}

const DIGEST_BYTES: usize = 32;

async fn read_whole<D: Disk>(disk: &D, path: &Path) -> Result<Option<Vec<u8>>, DiskError> {
    match disk.open(path, OpenMode::Read).await {
        Ok(file) => {
            let len = file.len().await?;
            Ok(Some(file.read_at(0, len as usize).await?))
        }
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes a whole file durably: temporary name, fdatasync, rename, directory sync.
async fn write_durable<D: Disk>(
    disk: &D,
    directory: &Path,
    name: &str,
    bytes: Bytes,
) -> Result<(), DiskError> {
    let path = directory.join(name);
    let temporary = directory.join(format!("{name}.tmp"));
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, bytes).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &path).await?;
    disk.sync_dir(directory).await
}

impl<D: Disk> ModuleStore<D> {
    /// Opens (creating) `<data_dir>/wasm/`.
    pub async fn open(disk: D, data_dir: &Path, engine: WasmEngine) -> Result<Self, DiskError> {
        let root = data_dir.join("wasm");
        create_dir_durable(&disk, &root).await?;
        let modules_dir = root.join("modules");
        let compiled_dir = root.join("compiled");
        create_dir_durable(&disk, &modules_dir).await?;
        create_dir_durable(&disk, &compiled_dir).await?;
        Ok(Self {
            disk,
            modules_dir,
            compiled_dir,
            engine,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The engine modules run on.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    fn loaded(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, PluginKind), Arc<PluginModule>>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn compiled_name(&self, hash: &str) -> String {
        format!("{hash}-{}.cwasm", self.engine.compatibility_key())
    }

    /// Checks and compiles `bytes` as a `kind` module, then stores it durably. Returns the
    /// module; storing the same bytes again is a no-op.
    pub async fn put(
        &self,
        bytes: Bytes,
        kind: PluginKind,
    ) -> Result<Arc<PluginModule>, ModuleStoreError> {
        let (module, compiled) = self.engine.compile_in_turn(bytes.clone(), kind).await?;
        let hash = module.hash().to_string();
        let name = format!("{hash}.wasm");
        if read_whole(&self.disk, &self.modules_dir.join(&name))
            .await?
            .is_none_or(|stored| stored != bytes)
        {
            write_durable(&self.disk, &self.modules_dir, &name, bytes).await?;
        }
        self.write_compiled(&hash, compiled).await;
        self.loaded().insert((hash, kind), Arc::clone(&module));
        Ok(module)
    }

    async fn write_compiled(&self, hash: &str, compiled: Vec<u8>) {
        let digest = ring::digest::digest(&ring::digest::SHA256, &compiled);
        let mut file = Vec::with_capacity(DIGEST_BYTES + compiled.len());
        file.extend_from_slice(digest.as_ref());
        file.extend_from_slice(&compiled);
        let name = self.compiled_name(hash);
        if let Err(error) =
            write_durable(&self.disk, &self.compiled_dir, &name, Bytes::from(file)).await
        {
            // Only a cache: the next start compiles again.
            tracing::warn!(%error, "cannot cache a compiled module");
        }
    }

    /// The module with `hash` as a `kind`: from memory, else from the compiled cache, else
    /// compiled from the stored bytes (and cached).
    pub async fn get(
        &self,
        hash: &str,
        kind: PluginKind,
    ) -> Result<Arc<PluginModule>, ModuleStoreError> {
        if let Some(module) = self.loaded().get(&(hash.to_string(), kind)) {
            return Ok(Arc::clone(module));
        }
        let compiled_path = self.compiled_dir.join(self.compiled_name(hash));
        if let Some(file) = read_whole(&self.disk, &compiled_path).await? {
            let intact = file.len() > DIGEST_BYTES
                && ring::digest::digest(&ring::digest::SHA256, &file[DIGEST_BYTES..]).as_ref()
                    == &file[..DIGEST_BYTES];
            if intact {
                // SAFETY: the file is what `compile` produced for an engine with this
                // compatibility key (it is in the name) and its digest matches, so it is
                // not torn or damaged.
                match unsafe {
                    self.engine
                        .load_compiled(&file[DIGEST_BYTES..], kind, hash.to_string())
                } {
                    Ok(module) => {
                        self.loaded()
                            .insert((hash.to_string(), kind), Arc::clone(&module));
                        return Ok(module);
                    }
                    Err(error) => {
                        tracing::warn!(%error, hash, "cached compiled module unusable; recompiling");
                    }
                }
            } else {
                tracing::warn!(path = %compiled_path.display(), "cached compiled module damaged; recompiling");
            }
        }
        let bytes = read_whole(&self.disk, &self.modules_dir.join(format!("{hash}.wasm")))
            .await?
            .ok_or_else(|| ModuleStoreError::Missing(hash.to_string()))?;
        if content_hash(&bytes) != hash {
            return Err(ModuleStoreError::Wasm(WasmError::InvalidModule(format!(
                "stored module {hash} is damaged (its content hash differs)"
            ))));
        }
        self.put(Bytes::from(bytes), kind).await
    }

    /// The stored bytes of the module with `hash`, if this node has them intact (a file
    /// whose content hash differs is treated as absent: it is never handed on).
    pub async fn stored_bytes(&self, hash: &str) -> Result<Option<Bytes>, DiskError> {
        // Only a digest names a file: anything else could be a path.
        if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let bytes = read_whole(&self.disk, &self.modules_dir.join(format!("{hash}.wasm"))).await?;
        Ok(bytes
            .filter(|bytes| content_hash(bytes) == hash)
            .map(Bytes::from))
    }

    /// Removes module files (and their compiled forms) whose hash is not in `keep`.
    pub async fn retain(&self, keep: &BTreeSet<String>) -> Result<(), DiskError> {
        for (directory, suffix) in [(&self.modules_dir, ".wasm"), (&self.compiled_dir, ".cwasm")] {
            for name in self.disk.list_dir(directory).await? {
                let hash = name.split(['.', '-']).next().unwrap_or_default();
                if name.ends_with(suffix) && !keep.contains(hash) {
                    self.disk.remove_file(&directory.join(&name)).await?;
                }
            }
            self.disk.sync_dir(directory).await?;
        }
        self.loaded().retain(|(hash, _), _| keep.contains(hash));
        Ok(())
    }
}
