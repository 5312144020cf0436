//! The scanners: e-mail addresses and Luhn-valid card numbers in bytes, and JSON string values
//! in a JSON text. All patterns are ASCII, so masking never splits a UTF-8 character.

/// What an e-mail address is replaced with.
pub const EMAIL_MASK: &str = "[redacted email]";

/// Card numbers are 13 to 19 digits (ISO/IEC 7812).
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;
/// Digits of a card number left visible, at its end.
const CARD_DIGITS_VISIBLE: usize = 4;

/// `json` (already validated) with every string value redacted, or `None` if nothing changed.
/// Object keys are left alone; the rest of the text is kept byte for byte.
pub fn redact_json(json: &str) -> Result<Option<String>, String> {
    let bytes = json.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'"'))
    {
        let start = at + offset;
        let end = string_end(bytes, start);
        at = end;
        if is_object_key(bytes, end) {
            continue;
        }
        let literal = json
            .get(start..end)
            .ok_or("JSON string boundaries are not on characters")?;
        let text: String =
            serde_json::from_str(literal).map_err(|error| format!("JSON string: {error}"))?;
        let Some(redacted) = redact_text(text.as_bytes()) else {
            continue;
        };
        // Masks are ASCII and replace ASCII runs, so the text stays UTF-8.
        let redacted = String::from_utf8(redacted).map_err(|error| error.to_string())?;
        out.push_str(&json[copied..start]);
        out.push_str(&serde_json::to_string(&redacted).map_err(|error| error.to_string())?);
        copied = end;
    }
    if copied == 0 {
        return Ok(None);
    }
    out.push_str(&json[copied..]);
    Ok(Some(out))
}

/// `text` with e-mail addresses and card numbers masked, or `None` if it has neither.
pub fn redact_text(text: &[u8]) -> Option<Vec<u8>> {
    let emails = mask_emails(text);
    let cards = mask_cards(emails.as_deref().unwrap_or(text));
    cards.or(emails)
}

/// Index just past the closing quote of the JSON string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// Whether the string ending at `end` is an object key (a `:` follows it).
fn is_object_key(bytes: &[u8], end: usize) -> bool {
    let rest = bytes.get(end..).unwrap_or_default();
    rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
}

fn mask_emails(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = text
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'@'))
    {
        let sign = at + offset;
        at = sign + 1;
        let Some((start, end)) = email_around(text, sign) else {
            continue;
        };
        let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
        out.extend_from_slice(&text[copied..start]);
        out.extend_from_slice(EMAIL_MASK.as_bytes());
        copied = end;
        at = end;
    }
    let mut out = out?;
    out.extend_from_slice(&text[copied..]);
    Some(out)
}

/// The span of the e-mail address around the `@` at `sign`, if there is one: a local part of
/// `[A-Za-z0-9._%+-]` and a domain of dot-separated labels with an alphabetic top level of at
/// least two letters.
fn email_around(text: &[u8], sign: usize) -> Option<(usize, usize)> {
    let is_local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let is_domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let mut start = sign;
    while start > 0 && is_local(text[start - 1]) {
        start -= 1;
    }
    // A local part cannot start with a dot ("see.you@x" after a sentence is fine).
    while start < sign && text[start] == b'.' {
        start += 1;
    }
    let mut end = sign + 1;
    while end < text.len() && is_domain(text[end]) {
        end += 1;
    }
    // A sentence's full stop is not part of the domain.
    while end > sign + 1 && matches!(text[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &text[sign + 1..end];
    let labels_ok = domain
        .split(|&b| b == b'.')
        .all(|label| !label.is_empty() && label[0] != b'-');
    let top_level = domain.rsplit(|&b| b == b'.').next().unwrap_or_default();
    let valid = start < sign
        && domain.contains(&b'.')
        && labels_ok
        && top_level.len() >= 2
        && top_level.iter().all(u8::is_ascii_alphabetic);
    valid.then_some((start, end))
}

fn mask_cards(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < text.len() {
        if !text[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let groups = digit_groups(text, at);
        let run_end = groups.last().map_or(at, |group| group.end);
        for window in card_windows(text, &groups) {
            let out = out.get_or_insert_with(|| text.to_vec());
            mask_digits(&mut out[window]);
        }
        at = run_end;
    }
    out
}

/// The groups of digits of the run starting at `start`: digits separated by single spaces or
/// dashes. The run is maximal, so no digit precedes `start` (the caller starts at a non-digit
/// boundary) or follows the last group.
fn digit_groups(text: &[u8], start: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut group_start = start;
    let mut at = start;
    loop {
        while at < text.len() && text[at].is_ascii_digit() {
            at += 1;
        }
        groups.push(group_start..at);
        let separator = matches!(text.get(at), Some(b' ' | b'-'));
        let digit_follows = text.get(at + 1).is_some_and(u8::is_ascii_digit);
        if !(separator && digit_follows) {
            return groups;
        }
        at += 1;
        group_start = at;
    }
}

/// Spans of whole consecutive groups that form a card number, longest first from the left:
/// "order 12 4111 1111 1111 1111" finds the card after the "12".
fn card_windows(text: &[u8], groups: &[std::ops::Range<usize>]) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    let mut first = 0;
    'outer: while first < groups.len() {
        let mut digits = 0;
        let mut candidates = Vec::new();
        for (last, group) in groups.iter().enumerate().skip(first) {
            digits += group.len();
            if digits > *CARD_DIGITS.end() {
                break;
            }
            if CARD_DIGITS.contains(&digits) {
                candidates.push(last);
            }
        }
        for &last in candidates.iter().rev() {
            let span = groups[first].start..groups[last].end;
            if luhn_valid(&text[span.clone()]) {
                windows.push(span);
                first = last + 1;
                continue 'outer;
            }
        }
        first += 1;
    }
    windows
}

/// The Luhn check over the digits of `span` (separators skipped).
fn luhn_valid(span: &[u8]) -> bool {
    let mut sum = 0;
    let digits = span.iter().rev().filter(|b| b.is_ascii_digit());
    for (index, &byte) in digits.enumerate() {
        let mut digit = u32::from(byte - b'0');
        if index % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    sum % 10 == 0
}

/// Replaces every digit but the last [`CARD_DIGITS_VISIBLE`] with `*`, keeping separators.
fn mask_digits(span: &mut [u8]) {
    let digits = span.iter().filter(|b| b.is_ascii_digit()).count();
    let masked = digits.saturating_sub(CARD_DIGITS_VISIBLE);
    for byte in span.iter_mut().filter(|b| b.is_ascii_digit()).take(masked) {
        *byte = b'*';
    }
}

#[cfg(test)]
mod tests;
