//! `ledge module ...`: upload, list and delete named WASM modules; and reading `.wasm` files
//! for `module upload` and `transform deploy`.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use ledge_client::{Admin, Client, PluginKind};
use serde_json::json;

use crate::args::{Format, ModuleCommand};
use crate::output::{format_time, human_bytes, print, table};

/// The first bytes of every WebAssembly binary module: `\0asm`.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Hex digits of a module hash shown in tables; `describe` and JSON show all of it.
const HASH_PREFIX_CHARS: usize = 12;

pub(crate) async fn run(client: &Client, command: ModuleCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        ModuleCommand::Upload(arguments) => {
            let source = arguments.source;
            let kind = PluginKind::from(source.kind);
            let size = source.module_bytes.len() as u64;
            let params = source.params.clone();
            let hash = admin
                .upload_module(&arguments.name, kind, source.module_bytes, source.params)
                .await
                .context("cannot upload module")?;
            if arguments.format == Format::Json {
                return print(&serde_json::to_string(&json!({
                    "name": arguments.name,
                    "kind": kind.as_str(),
                    "size_bytes": size,
                    "hash": hash,
                    "params": params_json(&params),
                }))?);
            }
            print(&format!(
                "Uploaded module {} ({kind}, {}, sha256 {}).",
                arguments.name,
                human_bytes(size),
                hash_prefix(&hash)
            ))
        }
        ModuleCommand::List(arguments) => {
            let modules = admin.list_modules().await.context("cannot list modules")?;
            match arguments.format {
                Format::Json => {
                    let modules: Vec<_> = modules
                        .iter()
                        .map(|module| {
                            json!({
                                "name": module.name,
                                "kind": module.kind.as_str(),
                                "size_bytes": module.size_bytes,
                                "hash": module.hash,
                                "params": params_json(&module.params),
                                "uploaded": format_time(module.uploaded_ms),
                            })
                        })
                        .collect();
                    print(&serde_json::to_string(&modules)?)
                }
                Format::Table if modules.is_empty() => print(
                    "No modules. Upload one with: ledge module upload NAME --module FILE.wasm \
                     --kind KIND",
                ),
                Format::Table => {
                    let mut output = table(&["NAME", "KIND", "SIZE", "HASH", "PARAMS"], &[2]);
                    for module in &modules {
                        output.add_row(vec![
                            module.name.clone(),
                            module.kind.to_string(),
                            human_bytes(module.size_bytes),
                            hash_prefix(&module.hash).to_string(),
                            params_text(&module.params),
                        ]);
                    }
                    print(&output.to_string())
                }
            }
        }
        ModuleCommand::Delete(arguments) => {
            admin
                .delete_module(&arguments.name)
                .await
                .context("cannot delete module")?;
            print(&format!("Deleted module {}.", arguments.name))
        }
    }
}

/// Reads a `.wasm` file, refusing what cannot be a WebAssembly module before anything is
/// sent (a `.wat` text file, a Rust source, an empty file).
pub(crate) fn read_module_file(path: &Path) -> anyhow::Result<Bytes> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read module file {}", path.display()))?;
    if !bytes.starts_with(WASM_MAGIC) {
        bail!(
            "{} is not a WebAssembly module (it does not start with \\0asm); pass the .wasm \
             that cargo build --release --target wasm32-unknown-unknown writes",
            path.display()
        );
    }
    Ok(Bytes::from(bytes))
}

/// The start of a hash, enough to tell modules apart.
pub(crate) fn hash_prefix(hash: &str) -> &str {
    hash.get(..HASH_PREFIX_CHARS).unwrap_or(hash)
}

/// Parameters as `key=value` separated by spaces, or `-` when there are none.
pub(crate) fn params_text(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return "-".to_string();
    }
    params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parameters as a JSON object (keys are unique on the node).
pub(crate) fn params_json(params: &[(String, String)]) -> serde_json::Value {
    params
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_print_as_key_value_or_a_dash() {
        assert_eq!(params_text(&[]), "-");
        let params = vec![
            ("threshold".to_string(), "1000".to_string()),
            ("field".to_string(), "a=b".to_string()),
        ];
        assert_eq!(params_text(&params), "threshold=1000 field=a=b");
        assert_eq!(
            params_json(&params),
            json!({"threshold": "1000", "field": "a=b"})
        );
    }

    #[test]
    fn hash_prefixes_never_cut_short_hashes() {
        assert_eq!(hash_prefix(&"ab".repeat(32)), "abababababab");
        assert_eq!(hash_prefix("abc"), "abc");
    }

    /// Goal: a missing file and a file that is not WebAssembly are refused with the path and
    /// the reason. Method: files in a fresh temporary directory.
    #[test]
    fn module_files_must_exist_and_be_webassembly() {
        let directory =
            std::env::temp_dir().join(format!("ledge-cli-module-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let missing = directory.join("missing.wasm");
        let error = format!("{:#}", read_module_file(&missing).unwrap_err());
        assert!(
            error.contains("cannot read module file") && error.contains("missing.wasm"),
            "{error}"
        );
        let text = directory.join("filter.wat");
        std::fs::write(&text, "(module)").unwrap();
        let error = format!("{:#}", read_module_file(&text).unwrap_err());
        assert!(error.contains("is not a WebAssembly module"), "{error}");
        let module = directory.join("empty.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(read_module_file(&module).unwrap().len(), 8);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
