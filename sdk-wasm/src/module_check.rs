//! Checks a built `.wasm` file against the ABI's export list, as the node does at upload: no
//! imports, one memory named `memory`, the four functions with their signatures, exactly one
//! kind function. Reads only the module's type, import, function and export sections.

use ledge_protocol::wasm_abi::{
    EXPORT_GROUP, EXPORT_MERGE, EXPORT_STATE_CHECK, EXPORT_STATE_SCHEMA, PluginKind,
};

const I32: u8 = 0x7f;
const I64: u8 = 0x7e;

/// Checks `module` (the bytes of a `.wasm` file) against docs/WASM-ABI.md's exports; returns
/// the plug-in's kind, or what is wrong.
pub fn check_module(module: &[u8]) -> Result<PluginKind, String> {
    let mut reader = Reader(module);
    if reader.take(8)? != b"\0asm\x01\0\0\0" {
        return Err("not a WebAssembly core module (version 1)".to_owned());
    }
    let mut types: Vec<FunctionType> = Vec::new();
    let mut functions: Vec<u32> = Vec::new();
    let mut exports: Vec<(String, u8, u32)> = Vec::new();
    while !reader.0.is_empty() {
        let id = reader.byte()?;
        let size = reader.leb()? as usize;
        let mut section = Reader(reader.take(size)?);
        match id {
            1 => {
                for _ in 0..section.leb()? {
                    if section.byte()? != 0x60 {
                        return Err("the type section holds a non-function type".to_owned());
                    }
                    let parameters = section.value_types()?;
                    let results = section.value_types()?;
                    types.push(FunctionType {
                        parameters,
                        results,
                    });
                }
            }
            2 => {
                let imports = section.leb()?;
                if imports > 0 {
                    let module = section.name()?;
                    let field = section.name()?;
                    return Err(format!(
                        "imports `{module}.{field}`; a plug-in may import nothing"
                    ));
                }
            }
            3 => {
                for _ in 0..section.leb()? {
                    functions.push(section.leb()?);
                }
            }
            7 => {
                for _ in 0..section.leb()? {
                    let name = section.name()?;
                    let kind = section.byte()?;
                    exports.push((name, kind, section.leb()?));
                }
            }
            _ => {}
        }
    }

    let signature = |name: &str| -> Result<Option<&FunctionType>, String> {
        let Some((_, kind, index)) = exports.iter().find(|(export, ..)| export == name) else {
            return Ok(None);
        };
        if *kind != 0 {
            return Err(format!("`{name}` is exported, but not as a function"));
        }
        // No imports, so function indices are indices into the function section.
        functions
            .get(*index as usize)
            .and_then(|&ty| types.get(ty as usize))
            .map(Some)
            .ok_or_else(|| format!("`{name}` names function {index}, which does not exist"))
    };
    let expect =
        |name: &str, parameters: &[u8], results: &[u8], required: bool| match signature(name)? {
            Some(found) if found.parameters == parameters && found.results == results => Ok(true),
            Some(_) => Err(format!("`{name}` has the wrong signature")),
            None if required => Err(format!("`{name}` is not exported")),
            None => Ok(false),
        };

    let memories: Vec<&str> = exports
        .iter()
        .filter(|(_, kind, _)| *kind == 2)
        .map(|(name, ..)| name.as_str())
        .collect();
    if memories != ["memory"] {
        return Err(format!(
            "exports memories {memories:?}; exactly one, `memory`, is needed"
        ));
    }
    expect("ledge_abi_version", &[], &[I32], true)?;
    expect("ledge_alloc", &[I32], &[I32], true)?;
    expect("ledge_init", &[I32, I32], &[I64], true)?;
    expect("ledge_panic_message", &[], &[I64], false)?;
    let mut kinds = Vec::new();
    for kind in PluginKind::ALL {
        if expect(kind.export_name(), &[I32, I32], &[I64], false)? {
            kinds.push(kind);
        }
    }
    let kind = match kinds[..] {
        [kind] => kind,
        [] => {
            return Err("exports no kind function (`ledge_filter`, `ledge_map`, ...)".to_owned());
        }
        _ => {
            return Err(format!(
                "exports {} kind functions; exactly one is allowed",
                kinds.len()
            ));
        }
    };
    // The stateful kinds' other exports (docs/STREAMS.md), as the node checks them.
    for name in [
        EXPORT_GROUP,
        EXPORT_MERGE,
        EXPORT_STATE_SCHEMA,
        EXPORT_STATE_CHECK,
    ] {
        let (parameters, results): (&[u8], &[u8]) = if name == EXPORT_STATE_SCHEMA {
            (&[], &[I64])
        } else {
            (&[I32, I32], &[I64])
        };
        let required = kind.required_exports().contains(&name);
        if expect(name, parameters, results, required)?
            && !required
            && !kind.optional_exports().contains(&name)
        {
            return Err(format!(
                "`{name}` is exported, but only an aggregate has it"
            ));
        }
    }
    Ok(kind)
}

/// A function type: its parameter and result value types, one byte each.
struct FunctionType {
    parameters: Vec<u8>,
    results: Vec<u8>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self
            .0
            .split_at_checked(length)
            .ok_or_else(|| "the module is truncated".to_owned())?;
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 `u32`.
    fn leb(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a LEB128 integer is too long".to_owned())
    }

    fn name(&mut self) -> Result<String, String> {
        let length = self.leb()? as usize;
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }

    fn value_types(&mut self) -> Result<Vec<u8>, String> {
        let count = self.leb()? as usize;
        Ok(self.take(count)?.to_vec())
    }
}

#[cfg(test)]
mod tests;
