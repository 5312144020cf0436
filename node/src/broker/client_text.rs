//! Error text sent to clients never names a server path (issue 15: messages included the
//! data directory's paths). Errors keep their paths (operators need them in the log: a
//! `DiskError` prints `write /var/lib/ledge/...: No space left on device`); every message
//! built from an error for a client goes through [`client_text`], which logs the full text
//! and answers it with each absolute path cut to its last component (`write
//! …/00000000000000000000.log: No space left on device`).
//!
//! A path is recognised as the node's messages print one: a `/` at the start of the text or
//! after whitespace or `(`, followed by a name, up to the next whitespace (or a `:`, `,`,
//! `;` or `)` that ends the word). Client-given names are quoted in messages (`topic "a/b"`)
//! and are not touched.

/// `error`'s text for a client: [`without_paths`]; when that removed a path, the full text
/// is logged (the log keeps the path).
pub(crate) fn client_text(error: &dyn std::fmt::Display) -> String {
    let full = error.to_string();
    let text = without_paths(&full);
    if text != full {
        tracing::warn!(error = %full, answered = %text, "error answered to a client without its server paths");
    }
    text
}

/// `text` with every absolute path cut to `…/` and its last component.
pub(crate) fn without_paths(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        let starts_path = bytes[index] == b'/'
            && (index == 0 || bytes[index - 1].is_ascii_whitespace() || bytes[index - 1] == b'(')
            && bytes
                .get(index + 1)
                .is_some_and(|next| !next.is_ascii_whitespace() && *next != b'/');
        if !starts_path {
            index += 1;
            continue;
        }
        let end = path_end(bytes, index);
        let path = &text[index..end];
        let last = path.rsplit('/').next().unwrap_or_default();
        out.push_str(&text[copied..index]);
        out.push_str("…/");
        out.push_str(last);
        copied = end;
        index = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the path starting at `start` ends: at whitespace, or at a `:`, `,`, `;` or `)` that
/// is followed by whitespace or the end of the text.
fn path_end(bytes: &[u8], start: usize) -> usize {
    let mut index = start;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            break;
        }
        let ends_word = bytes
            .get(index + 1)
            .is_none_or(|next| next.is_ascii_whitespace());
        if matches!(byte, b':' | b',' | b';' | b')') && ends_word {
            break;
        }
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: absolute paths are cut to their last component wherever the node's messages put
    // them; quoted client names, ratios and relative text are left alone.
    #[test]
    fn absolute_paths_are_cut_to_their_last_component() {
        let cases = [
            (
                "write /var/lib/ledge/topics/t-0/00000000000000000000.log: No space left on device",
                "write …/00000000000000000000.log: No space left on device",
            ),
            (
                "/data/metadata.json: unexpected end",
                "…/metadata.json: unexpected end",
            ),
            (
                "segment /d/t-0/1.log is corrupt at byte 5: bad crc (read /d/t-0/1.log)",
                "segment …/1.log is corrupt at byte 5: bad crc (read …/1.log)",
            ),
            (
                "open /data: permission denied",
                "open …/data: permission denied",
            ),
            ("group \"/a/b\" is unknown", "group \"/a/b\" is unknown"),
            ("5 / 10 bytes, a/b, //x", "5 / 10 bytes, a/b, //x"),
            ("über /dätä/ß.log, fin", "über …/ß.log, fin"),
            ("", ""),
        ];
        for (text, expected) in cases {
            assert_eq!(without_paths(text), expected, "{text}");
        }
    }
}
