//! The parameter block `ledge_init` receives, and binding its entries to typed parameters.
//!
//! Layout (docs/WASM-ABI.md, "Parameter block"): `u32 count`, then `count` entries of `u32
//! key_len, key, u32 value_len, value`, all UTF-8. The generated `init` asks for each parameter
//! of the plug-in function by name ([`Params::required`], [`Params::optional`]), parses it with
//! `FromStr`, and ends with [`Params::finish`], which refuses names the function does not take.
//! Every failure is an [`InitError`] whose message names the parameter, for whoever deployed
//! the module.

use std::fmt;
use std::str::FromStr;

/// Why `ledge_init` refused the parameters; its message goes back to whoever deployed the
/// module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitError {
    message: String,
}

impl InitError {
    fn new(message: String) -> Self {
        Self { message }
    }

    /// The message, e.g. "missing parameter `threshold`".
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InitError {}

/// The deployment's parameters, borrowed from the parameter block.
#[derive(Debug)]
pub struct Params<'a> {
    entries: Vec<Entry<'a>>,
}

#[derive(Debug)]
struct Entry<'a> {
    key: &'a str,
    value: &'a str,
    bound: bool,
}

impl<'a> Params<'a> {
    /// Reads a parameter block; a truncated block, non-UTF-8 text or a repeated key is an
    /// error.
    pub(crate) fn parse(mut block: &'a [u8]) -> Result<Self, InitError> {
        let count = read_u32(&mut block)
            .ok_or_else(|| malformed(format_args!("the block ends inside the parameter count")))?;
        // Each entry takes at least 8 bytes, so a made-up count fails before allocating.
        if count as usize > block.len() / 8 {
            return Err(malformed(format_args!(
                "{count} parameters cannot fit in {} bytes",
                block.len()
            )));
        }
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(count as usize);
        for index in 0..count {
            let key = read_text(&mut block, "key", index)?;
            let value = read_text(&mut block, "value", index)?;
            if entries.iter().any(|entry| entry.key == key) {
                return Err(InitError::new(format!("duplicate parameter `{key}`")));
            }
            entries.push(Entry {
                key,
                value,
                bound: false,
            });
        }
        if !block.is_empty() {
            return Err(malformed(format_args!(
                "{} bytes after the last parameter",
                block.len()
            )));
        }
        Ok(Self { entries })
    }

    /// The parameter `name`, parsed; missing or unparsable is an error.
    pub fn required<T>(&mut self, name: &str) -> Result<T, InitError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.optional(name)?
            .ok_or_else(|| InitError::new(format!("missing parameter `{name}`")))
    }

    /// The parameter `name`, parsed, or `None` if the deployment did not set it; unparsable
    /// is an error.
    pub fn optional<T>(&mut self, name: &str) -> Result<Option<T>, InitError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(entry) = self.entries.iter_mut().find(|entry| entry.key == name) else {
            return Ok(None);
        };
        entry.bound = true;
        entry
            .value
            .parse()
            .map(Some)
            .map_err(|error| InitError::new(format!("parameter `{name}`: {error}")))
    }

    /// Refuses parameters that no `required`/`optional` call asked for; `expected` lists the
    /// names the plug-in takes, for the message.
    pub fn finish(self, expected: &[&str]) -> Result<(), InitError> {
        let Some(unknown) = self.entries.iter().find(|entry| !entry.bound) else {
            return Ok(());
        };
        let takes = if expected.is_empty() {
            "this module takes no parameters".to_owned()
        } else {
            let names: Vec<String> = expected.iter().map(|name| format!("`{name}`")).collect();
            format!("this module takes {}", names.join(", "))
        };
        Err(InitError::new(format!(
            "unknown parameter `{}` ({takes})",
            unknown.key
        )))
    }
}

fn malformed(detail: fmt::Arguments<'_>) -> InitError {
    InitError::new(format!("malformed parameter block: {detail}"))
}

fn read_u32(block: &mut &[u8]) -> Option<u32> {
    let (bytes, rest) = block.split_first_chunk::<4>()?;
    *block = rest;
    Some(u32::from_le_bytes(*bytes))
}

fn read_text<'a>(block: &mut &'a [u8], what: &str, index: u32) -> Result<&'a str, InitError> {
    let length = read_u32(block).ok_or_else(|| {
        malformed(format_args!(
            "the block ends inside parameter {index}'s {what} length"
        ))
    })?;
    let Some((text, rest)) = block.split_at_checked(length as usize) else {
        return Err(malformed(format_args!(
            "parameter {index}'s {what} length {length} exceeds the {} bytes left",
            block.len()
        )));
    };
    *block = rest;
    std::str::from_utf8(text)
        .map_err(|_| malformed(format_args!("parameter {index}'s {what} is not UTF-8")))
}

#[cfg(test)]
mod tests;
