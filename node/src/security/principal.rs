//! Kafka principals, and the mapping from a client certificate's subject to a principal as
//! Kafka's `ssl.principal.mapping.rules` does it (KIP-371).
//!
//! Three pieces, all pure (no IO, no clock):
//! - [`KafkaPrincipal`]: `principal_type` and `name`, written `User:alice` (Kafka's
//!   `KafkaPrincipal.toString` and `SecurityUtils.parseKafkaPrincipal`).
//! - [`subject_dn_rfc2253`]: the certificate's subject in the RFC 2253 form Java's
//!   `X500Principal.getName()` prints, which is the string Kafka's rules are written against.
//! - [`PrincipalMappingRules`]: Kafka's rule list (`RULE:pattern/replacement/[LU]`, `DEFAULT`;
//!   first match wins; no match is an error), parsed with Kafka's own splitting grammar.
//!
//! # Regular expressions
//!
//! Kafka compiles each rule's pattern with `java.util.regex`; Ledge compiles it with the
//! `regex` crate, which runs in time linear in the input (no backtracking) and picks among
//! alternatives in the same leftmost-first order as Java, so capture groups come out the same.
//! Supported: literals and escapes of any punctuation (`\/`, `\,`, `\.`), classes (`[^,]`,
//! `[a-zA-Z0-9.]`), `.`, `\d` `\w` `\s` `\b`, greedy and lazy repetition (`*` `+` `?` `{n,m}`
//! and `*?` ...), `^` `$`, alternation, numbered groups `( )`, named groups `(?<name> )`,
//! non-capturing groups `(?: )` and inline flags `(?i)` `(?x)` `(?s)` `(?m)`. A rule whose
//! pattern uses what the `regex` crate does not have is refused when the rules are parsed
//! ([`RulesParseError::InvalidPattern`]): back references `\1`, look-around `(?=` `(?!`
//! `(?<=` `(?<!`, possessive `*+` and atomic `(?>` groups, `\Q...\E` quoting, `\h` and
//! Java's `\p{javaLowerCase}` classes. Differences on patterns both accept (none matter for
//! ASCII distinguished names without line breaks): `\d` `\w` `\s` `\b` are Unicode-aware here
//! and ASCII-only in Java; `.` excludes only `\n` here and also `\r`, U+0085, U+2028, U+2029
//! in Java; `$` matches only at the very end here and also before a final line terminator in
//! Java.
//!
//! The replacement follows Java's `Matcher.replaceAll` after Kafka's own rewriting of
//! references to missing groups into literals (`$1` ... `$n`, `${name}`, `\` escapes the next
//! character), including the quirks of that rewriting (see [`PrincipalMappingRules`]). Kafka
//! accepts a rule whose replacement Java cannot expand (`$`, a trailing `\`, `${missing}`)
//! and then fails every authentication the rule matches; Ledge refuses such a rule when the
//! rules are parsed ([`RulesParseError::InvalidReplacement`]), since its failure does not
//! depend on the name.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::x509::{AttributeTypeAndValue, RelativeDistinguishedName};

#[cfg(test)]
mod tests;

/// Kafka's principal type for users (`KafkaPrincipal.USER_TYPE`).
pub const USER_TYPE: &str = "User";

/// A Kafka principal: who a connection is, as ACLs and `super_users` name it (`User:alice`).
///
/// Equality compares type and name, case-sensitively, as Kafka's `KafkaPrincipal.equals`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    principal_type: Cow<'static, str>,
    name: Cow<'static, str>,
}

impl KafkaPrincipal {
    /// The principal of a connection that did not authenticate: `User:ANONYMOUS`.
    pub const ANONYMOUS: Self = Self {
        principal_type: Cow::Borrowed(USER_TYPE),
        name: Cow::Borrowed("ANONYMOUS"),
    };

    /// A principal of any type.
    pub fn new(principal_type: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            principal_type: Cow::Owned(principal_type.into()),
            name: Cow::Owned(name.into()),
        }
    }

    /// A `User:` principal, as Kafka builds from a certificate or a SASL username.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            principal_type: Cow::Borrowed(USER_TYPE),
            name: Cow::Owned(name.into()),
        }
    }

    /// The type, `User` for every principal Kafka's and Ledge's authenticators build.
    pub fn principal_type(&self) -> &str {
        &self.principal_type
    }

    /// The name, which may contain `:`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Kafka's string form, `type:name` (`KafkaPrincipal.toString`).
impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// Why a string is not a principal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalParseError {
    /// No `:` between type and name (Kafka's `SecurityUtils.parseKafkaPrincipal` message).
    #[error("expected a string in format principalType:principalName but got `{input}`")]
    MissingSeparator {
        /// The string as given.
        input: String,
    },
}

/// Kafka's `SecurityUtils.parseKafkaPrincipal`: split at the first `:`; the name keeps any
/// further `:`, and either side may be empty (`User:` is a principal with an empty name).
impl FromStr for KafkaPrincipal {
    type Err = PrincipalParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.split_once(':') {
            Some((principal_type, name)) => Ok(Self::new(principal_type, name)),
            None => Err(PrincipalParseError::MissingSeparator {
                input: input.to_owned(),
            }),
        }
    }
}

/// Kafka's default for `ssl.principal.mapping.rules`: the whole distinguished name is the name.
pub const PRINCIPAL_MAPPING_RULES_DEFAULT: &str = "DEFAULT";

/// Default for [`PrincipalMappingLimits::rules_length_max_bytes`]: 16 KiB, room for hundreds
/// of typical rules (Kafka's examples are 30 to 80 bytes each).
pub const RULES_LENGTH_MAX_BYTES_DEFAULT: usize = 16 * 1024;
/// Default for [`PrincipalMappingLimits::rule_count_max`]: 64 rules, each tried in turn on
/// every authentication.
pub const RULE_COUNT_MAX_DEFAULT: usize = 64;
/// Default for [`PrincipalMappingLimits::rule_pattern_size_max_bytes`]: 1 MiB per compiled
/// pattern (and as much again for its lazy DFA cache); `[a-zA-Z0-9.]*`-style patterns need a
/// few KiB, `\w{1000}` needs more than this.
pub const RULE_PATTERN_SIZE_MAX_BYTES_DEFAULT: usize = 1024 * 1024;
/// Default for [`PrincipalMappingLimits::distinguished_name_length_max_bytes`]: 16 KiB;
/// certificate subjects are well under 1 KiB in practice.
pub const DISTINGUISHED_NAME_LENGTH_MAX_BYTES_DEFAULT: usize = 16 * 1024;

/// Bounds on the rules and on the names they are applied to. The rules are configuration,
/// but a bound keeps a mistaken value from costing unbounded memory or time on every
/// authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrincipalMappingLimits {
    /// The longest rules string accepted, in bytes (so also the longest single rule).
    pub rules_length_max_bytes: usize,
    /// The most rules (`RULE:` and `DEFAULT` entries; empty entries are not counted).
    pub rule_count_max: usize,
    /// The most memory one rule's compiled pattern may take, in bytes (the `regex` crate's
    /// `size_limit`, also used as its `dfa_size_limit`).
    pub rule_pattern_size_max_bytes: usize,
    /// The longest distinguished name [`PrincipalMappingRules::apply`] maps, in bytes.
    pub distinguished_name_length_max_bytes: usize,
}

impl Default for PrincipalMappingLimits {
    fn default() -> Self {
        Self {
            rules_length_max_bytes: RULES_LENGTH_MAX_BYTES_DEFAULT,
            rule_count_max: RULE_COUNT_MAX_DEFAULT,
            rule_pattern_size_max_bytes: RULE_PATTERN_SIZE_MAX_BYTES_DEFAULT,
            distinguished_name_length_max_bytes: DISTINGUISHED_NAME_LENGTH_MAX_BYTES_DEFAULT,
        }
    }
}

/// Why a rules string was refused. Messages quote the offending rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesParseError {
    /// Longer than [`PrincipalMappingLimits::rules_length_max_bytes`].
    #[error(
        "principal mapping rules are {length_bytes} bytes, more than the limit of {limit_bytes} bytes"
    )]
    TooLong {
        /// The rules string's length.
        length_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// More than [`PrincipalMappingLimits::rule_count_max`] rules.
    #[error("more than {limit} principal mapping rules")]
    TooManyRules {
        /// The limit.
        limit: usize,
    },
    /// Not `DEFAULT` nor `RULE:pattern/replacement/` with an optional `L` or `U` (Kafka:
    /// "Invalid rule: ..., unmatched substring: ...").
    #[error("invalid principal mapping rule `{rule}`, unmatched substring: `{unmatched}`")]
    UnmatchedSubstring {
        /// The rule as split from the rules string.
        rule: String,
        /// What follows the part that fits the grammar.
        unmatched: String,
    },
    /// The pattern does not compile (Java syntax the `regex` crate lacks, or over
    /// [`PrincipalMappingLimits::rule_pattern_size_max_bytes`]).
    #[error("invalid principal mapping rule `{rule}`: pattern: {reason}")]
    InvalidPattern {
        /// The rule as split from the rules string.
        rule: String,
        /// The regex compiler's explanation.
        reason: String,
    },
    /// The replacement cannot be expanded (Java's `appendReplacement` would throw).
    #[error("invalid principal mapping rule `{rule}`: replacement: {reason}")]
    InvalidReplacement {
        /// The rule as split from the rules string.
        rule: String,
        /// Java's message for the same fault.
        reason: String,
    },
}

/// Why a distinguished name has no principal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// No rule matched (Kafka's `NoMatchingRule`, same message).
    #[error("No rules apply to {distinguished_name}, rules {rules}")]
    NoMatchingRule {
        /// The name that nothing matched.
        distinguished_name: String,
        /// The rules, as Kafka prints them (`[RULE:..., DEFAULT]`).
        rules: String,
    },
    /// Longer than [`PrincipalMappingLimits::distinguished_name_length_max_bytes`].
    #[error(
        "distinguished name is {length_bytes} bytes, more than the limit of {limit_bytes} bytes"
    )]
    DistinguishedNameTooLong {
        /// The name's length.
        length_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
}

/// Kafka's `ssl.principal.mapping.rules`, parsed: an ordered list of rules, the first that
/// matches a distinguished name gives the principal's name.
///
/// Grammar (Kafka's `SslPrincipalMapper`, whose splitting regex is used here verbatim with
/// Java's `.`, `\s` and `$` spelled out): rules are separated by `,` (with any spaces or line
/// breaks around it); each is `DEFAULT` (the name is the whole distinguished name) or
/// `RULE:pattern/replacement/` optionally followed by `L` (lower-case the result) or `U`
/// (upper-case it). Inside pattern and replacement a `\` escapes the next character, so `\/`
/// is a `/` that does not end the part; a `,` needs no escape inside a `RULE:` that is
/// otherwise well formed. A line break is not a separator by itself: as in Kafka, a rule
/// followed by a line break without a comma is dropped without an error (its text matches
/// no entry of the splitter). Empty entries are ignored; the empty string is no rules at all
/// (every name then fails). A rule matches when its pattern matches the whole name; the
/// result is then Java's `name.replaceAll(pattern, replacement)`.
///
/// Kafka's rewriting of references to missing groups is kept exactly, with its quirks: a
/// reference to a group past the last (`$3` with two groups) becomes the literal text `$3`;
/// `$12` with one group is group 1 then `2` (Java's own rule); when several references need
/// rewriting, Kafka inserts each escape at its position in the original replacement, so
/// every one after the first lands one character earlier per escape already inserted (the
/// rule is then usually refused as [`RulesParseError::InvalidReplacement`], as it would fail
/// every time in Kafka). That rewriting counts UTF-16 units, as Java does. After an empty
/// match, `replaceAll`'s next find starts one character later where Java steps one UTF-16
/// unit (which differs only around characters outside the Basic Multilingual Plane).
#[derive(Clone, Debug)]
pub struct PrincipalMappingRules {
    rules: Vec<Rule>,
    limits: PrincipalMappingLimits,
}

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Pattern(Box<PatternRule>),
}

#[derive(Clone, Debug)]
struct PatternRule {
    /// The pattern as written, for display.
    pattern_text: String,
    /// The replacement as written, for display.
    replacement_text: String,
    /// The pattern, for `replaceAll`'s successive finds.
    find: Regex,
    /// The pattern anchored at both ends: Java's `Matcher.matches`.
    whole: Regex,
    /// The replacement, after Kafka's rewriting and Java's parsing.
    replacement: Vec<ReplacementPiece>,
    case: CaseConversion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaseConversion {
    Keep,
    Lower,
    Upper,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ReplacementPiece {
    Literal(String),
    Group(usize),
}

/// Java's `.` (no line terminators), `\s` (ASCII white space) and `$` (end, or before a final
/// line terminator: the input is trimmed of `\r` and `\n`, so only the three others remain),
/// spelled for the `regex` crate.
const JAVA_DOT: &str = r"[^\n\r\x{85}\x{2028}\x{2029}]";
const JAVA_SPACE: &str = r"[ \t\n\x0B\x0C\r]";
const JAVA_END: &str = r"(?:\z|[\x{85}\x{2028}\x{2029}]\z)";

/// Kafka's `RULE_PATTERN`:
/// `(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)`.
fn rule_pattern() -> String {
    let dot = JAVA_DOT;
    format!(r"(DEFAULT)|RULE:((\\{dot}|[^\\/])*)/((\\{dot}|[^\\/])*)/([LU]?){dot}*?|({dot}*?)")
}

/// Kafka's `RULE_SPLITTER`: `\s*(RULE_PATTERN)\s*(,\s*|$)`.
static RULE_SPLITTER: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r"{JAVA_SPACE}*({}){JAVA_SPACE}*(,{JAVA_SPACE}*|{JAVA_END})",
        rule_pattern()
    );
    Regex::new(&pattern).expect("Kafka's rule splitter is a valid regex")
});

/// Kafka's `RULE_PARSER` used with `lookingAt`: anchored at the start only.
static RULE_PARSER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"\A(?:{})", rule_pattern())).expect("Kafka's rule parser is a valid regex")
});

impl Default for PrincipalMappingRules {
    /// [`PRINCIPAL_MAPPING_RULES_DEFAULT`]: `DEFAULT`.
    fn default() -> Self {
        Self {
            rules: vec![Rule::Default],
            limits: PrincipalMappingLimits::default(),
        }
    }
}

impl PrincipalMappingRules {
    /// Parses a rules string with the default limits.
    pub fn parse(rules: &str) -> Result<Self, RulesParseError> {
        Self::parse_with_limits(rules, PrincipalMappingLimits::default())
    }

    /// Parses a rules string (Kafka's `SslPrincipalMapper.fromRules`).
    pub fn parse_with_limits(
        rules: &str,
        limits: PrincipalMappingLimits,
    ) -> Result<Self, RulesParseError> {
        if rules.len() > limits.rules_length_max_bytes {
            return Err(RulesParseError::TooLong {
                length_bytes: rules.len(),
                limit_bytes: limits.rules_length_max_bytes,
            });
        }
        let mut parsed = Vec::new();
        for rule in split_rules(rules) {
            let Some(rule) = parse_rule(rule, &limits)? else {
                continue;
            };
            if parsed.len() == limits.rule_count_max {
                return Err(RulesParseError::TooManyRules {
                    limit: limits.rule_count_max,
                });
            }
            parsed.push(rule);
        }
        Ok(Self {
            rules: parsed,
            limits,
        })
    }

    /// The principal's name for a distinguished name (Kafka's `SslPrincipalMapper.getName`):
    /// the first rule that matches gives it.
    pub fn apply(&self, distinguished_name: &str) -> Result<String, MappingError> {
        if distinguished_name.len() > self.limits.distinguished_name_length_max_bytes {
            return Err(MappingError::DistinguishedNameTooLong {
                length_bytes: distinguished_name.len(),
                limit_bytes: self.limits.distinguished_name_length_max_bytes,
            });
        }
        for rule in &self.rules {
            let name = match rule {
                Rule::Default => Some(distinguished_name.to_owned()),
                Rule::Pattern(rule) => rule.apply(distinguished_name),
            };
            if let Some(name) = name {
                return Ok(name);
            }
        }
        Err(MappingError::NoMatchingRule {
            distinguished_name: distinguished_name.to_owned(),
            rules: self.to_string(),
        })
    }

    /// The `User:` principal for a distinguished name, as Kafka's default principal builder
    /// makes it from a client certificate.
    pub fn principal(&self, distinguished_name: &str) -> Result<KafkaPrincipal, MappingError> {
        self.apply(distinguished_name).map(KafkaPrincipal::user)
    }

    /// How many rules there are (empty entries are not rules).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (every name then fails with
    /// [`MappingError::NoMatchingRule`]).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The rules as Kafka prints them in `SslPrincipalMapper.toString` and its `NoMatchingRule`
/// message: `[RULE:pattern/replacement/L, DEFAULT]` (a rule without `L` or `U` has no
/// trailing `/`).
impl fmt::Display for PrincipalMappingRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (index, rule) in self.rules.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            match rule {
                Rule::Default => f.write_str("DEFAULT")?,
                Rule::Pattern(rule) => {
                    write!(f, "RULE:{}/{}", rule.pattern_text, rule.replacement_text)?;
                    match rule.case {
                        CaseConversion::Keep => {}
                        CaseConversion::Lower => f.write_str("/L")?,
                        CaseConversion::Upper => f.write_str("/U")?,
                    }
                }
            }
        }
        f.write_str("]")
    }
}

/// Kafka's `splitRules`: the trimmed string, then group 1 of every successive find of the
/// splitter, with `java.util.regex.Matcher.find`'s stepping (after an empty match the next
/// search starts one character later). Lazy, so that parsing stops at the first bad rule
/// (each find may scan to the end of the string).
fn split_rules(rules: &str) -> impl Iterator<Item = &str> {
    // Java's `String.trim`: every character up to U+0020.
    let rules = rules.trim_matches(|c: char| c <= ' ');
    let mut previous: Option<(usize, usize)> = None;
    std::iter::from_fn(move || {
        let mut from = previous.map_or(0, |(_, end)| end);
        if let Some((start, end)) = previous
            && start == end
        {
            from += rules[from..].chars().next()?.len_utf8();
        }
        let captures = RULE_SPLITTER.captures_at(rules, from)?;
        let whole = captures.get(0)?;
        previous = Some((whole.start(), whole.end()));
        Some(captures.get(1).map_or("", |rule| rule.as_str()))
    })
}

/// Kafka's `parseRules` for one entry: `None` for an empty entry.
fn parse_rule(
    rule: &str,
    limits: &PrincipalMappingLimits,
) -> Result<Option<Rule>, RulesParseError> {
    let Some(captures) = RULE_PARSER.captures(rule) else {
        // Unreachable: the last alternative matches the empty string. Kept as Kafka's
        // "Invalid rule" rather than a panic.
        return Err(RulesParseError::UnmatchedSubstring {
            rule: rule.to_owned(),
            unmatched: rule.to_owned(),
        });
    };
    let end = captures.get(0).map_or(0, |whole| whole.end());
    if end != rule.len() {
        return Err(RulesParseError::UnmatchedSubstring {
            rule: rule.to_owned(),
            unmatched: rule[end..].to_owned(),
        });
    }
    if captures.get(1).is_some() {
        return Ok(Some(Rule::Default));
    }
    let Some(pattern) = captures.get(2) else {
        return Ok(None);
    };
    let replacement = captures
        .get(4)
        .map_or("", |replacement| replacement.as_str());
    let case = match captures.get(6).map(|case| case.as_str()) {
        Some("L") => CaseConversion::Lower,
        Some("U") => CaseConversion::Upper,
        _ => CaseConversion::Keep,
    };
    let pattern = pattern.as_str();
    let invalid_pattern = |reason: String| RulesParseError::InvalidPattern {
        rule: rule.to_owned(),
        reason,
    };
    let build = |pattern: &str| {
        RegexBuilder::new(pattern)
            .size_limit(limits.rule_pattern_size_max_bytes)
            .dfa_size_limit(limits.rule_pattern_size_max_bytes)
            .build()
            .map_err(|error| invalid_pattern(error.to_string()))
    };
    let find = build(pattern)?;
    // `a*+` is possessive in Java and `(a*)+` in the `regex` crate: refuse rather than
    // match differently.
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|error| invalid_pattern(error.to_string()))?;
    if has_stacked_repetition(&ast) {
        return Err(invalid_pattern(
            "a quantifier directly after another (Java's possessive `*+` `++` `?+` `{n}+`) \
             is not supported"
                .to_owned(),
        ));
    }
    // Anchor the parsed pattern rather than its text, so that a trailing `(?x)` comment or
    // an unbalanced flag group cannot swallow the anchors.
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|error| invalid_pattern(error.to_string()))?;
    let anchored = regex_syntax::hir::Hir::concat(vec![
        regex_syntax::hir::Hir::look(regex_syntax::hir::Look::Start),
        hir,
        regex_syntax::hir::Hir::look(regex_syntax::hir::Look::End),
    ]);
    let whole = build(&anchored.to_string())?;
    let group_count = find.captures_len().saturating_sub(1);
    let group_names: Vec<(usize, &str)> = find
        .capture_names()
        .enumerate()
        .filter_map(|(index, name)| name.map(|name| (index, name)))
        .collect();
    let pieces = escape_literal_back_references(replacement, group_count)
        .and_then(|escaped| parse_replacement(&escaped, group_count, &group_names))
        .map_err(|reason| RulesParseError::InvalidReplacement {
            rule: rule.to_owned(),
            reason,
        })?;
    Ok(Some(Rule::Pattern(Box::new(PatternRule {
        pattern_text: pattern.to_owned(),
        replacement_text: replacement.to_owned(),
        find,
        whole,
        replacement: pieces,
        case,
    }))))
}

/// Whether a repetition applies directly to another repetition (`a*+`, `a{2}+`).
fn has_stacked_repetition(ast: &regex_syntax::ast::Ast) -> bool {
    use regex_syntax::ast::Ast;
    match ast {
        Ast::Repetition(repetition) => {
            matches!(*repetition.ast, Ast::Repetition(_)) || has_stacked_repetition(&repetition.ast)
        }
        Ast::Group(group) => has_stacked_repetition(&group.ast),
        Ast::Alternation(alternation) => alternation.asts.iter().any(has_stacked_repetition),
        Ast::Concat(concat) => concat.asts.iter().any(has_stacked_repetition),
        _ => false,
    }
}

const BACKSLASH: u16 = b'\\' as u16;
const DOLLAR: u16 = b'$' as u16;

fn ascii_digit(unit: u16) -> Option<usize> {
    let digit = unit.checked_sub(u16::from(b'0'))?;
    (digit <= 9).then_some(usize::from(digit))
}

/// Kafka's `Rule.escapeLiteralBackReferences` (taken from Apache NiFi), on UTF-16 units as in
/// Java, with its behaviour when several references need an escape: each `\` is inserted at
/// the reference's index in the original string, not in the string already rewritten.
fn escape_literal_back_references(unescaped: &str, group_count: usize) -> Result<Vec<u16>, String> {
    let original: Vec<u16> = unescaped.encode_utf16().collect();
    if group_count == 0 {
        return Ok(original);
    }
    let mut value = original.clone();
    let mut index = 0;
    // Successive finds of `\$(\d+)` in the original string.
    while index < original.len() {
        if original[index] != DOLLAR
            || original
                .get(index + 1)
                .and_then(|&unit| ascii_digit(unit))
                .is_none()
        {
            index += 1;
            continue;
        }
        let group_start = index + 1;
        let mut group_end = group_start;
        while original
            .get(group_end)
            .and_then(|&unit| ascii_digit(unit))
            .is_some()
        {
            group_end += 1;
        }
        index = group_end;
        let digits = &original[group_start..group_end];
        if digits[0] == u16::from(b'0') {
            continue;
        }
        // `Integer.parseInt`: more than `i32::MAX` throws.
        let mut back_reference: u64 = 0;
        for &digit in digits {
            back_reference = back_reference * 10 + ascii_digit(digit).map_or(0, |d| d as u64);
            if back_reference > i32::MAX as u64 {
                return Err(format!(
                    "For input string: \"{}\"",
                    String::from_utf16_lossy(digits)
                ));
            }
        }
        let group_count = group_count as u64;
        while back_reference > group_count && back_reference >= 10 {
            back_reference /= 10;
        }
        if back_reference > group_count {
            let at = group_start - 1;
            value.insert(at, BACKSLASH);
        }
    }
    Ok(value)
}

/// Java's `Matcher.appendReplacement` parsing of a replacement, done once: literal text and
/// group references, or Java's message for the exception it would throw.
fn parse_replacement(
    replacement: &[u16],
    group_count: usize,
    group_names: &[(usize, &str)],
) -> Result<Vec<ReplacementPiece>, String> {
    let mut pieces = Vec::new();
    let mut literal: Vec<u16> = Vec::new();
    let mut cursor = 0;
    let flush = |literal: &mut Vec<u16>, pieces: &mut Vec<ReplacementPiece>| {
        if !literal.is_empty() {
            pieces.push(ReplacementPiece::Literal(String::from_utf16_lossy(literal)));
            literal.clear();
        }
    };
    while cursor < replacement.len() {
        let unit = replacement[cursor];
        if unit == BACKSLASH {
            cursor += 1;
            let Some(&escaped) = replacement.get(cursor) else {
                return Err("character to be escaped is missing".to_owned());
            };
            literal.push(escaped);
            cursor += 1;
        } else if unit == DOLLAR {
            cursor += 1;
            let Some(&next) = replacement.get(cursor) else {
                return Err("Illegal group reference: group index is missing".to_owned());
            };
            let group = if next == u16::from(b'{') {
                cursor += 1;
                let mut name = String::new();
                let mut last = next;
                while let Some(&unit) = replacement.get(cursor) {
                    last = unit;
                    match u8::try_from(unit) {
                        Ok(byte) if byte.is_ascii_alphanumeric() => {
                            name.push(char::from(byte));
                            cursor += 1;
                        }
                        _ => break,
                    }
                }
                if name.is_empty() {
                    return Err("named capturing group has 0 length name".to_owned());
                }
                if last != u16::from(b'}') {
                    return Err("named capturing group is missing trailing '}'".to_owned());
                }
                if name.as_bytes()[0].is_ascii_digit() {
                    return Err(format!(
                        "capturing group name {{{name}}} starts with digit character"
                    ));
                }
                let Some(&(group, _)) = group_names.iter().find(|(_, known)| *known == name) else {
                    return Err(format!("No group with name {{{name}}}"));
                };
                cursor += 1;
                group
            } else {
                let Some(mut group) = ascii_digit(next) else {
                    return Err("Illegal group reference".to_owned());
                };
                cursor += 1;
                while let Some(digit) = replacement.get(cursor).and_then(|&unit| ascii_digit(unit))
                {
                    let longer = group * 10 + digit;
                    if longer > group_count {
                        break;
                    }
                    group = longer;
                    cursor += 1;
                }
                group
            };
            if group > group_count {
                return Err(format!("No group {group}"));
            }
            flush(&mut literal, &mut pieces);
            pieces.push(ReplacementPiece::Group(group));
        } else {
            literal.push(unit);
            cursor += 1;
        }
    }
    flush(&mut literal, &mut pieces);
    Ok(pieces)
}

impl PatternRule {
    /// Kafka's `Rule.apply`: `None` when the pattern does not match the whole name.
    fn apply(&self, distinguished_name: &str) -> Option<String> {
        if !self.whole.is_match(distinguished_name) {
            return None;
        }
        let replaced = self.replace_all(distinguished_name);
        Some(match self.case {
            CaseConversion::Keep => replaced,
            CaseConversion::Lower => replaced.to_lowercase(),
            CaseConversion::Upper => replaced.to_uppercase(),
        })
    }

    /// Java's `Matcher.replaceAll`: every successive find replaced, with `find`'s stepping
    /// past empty matches.
    fn replace_all(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut appended = 0;
        let mut previous: Option<(usize, usize)> = None;
        loop {
            let mut from = previous.map_or(0, |(_, end)| end);
            if let Some((start, end)) = previous
                && start == end
            {
                match text[from..].chars().next() {
                    Some(c) => from += c.len_utf8(),
                    None => break,
                }
            }
            let Some(captures) = self.find.captures_at(text, from) else {
                break;
            };
            let Some(whole) = captures.get(0) else {
                break;
            };
            out.push_str(&text[appended..whole.start()]);
            for piece in &self.replacement {
                match piece {
                    ReplacementPiece::Literal(literal) => out.push_str(literal),
                    ReplacementPiece::Group(group) => {
                        if let Some(group) = captures.get(*group) {
                            out.push_str(group.as_str());
                        }
                    }
                }
            }
            appended = whole.end();
            previous = Some((whole.start(), whole.end()));
        }
        out.push_str(&text[appended..]);
        out
    }
}

/// Why a certificate's subject could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectDnError {
    /// Not a DER X.509 certificate (or name).
    #[error("not a valid DER X.509 {what}: {reason}")]
    Invalid {
        /// `certificate` or `name`.
        what: &'static str,
        /// The parser's explanation.
        reason: String,
    },
    /// Bytes follow the certificate (or name).
    #[error("{trailing_bytes} bytes follow the DER X.509 {what}")]
    TrailingBytes {
        /// `certificate` or `name`.
        what: &'static str,
        /// How many.
        trailing_bytes: usize,
    },
}

/// The subject of a DER certificate in RFC 2253 form, the same string Java's
/// `X500Principal.getName()` gives (and so Kafka's rules see): see
/// [`distinguished_name_rfc2253`].
pub fn subject_dn_rfc2253(der_certificate: &[u8]) -> Result<String, SubjectDnError> {
    let (rest, certificate) =
        X509Certificate::from_der(der_certificate).map_err(|error| SubjectDnError::Invalid {
            what: "certificate",
            reason: error.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(SubjectDnError::TrailingBytes {
            what: "certificate",
            trailing_bytes: rest.len(),
        });
    }
    Ok(name_rfc2253(certificate.subject()))
}

/// A DER X.501 `Name` in RFC 2253 form as Java's `X500Principal.getName()` prints it:
/// - relative names last-first (RFC 2253 order), joined by `,`; the attributes of a
///   multi-valued one in their DER order, joined by `+`;
/// - attribute types `CN` `C` `L` `ST` `O` `OU` `STREET` `DC` `UID` by keyword, every other
///   (`emailAddress`, `serialNumber`, `title`, ...) as its dotted OID;
/// - string values (PrintableString, T61String, IA5String, GeneralString as ISO-8859-1,
///   BMPString as UTF-16, UTF8String, as current JDKs decode them: checked with Java 25;
///   Java 17 decodes every one of them as UTF-8, which differs for non-ASCII bytes) with `,` `=` `+` `<` `>` `#` `;` `"` `\` escaped by a
///   `\`, NUL written `\00`, and leading and trailing spaces and carriage returns escaped by
///   a `\`; other values (and every value of a dotted-OID type) as `#` and the lower-case hex
///   of the value's DER encoding.
pub fn distinguished_name_rfc2253(der_name: &[u8]) -> Result<String, SubjectDnError> {
    let (rest, name) = X509Name::from_der(der_name).map_err(|error| SubjectDnError::Invalid {
        what: "name",
        reason: error.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(SubjectDnError::TrailingBytes {
            what: "name",
            trailing_bytes: rest.len(),
        });
    }
    Ok(name_rfc2253(&name))
}

fn name_rfc2253(name: &X509Name<'_>) -> String {
    let relative_names: Vec<&RelativeDistinguishedName<'_>> = name.iter().collect();
    let mut out = String::new();
    for (index, relative_name) in relative_names.iter().rev().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (index, attribute) in relative_name.iter().enumerate() {
            if index > 0 {
                out.push('+');
            }
            attribute_rfc2253(attribute, &mut out);
        }
    }
    out
}

/// The attribute types Java names in RFC 2253 output (`AVAKeyword`s marked RFC 2253
/// compliant).
fn rfc2253_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

// Universal primitive tags of the string types Java prints as text.
const TAG_UTF8_STRING: u32 = 12;
const TAG_PRINTABLE_STRING: u32 = 19;
const TAG_T61_STRING: u32 = 20;
const TAG_IA5_STRING: u32 = 22;
const TAG_GENERAL_STRING: u32 = 27;
const TAG_BMP_STRING: u32 = 30;

fn attribute_rfc2253(attribute: &AttributeTypeAndValue<'_>, out: &mut String) {
    let oid = attribute.attr_type().to_id_string();
    let keyword = rfc2253_keyword(&oid);
    out.push_str(keyword.unwrap_or(&oid));
    out.push('=');
    let value = attribute.attr_value();
    let header = &value.header;
    let text = match (keyword, header.is_universal() && header.is_primitive()) {
        (Some(_), true) => decode_string(header.tag().0, value.data),
        _ => None,
    };
    match text {
        Some(text) => escape_value(&text, out),
        None => {
            out.push('#');
            for byte in der_encoding(value) {
                out.push_str(&format!("{byte:02x}"));
            }
        }
    }
}

/// The value's text with Java's charset for its string type; `None` for other types.
fn decode_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        TAG_UTF8_STRING => Some(String::from_utf8_lossy(data).into_owned()),
        TAG_PRINTABLE_STRING | TAG_T61_STRING | TAG_IA5_STRING | TAG_GENERAL_STRING => {
            Some(data.iter().map(|&byte| char::from(byte)).collect())
        }
        TAG_BMP_STRING => {
            let units = data
                .chunks(2)
                .map(|pair| match pair {
                    [high, low] => Ok(u16::from_be_bytes([*high, *low])),
                    _ => Err(()),
                })
                .collect::<Vec<_>>();
            let mut text: String = char::decode_utf16(units.iter().filter_map(|unit| unit.ok()))
                .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            if units.iter().any(|unit| unit.is_err()) {
                text.push(char::REPLACEMENT_CHARACTER);
            }
            Some(text)
        }
        _ => None,
    }
}

/// Java's `AVA.toRFC2253String` escaping of a string value.
fn escape_value(text: &str, out: &mut String) {
    const ESCAPED: &str = ",=+<>#;\"\\";
    let mut escaped: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if ESCAPED.contains(c) {
            escaped.push('\\');
            escaped.push(c);
        } else if c == '\0' {
            escaped.extend(['\\', '0', '0']);
        } else {
            escaped.push(c);
        }
    }
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = escaped.iter().take_while(|c| blank(c)).count();
    let trail = escaped.len() - escaped.iter().rev().take_while(|c| blank(c)).count();
    for (index, c) in escaped.iter().enumerate() {
        if index < lead || index >= trail.max(lead) {
            out.push('\\');
        }
        out.push(*c);
    }
}

/// The value's DER encoding (Java's `DerValue.toByteArray`): identifier, definite length,
/// contents.
fn der_encoding(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Vec<u8> {
    let header = &value.header;
    let mut out = Vec::with_capacity(value.data.len() + 8);
    let class_bits = (header.class() as u8) << 6;
    let constructed_bit = if header.is_constructed() { 0x20 } else { 0 };
    let tag = header.tag().0;
    if tag < 31 {
        out.push(class_bits | constructed_bit | tag as u8);
    } else {
        out.push(class_bits | constructed_bit | 0x1f);
        let mut groups = Vec::new();
        let mut rest = tag;
        loop {
            groups.push((rest & 0x7f) as u8);
            rest >>= 7;
            if rest == 0 {
                break;
            }
        }
        for (index, group) in groups.iter().rev().enumerate() {
            let more = if index + 1 < groups.len() { 0x80 } else { 0 };
            out.push(group | more);
        }
    }
    let length = value.data.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value.data);
    out
}
