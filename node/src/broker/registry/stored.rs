//! The registry's API for what `metadata.json` stores beside the topics: named modules
//! (for the plug-in host) and transform definitions (for the transform runner). Each change
//! is made under the `metadata.json` lock, which orders it with the topic changes it must
//! agree with (a module a topic config names is not deleted; a topic a transform reads is
//! not deleted).

use std::collections::{BTreeMap, BTreeSet};

use super::{TopicRegistry, read};
use crate::broker::metadata::{MetadataError, StoppedReason, StoredModule, StoredTransform};
use crate::storage::Disk;

/// A topic config key that names a module, on one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleReference {
    /// The topic.
    pub topic: String,
    /// The key naming the module (`partitioner.module`, `produce.filter.module`).
    pub key: &'static str,
}

/// Why a named module was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum StoreModuleError {
    /// The node keeps `wasm.modules_max` modules.
    #[error(
        "the node keeps {count} modules, its limit (wasm.modules_max); delete unused ones with `ledge module delete`"
    )]
    TooMany {
        /// How many it keeps.
        count: usize,
    },
    /// `metadata.json` did not take it.
    #[error("could not record module {name:?}: {source}")]
    Record {
        /// The module.
        name: String,
        /// Why.
        source: MetadataError,
    },
}

/// Why a named module was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveModuleError {
    /// No module of that name.
    #[error("no module named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// Topic configs name the module.
    #[error(
        "module {name:?} is used by topic(s) {}; change their partitioner.module / produce.filter.module first",
        topics.join(", ")
    )]
    InUse {
        /// The module.
        name: String,
        /// The topics naming it.
        topics: Vec<String>,
    },
    /// `metadata.json` did not take the removal.
    #[error("could not record the removal: {0}")]
    Record(MetadataError),
}

/// Why a transform definition was not recorded.
#[derive(Debug, thiserror::Error)]
#[error("could not record transform {name:?}: {source}")]
pub struct StoreTransformError {
    /// The transform.
    pub name: String,
    /// Why.
    pub source: MetadataError,
}

/// Why a transform's stopped state was not changed.
#[derive(Debug, thiserror::Error)]
pub enum SetTransformStoppedError {
    /// No transform of that name.
    #[error("no transform named {0:?}")]
    NotFound(String),
    /// `metadata.json` did not take the new state.
    #[error(transparent)]
    Record(#[from] StoreTransformError),
}

/// Why a transform definition was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveTransformError {
    /// No transform of that name.
    #[error("no transform named {0:?}")]
    NotFound(String),
    /// `metadata.json` did not take the removal.
    #[error("could not record the removal: {0}")]
    Record(MetadataError),
}

impl<D: Disk> TopicRegistry<D> {
    /// The named modules.
    pub async fn modules(&self) -> BTreeMap<String, StoredModule> {
        self.admin.lock().await.current().modules.clone()
    }

    /// The named module `name`, if there is one.
    pub async fn module(&self, name: &str) -> Option<StoredModule> {
        self.admin.lock().await.current().modules.get(name).cloned()
    }

    /// The topic configs that name module `name`.
    pub fn module_references(&self, name: &str) -> Vec<ModuleReference> {
        read(&self.topics)
            .iter()
            .flat_map(|(topic, entry)| {
                let config = read(&entry.config);
                [
                    ("partitioner.module", config.partitioner_module.as_deref()),
                    (
                        "produce.filter.module",
                        config.produce_filter_module.as_deref(),
                    ),
                ]
                .into_iter()
                .filter(|(_, module)| *module == Some(name))
                .map(|(key, _)| ModuleReference {
                    topic: topic.clone(),
                    key,
                })
                .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Whether a module named `name` could be recorded without going over `modules_max`
    /// (replacing an existing name always can), checked without recording anything.
    pub async fn check_module_room(
        &self,
        name: &str,
        modules_max: usize,
    ) -> Result<(), StoreModuleError> {
        let store = self.admin.lock().await;
        room_for(&store.current().modules, name, modules_max)
            .map_err(|count| StoreModuleError::TooMany { count })
    }

    /// Records `module` under `name` (replacing what the name had), unless it is a new name
    /// and the node already keeps `modules_max` modules.
    pub async fn store_module(
        &self,
        name: &str,
        module: StoredModule,
        modules_max: usize,
    ) -> Result<(), StoreModuleError> {
        let mut store = self.admin.lock().await;
        room_for(&store.current().modules, name, modules_max)
            .map_err(|count| StoreModuleError::TooMany { count })?;
        let mut next = store.current().clone();
        next.modules.insert(name.to_string(), module);
        store
            .store(next)
            .await
            .map_err(|source| StoreModuleError::Record {
                name: name.to_string(),
                source,
            })
    }

    /// Removes the named module, unless a topic config names it.
    pub async fn remove_module(&self, name: &str) -> Result<(), RemoveModuleError> {
        let mut store = self.admin.lock().await;
        let mut next = store.current().clone();
        if next.modules.remove(name).is_none() {
            return Err(RemoveModuleError::NotFound {
                name: name.to_string(),
            });
        }
        // Under the metadata lock: a config change naming it waits for this removal, and
        // then finds it gone.
        let mut topics: Vec<String> = self
            .module_references(name)
            .into_iter()
            .map(|reference| reference.topic)
            .collect();
        topics.dedup();
        if !topics.is_empty() {
            return Err(RemoveModuleError::InUse {
                name: name.to_string(),
                topics,
            });
        }
        store.store(next).await.map_err(RemoveModuleError::Record)
    }

    /// The hashes of every module a name or a transform refers to (the module files to
    /// keep).
    pub async fn referenced_module_hashes(&self) -> BTreeSet<String> {
        let store = self.admin.lock().await;
        let current = store.current();
        current
            .modules
            .values()
            .map(|module| module.hash.clone())
            .chain(
                current
                    .transforms
                    .values()
                    .map(|transform| transform.module.hash.clone()),
            )
            .collect()
    }

    /// The transform definitions.
    pub async fn transforms(&self) -> BTreeMap<String, StoredTransform> {
        self.admin.lock().await.current().transforms.clone()
    }

    /// The definition of transform `name`, if there is one.
    pub async fn transform(&self, name: &str) -> Option<StoredTransform> {
        self.admin
            .lock()
            .await
            .current()
            .transforms
            .get(name)
            .cloned()
    }

    /// How many transforms are defined.
    pub async fn transform_count(&self) -> usize {
        self.admin.lock().await.current().transforms.len()
    }

    /// Records transform `name`'s definition (replacing what the name had).
    pub async fn store_transform(
        &self,
        name: &str,
        definition: StoredTransform,
    ) -> Result<(), StoreTransformError> {
        let mut store = self.admin.lock().await;
        let mut next = store.current().clone();
        next.transforms.insert(name.to_string(), definition);
        store
            .store(next)
            .await
            .map_err(|source| StoreTransformError {
                name: name.to_string(),
                source,
            })
    }

    /// Records why transform `name` stopped (`None`: it runs again); returns its
    /// definition as now stored.
    pub async fn set_transform_stopped(
        &self,
        name: &str,
        stopped: Option<StoppedReason>,
    ) -> Result<StoredTransform, SetTransformStoppedError> {
        let mut store = self.admin.lock().await;
        let mut next = store.current().clone();
        let Some(definition) = next.transforms.get_mut(name) else {
            return Err(SetTransformStoppedError::NotFound(name.to_string()));
        };
        definition.stopped = stopped;
        let definition = definition.clone();
        store
            .store(next)
            .await
            .map_err(|source| StoreTransformError {
                name: name.to_string(),
                source,
            })?;
        Ok(definition)
    }

    /// Removes transform `name`'s definition (its positions are the group service's).
    pub async fn remove_transform(&self, name: &str) -> Result<(), RemoveTransformError> {
        let mut store = self.admin.lock().await;
        let mut next = store.current().clone();
        if next.transforms.remove(name).is_none() {
            return Err(RemoveTransformError::NotFound(name.to_string()));
        }
        store
            .store(next)
            .await
            .map_err(RemoveTransformError::Record)
    }
}

impl<D: Disk> TopicRegistry<D> {
    /// In a `[cluster]`: makes the named modules and transform definitions exactly those of
    /// the controller's image (`metadata.json` keeps a copy, so the plug-in host and the
    /// transform runner read them as on one node). The image was checked by the controller,
    /// so nothing is refused here. Returns whether anything changed.
    pub async fn mirror_plugins(
        &self,
        modules: &BTreeMap<String, StoredModule>,
        transforms: &BTreeMap<String, StoredTransform>,
    ) -> Result<bool, MetadataError> {
        let mut store = self.admin.lock().await;
        let current = store.current();
        if current.modules == *modules && current.transforms == *transforms {
            return Ok(false);
        }
        let mut next = current.clone();
        next.modules = modules.clone();
        next.transforms = transforms.clone();
        store.store(next).await?;
        Ok(true)
    }
}

/// `Ok` if `modules` can take `name` within `modules_max`; otherwise how many it keeps.
fn room_for(
    modules: &BTreeMap<String, StoredModule>,
    name: &str,
    modules_max: usize,
) -> Result<(), usize> {
    if !modules.contains_key(name) && modules.len() >= modules_max {
        Err(modules.len())
    } else {
        Ok(())
    }
}
