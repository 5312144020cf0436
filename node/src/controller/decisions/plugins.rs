//! Module and transform decisions (issue 13 item 3): in a `[cluster]` the named modules and
//! the transform definitions are the controller's, recorded as `PutModule`/`DeleteModule`
//! and `PutTransform`/`DeleteTransform`. The forwarding node checked the request with the
//! one-node rules (and stored the module's bytes); these checks are the ones that depend
//! on the cluster's state, made again here because only the image is authoritative: a
//! topic config naming the module, a transform's topics, its version.

use super::{ControllerError, ControllerLogic, Work};
use crate::broker::metadata::{StoredModule, StoredTransform};
use crate::broker::plugins::{PARTITIONER_KINDS, PRODUCE_FILTER_KINDS};
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;
use crate::wasm::PluginKind;

/// The topic config keys that name a module, with the kinds each takes.
const MODULE_KEYS: [(&str, &[PluginKind]); 2] = [
    ("partitioner.module", PARTITIONER_KINDS),
    ("produce.filter.module", PRODUCE_FILTER_KINDS),
];

/// Each (topic, key) of the image whose config names module `name`.
fn module_users<'a>(
    image: &'a MetadataImage,
    name: &'a str,
) -> impl Iterator<Item = (&'a str, &'static str, &'static [PluginKind])> + 'a {
    image.topics.iter().flat_map(move |(topic, state)| {
        MODULE_KEYS
            .iter()
            .filter(move |(key, _)| state.configs.get(*key).map(String::as_str) == Some(name))
            .map(move |(key, kinds)| (topic.as_str(), *key, *kinds))
    })
}

impl ControllerLogic {
    /// Records module `name` (new, or replacing what the name had). Refused when a topic
    /// config names it for a key that does not take its kind (every produce to that topic
    /// would fail).
    pub fn put_module(
        &self,
        image: &MetadataImage,
        name: &str,
        module: &StoredModule,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        crate::broker::topic_config::validate_module_name(name).map_err(|error| {
            ControllerError::InvalidPluginRequest(format!("module name: {error}"))
        })?;
        if !is_sha256_hex(&module.hash) {
            return Err(ControllerError::InvalidPluginRequest(format!(
                "module {name:?}: {:?} is not a SHA-256 digest",
                module.hash
            )));
        }
        let refusing: Vec<String> = module_users(image, name)
            .filter(|(_, _, kinds)| !kinds.contains(&module.kind))
            .map(|(topic, key, _)| format!("topic {topic:?} ({key})"))
            .collect();
        if !refusing.is_empty() {
            return Err(ControllerError::ModuleInUse(format!(
                "module {name:?} is used by {}, which does not take a {}; change that config first",
                refusing.join(", "),
                module.kind
            )));
        }
        if image.modules.get(name) == Some(module) {
            return Ok(Vec::new());
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::PutModule {
            name: name.to_owned(),
            module: module.clone(),
        })?;
        Ok(work.records)
    }

    /// Removes module `name`, unless a topic config names it (transforms keep their own
    /// copy of their module's definition, so they do not hold a name).
    pub fn delete_module(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if !image.modules.contains_key(name) {
            return Err(ControllerError::ModuleNotFound(name.to_owned()));
        }
        let mut topics: Vec<&str> = module_users(image, name).map(|(topic, ..)| topic).collect();
        topics.dedup();
        if !topics.is_empty() {
            return Err(ControllerError::ModuleInUse(format!(
                "module {name:?} is used by topic(s) {}; change their partitioner.module / produce.filter.module first",
                topics.join(", ")
            )));
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::DeleteModule {
            name: name.to_owned(),
        })?;
        Ok(work.records)
    }

    /// Records transform `name`'s definition: a new transform (version 1), a new version
    /// (the current one plus one), or a state change of the current version (pause,
    /// resume, a stop). Any other version lost a race with another deploy and is refused,
    /// so two nodes deploying at once never both believe they set version N.
    pub fn put_transform(
        &self,
        image: &MetadataImage,
        name: &str,
        transform: &StoredTransform,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let refuse = |message: String| Err(ControllerError::InvalidPluginRequest(message));
        if let Err(error) = crate::broker::topic_config::validate_module_name(name) {
            return refuse(format!("transform name: {error}"));
        }
        if !is_sha256_hex(&transform.module.hash) {
            return refuse(format!(
                "transform {name:?}: {:?} is not a SHA-256 digest",
                transform.module.hash
            ));
        }
        if transform.input.starts_with("__") || !image.topics.contains_key(&transform.input) {
            return Err(ControllerError::UnknownTopicOrPartition(format!(
                "{:?} (input of transform {name:?})",
                transform.input
            )));
        }
        let mut written = vec![&transform.output];
        if transform.on_error == crate::broker::metadata::OnError::DeadLetter {
            written.push(&transform.dead_letter_topic);
        }
        for topic in written {
            if topic.starts_with("__") || *topic == transform.input {
                return refuse(format!(
                    "a transform cannot write {topic:?} (internal, or its own input)"
                ));
            }
            if !image.topics.contains_key(topic) {
                return Err(ControllerError::UnknownTopicOrPartition(format!(
                    "{topic:?} (written by transform {name:?})"
                )));
            }
        }
        match image.transforms.get(name) {
            None if transform.version != 1 => {
                return refuse(format!(
                    "transform {name:?} no longer exists (it was removed while version {} was deployed); deploy it again",
                    transform.version
                ));
            }
            None => {}
            Some(existing) if existing.input != transform.input => {
                return refuse(format!(
                    "transform {name:?} reads {:?}; remove it before deploying one that reads {:?}",
                    existing.input, transform.input
                ));
            }
            Some(existing)
                if transform.version != existing.version
                    && Some(transform.version) != existing.version.checked_add(1) =>
            {
                return refuse(format!(
                    "transform {name:?} is at version {} now (another deploy came first); deploy again",
                    existing.version
                ));
            }
            Some(existing) if existing == transform => return Ok(Vec::new()),
            Some(_) => {}
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::PutTransform {
            name: name.to_owned(),
            transform: Box::new(transform.clone()),
        })?;
        Ok(work.records)
    }

    /// Removes transform `name` (its positions are the group coordinator's to forget).
    pub fn delete_transform(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if !image.transforms.contains_key(name) {
            return Err(ControllerError::TransformNotFound(name.to_owned()));
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::DeleteTransform {
            name: name.to_owned(),
        })?;
        Ok(work.records)
    }
}

/// Whether `hash` is a SHA-256 digest in lowercase hex: it names files on every node.
fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::broker::metadata::OnError;
    use crate::controller::decisions::{CreateTopicRequest, DecisionConfig};
    use crate::controller::records::TopicId;

    fn module(kind: PluginKind) -> StoredModule {
        StoredModule {
            hash: "ab".repeat(32),
            kind,
            size_bytes: 10,
            params: BTreeMap::new(),
            uploaded_ms: 0,
        }
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        if records.is_empty() {
            return;
        }
        let index = image.last_applied_index + 1;
        image.apply_batch(index, records).unwrap();
    }

    /// An image with one node and topics `in`, `out`, `dlq`; `in` names `filter` as its
    /// produce filter.
    fn image_with_topics(logic: &mut ControllerLogic) -> MetadataImage {
        use crate::clock::{Clock, SystemClock};
        let mut image = MetadataImage::default();
        let request = crate::controller::decisions::RegisterRequest {
            node_id: 1,
            address: "127.0.0.1:9101".into(),
            incarnation_id: 1,
            storage_id: None,
            kafka_listeners: None,
        };
        let now = SystemClock.now();
        let (records, epoch) = logic.handle_register(&image, now, &request).unwrap();
        apply(&mut image, &records);
        let records = logic.handle_heartbeat(&image, now, 1, epoch).unwrap();
        apply(&mut image, &records);
        for (name, configs) in [
            (
                "in",
                BTreeMap::from([("produce.filter.module".to_owned(), "filter".to_owned())]),
            ),
            ("out", BTreeMap::new()),
            ("dlq", BTreeMap::new()),
        ] {
            let request = CreateTopicRequest {
                name: name.into(),
                topic_id: TopicId::derive(image.last_applied_index + 1, name),
                partitions: 2,
                replication_factor: Some(1),
                configs,
            };
            let records = logic.create_topic(&image, &request).unwrap();
            apply(&mut image, &records);
        }
        image
    }

    fn transform(version: u32) -> StoredTransform {
        StoredTransform {
            module: module(PluginKind::Map),
            input: "in".into(),
            output: "out".into(),
            dead_letter_topic: "dlq".into(),
            on_error: OnError::DeadLetter,
            version,
            stopped: None,
            deployer: None,
            stateful: None,
        }
    }

    #[test]
    fn a_module_a_topic_names_is_neither_deleted_nor_replaced_by_a_kind_its_key_refuses() {
        let mut logic = ControllerLogic::new(DecisionConfig::default());
        let mut image = image_with_topics(&mut logic);
        let records = logic
            .put_module(&image, "filter", &module(PluginKind::Filter))
            .unwrap();
        apply(&mut image, &records);
        assert!(image.modules.contains_key("filter"));
        // The same module again changes nothing.
        assert!(
            logic
                .put_module(&image, "filter", &module(PluginKind::Filter))
                .unwrap()
                .is_empty()
        );
        let error = logic
            .put_module(&image, "filter", &module(PluginKind::Partitioner))
            .unwrap_err();
        assert!(matches!(error, ControllerError::ModuleInUse(_)), "{error}");
        assert!(
            error
                .to_string()
                .contains("topic \"in\" (produce.filter.module)")
        );
        let error = logic.delete_module(&image, "filter").unwrap_err();
        assert!(matches!(error, ControllerError::ModuleInUse(_)), "{error}");
        assert!(matches!(
            logic.delete_module(&image, "nope").unwrap_err(),
            ControllerError::ModuleNotFound(_)
        ));
        // A module no topic names goes.
        let records = logic
            .put_module(&image, "other", &module(PluginKind::Map))
            .unwrap();
        apply(&mut image, &records);
        let records = logic.delete_module(&image, "other").unwrap();
        apply(&mut image, &records);
        assert!(!image.modules.contains_key("other"));
    }

    #[test]
    fn bad_module_names_and_digests_are_refused() {
        let mut logic = ControllerLogic::new(DecisionConfig::default());
        let image = image_with_topics(&mut logic);
        for name in ["", "../x", "a/b"] {
            assert!(
                logic
                    .put_module(&image, name, &module(PluginKind::Map))
                    .is_err(),
                "{name:?}"
            );
        }
        let mut bad = module(PluginKind::Map);
        bad.hash = "../../etc/passwd".into();
        assert!(matches!(
            logic.put_module(&image, "m", &bad).unwrap_err(),
            ControllerError::InvalidPluginRequest(_)
        ));
        let mut bad = transform(1);
        bad.module.hash = "AB".repeat(32);
        assert!(logic.put_transform(&image, "t", &bad).is_err());
    }

    #[test]
    fn transform_versions_move_one_at_a_time_and_topics_must_exist() {
        let mut logic = ControllerLogic::new(DecisionConfig::default());
        let mut image = image_with_topics(&mut logic);
        assert!(logic.put_transform(&image, "t", &transform(2)).is_err());
        let records = logic.put_transform(&image, "t", &transform(1)).unwrap();
        apply(&mut image, &records);
        // A pause is the same version with a stopped state.
        let mut paused = transform(1);
        paused.stopped = Some(crate::broker::metadata::StoppedReason {
            state: "paused".into(),
            reason: "paused by an operator".into(),
        });
        let records = logic.put_transform(&image, "t", &paused).unwrap();
        apply(&mut image, &records);
        assert_eq!(image.transforms["t"].stopped, paused.stopped);
        // Two deploys of version 2 from an image at version 1: the second loses.
        let records = logic.put_transform(&image, "t", &transform(2)).unwrap();
        apply(&mut image, &records);
        let mut late = transform(2);
        late.module.hash = "cd".repeat(32);
        late.version = 2;
        assert_eq!(image.transforms["t"].version, 2);
        // Version 2 again (a state change of the current one) is allowed; 4 is not.
        assert!(logic.put_transform(&image, "t", &late).is_ok());
        assert!(logic.put_transform(&image, "t", &transform(4)).is_err());
        assert!(logic.put_transform(&image, "t", &transform(1)).is_err());
        let mut other_input = transform(3);
        other_input.input = "dlq".into();
        assert!(logic.put_transform(&image, "t", &other_input).is_err());
        let mut missing_output = transform(1);
        missing_output.output = "nowhere".into();
        assert!(matches!(
            logic
                .put_transform(&image, "u", &missing_output)
                .unwrap_err(),
            ControllerError::UnknownTopicOrPartition(_)
        ));
        let mut internal = transform(1);
        internal.input = "__consumer_offsets".into();
        assert!(logic.put_transform(&image, "u", &internal).is_err());
        let records = logic.delete_transform(&image, "t").unwrap();
        apply(&mut image, &records);
        assert!(image.transforms.is_empty());
        assert!(matches!(
            logic.delete_transform(&image, "t").unwrap_err(),
            ControllerError::TransformNotFound(_)
        ));
    }
}
