use super::*;
use proptest::prelude::*;

fn rules(text: &str) -> PrincipalMappingRules {
    match PrincipalMappingRules::parse(text) {
        Ok(rules) => rules,
        Err(error) => panic!("`{text}` should parse: {error}"),
    }
}

// ---- KafkaPrincipal ----

#[test]
fn principal_displays_and_parses_in_kafka_form() {
    let alice = KafkaPrincipal::user("alice");
    assert_eq!(alice.to_string(), "User:alice");
    assert_eq!("User:alice".parse::<KafkaPrincipal>(), Ok(alice));
    // The name keeps every ':' after the first (Kafka splits with limit 2).
    let odd: KafkaPrincipal = "User:CN=a:b,O=c".parse().unwrap();
    assert_eq!(odd.principal_type(), "User");
    assert_eq!(odd.name(), "CN=a:b,O=c");
    assert_eq!(odd.to_string(), "User:CN=a:b,O=c");
    // Either side may be empty, as in Kafka.
    let empty_name: KafkaPrincipal = "User:".parse().unwrap();
    assert_eq!(empty_name.name(), "");
    let group: KafkaPrincipal = "Group:ops".parse().unwrap();
    assert_eq!(group, KafkaPrincipal::new("Group", "ops"));
    assert_ne!(group, KafkaPrincipal::user("ops"));
}

#[test]
fn principal_without_separator_is_refused() {
    for input in ["", "alice", "User"] {
        let error = input.parse::<KafkaPrincipal>().unwrap_err();
        assert_eq!(
            error,
            PrincipalParseError::MissingSeparator {
                input: input.to_owned()
            }
        );
        assert!(error.to_string().contains("principalType:principalName"));
    }
}

#[test]
fn anonymous_is_user_anonymous() {
    assert_eq!(KafkaPrincipal::ANONYMOUS.to_string(), "User:ANONYMOUS");
    assert_eq!(
        KafkaPrincipal::ANONYMOUS,
        "User:ANONYMOUS".parse::<KafkaPrincipal>().unwrap()
    );
    assert_eq!(KafkaPrincipal::ANONYMOUS, KafkaPrincipal::user("ANONYMOUS"));
}

// ---- SslPrincipalMapperTest, ported ----
//
// The expectations below beyond Kafka's own tests were checked against Kafka 4.1.1's
// `SslPrincipalMapper` with `testdata/Check.java` (a replacement Java fails on is thrown by
// Kafka when the rule matches; Ledge refuses it when parsing).

#[test]
fn kafka_valid_rules() {
    for text in [
        "DEFAULT",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
        "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
        "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
        "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
    ] {
        rules(text);
    }
}

#[test]
fn kafka_invalid_rules() {
    for text in [
        "default",
        "DEFAUL",
        "DEFAULT/L",
        "DEFAULT/U",
        "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
        "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
    ] {
        match PrincipalMappingRules::parse(text) {
            Err(RulesParseError::UnmatchedSubstring { .. }) => {}
            other => panic!("`{text}` should be an invalid rule, got {other:?}"),
        }
    }
}

#[test]
fn invalid_rule_error_quotes_the_rule_and_the_rest() {
    let error = PrincipalMappingRules::parse("RULE:^CN=(.*?)$/$1/L/U").unwrap_err();
    assert_eq!(
        error,
        RulesParseError::UnmatchedSubstring {
            rule: "RULE:^CN=(.*?)$/$1/L/U".to_owned(),
            unmatched: "/U".to_owned(),
        }
    );
    assert_eq!(
        error.to_string(),
        "invalid principal mapping rule `RULE:^CN=(.*?)$/$1/L/U`, unmatched substring: `/U`"
    );
    // The bad rule is named even behind good ones.
    let error = PrincipalMappingRules::parse("DEFAULT, DEFAUL").unwrap_err();
    assert_eq!(
        error,
        RulesParseError::UnmatchedSubstring {
            rule: "DEFAUL".to_owned(),
            unmatched: "DEFAUL".to_owned(),
        }
    );
}

#[test]
fn kafka_ssl_principal_mapper() {
    let mapper = rules(
        &[
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
            "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
            "DEFAULT",
        ]
        .join(", "),
    );
    assert_eq!(
        mapper.apply("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(),
        "duke"
    );
    assert_eq!(
        mapper
            .apply("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US")
            .unwrap(),
        "duke@sme"
    );
    assert_eq!(
        mapper.apply("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(),
        "DUKE@SME"
    );
    assert_eq!(
        mapper
            .apply("cN=duke,OU=JavaSoft,O=Sun Microsystems")
            .unwrap(),
        "DUKE"
    );
    assert_eq!(
        mapper.apply("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(),
        "OU=JavaSoft,O=Sun Microsystems,C=US"
    );
    assert_eq!(
        mapper
            .principal("CN=Duke,OU=ServiceUsers,O=Org,C=US")
            .unwrap(),
        KafkaPrincipal::user("duke")
    );
}

/// Kafka's `testRulesSplitting`: how a rules string splits, seen through Kafka's `toString`.
#[test]
fn kafka_rules_splitting() {
    let cases = [
        ("[]", ""),
        ("[DEFAULT]", "DEFAULT"),
        ("[RULE:/]", "RULE://"),
        ("[RULE:/.*]", "RULE:/.*/"),
        ("[RULE:/.*/L]", "RULE:/.*/L"),
        ("[RULE:/, DEFAULT]", "RULE://,DEFAULT"),
        ("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  "),
        (
            "[RULE:   /     , DEFAULT]",
            "  RULE:   /     / ,  DEFAULT  ",
        ),
        (
            "[RULE:  /     /U, DEFAULT]",
            "  RULE:  /     /U   ,DEFAULT  ",
        ),
        (
            "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
            "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
        ),
        // empty rules are ignored
        ("[]", ",   , , ,      , , ,   "),
        ("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,"),
        (
            "[RULE: /   , DEFAULT]",
            ",  , RULE: /   /    ,,,   DEFAULT, ,   ",
        ),
        (
            "[RULE:   /  /U, DEFAULT]",
            "     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,",
        ),
        // escape sequences
        (r"[RULE:\/\\\(\)\n\t/\/\/]", r"RULE:\/\\\(\)\n\t/\/\//"),
        (
            r"[RULE:\**\/+/*/L, RULE:\/*\**/**]",
            r"RULE:\**\/+/*/L,RULE:\/*\**/**/",
        ),
        // rules rule
        (
            r"[RULE:,RULE:,/,RULE:,\//U, RULE:,/RULE:,, RULE:,RULE:,/L,RULE:,/L, RULE:, DEFAULT, /DEFAULT, DEFAULT]",
            r"RULE:,RULE:,/,RULE:,\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, /DEFAULT/,DEFAULT",
        ),
    ];
    for (expected, text) in cases {
        assert_eq!(rules(text).to_string(), expected, "splitting `{text}`");
    }
}

#[test]
fn kafka_comma_with_whitespace() {
    let mapper = rules(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT");
    assert_eq!(
        mapper
            .apply(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
            .unwrap(),
        r"Tkac\, Adam"
    );
}

// ---- Beyond Kafka's tests ----

#[test]
fn rules_split_on_line_breaks_and_tabs_around_commas() {
    let mapper = rules("RULE:^CN=([^,]*),O=a$/$1/L ,\n\tRULE:^CN=([^,]*),.*$/$1/U,\r\nDEFAULT\n");
    assert_eq!(mapper.len(), 3);
    assert_eq!(mapper.apply("CN=Bob,O=a").unwrap(), "bob");
    assert_eq!(mapper.apply("CN=Bob,O=b").unwrap(), "BOB");
    assert_eq!(mapper.apply("O=b").unwrap(), "O=b");
    // A line break alone is not a separator in Kafka's grammar: Kafka's splitter finds no
    // match before it and silently drops the rule before it (checked against Kafka 4.1.1).
    assert_eq!(
        rules("DEFAULT\nRULE:^(.*)$/x$1/").to_string(),
        "[RULE:^(.*)$/x$1]"
    );
    assert_eq!(rules("DEFAULT\nDEFAULT").len(), 1);
}

#[test]
fn first_matching_rule_wins() {
    let mapper = rules("RULE:^CN=([^,]*),.*$/first-$1/, RULE:^CN=([^,]*),O=x$/second-$1/, DEFAULT");
    assert_eq!(mapper.apply("CN=a,O=x").unwrap(), "first-a");
    let mapper = rules("RULE:^CN=([^,]*),O=x$/second-$1/, RULE:^CN=([^,]*),.*$/first-$1/");
    assert_eq!(mapper.apply("CN=a,O=x").unwrap(), "second-a");
    assert_eq!(mapper.apply("CN=a,O=y").unwrap(), "first-a");
}

#[test]
fn pattern_must_match_the_whole_name() {
    // `CN=([^,]*)` finds a match at the start, but does not match all of the name.
    let mapper = rules("RULE:CN=([^,]*)/$1/");
    assert_eq!(mapper.apply("CN=alice").unwrap(), "alice");
    assert!(matches!(
        mapper.apply("CN=alice,O=corp"),
        Err(MappingError::NoMatchingRule { .. })
    ));
}

#[test]
fn no_matching_rule_is_an_error_with_kafkas_message() {
    let mapper = rules("RULE:^CN=(.*)$/$1/L");
    let error = mapper.apply("O=corp").unwrap_err();
    assert_eq!(
        error,
        MappingError::NoMatchingRule {
            distinguished_name: "O=corp".to_owned(),
            rules: "[RULE:^CN=(.*)$/$1/L]".to_owned(),
        }
    );
    assert_eq!(
        error.to_string(),
        "No rules apply to O=corp, rules [RULE:^CN=(.*)$/$1/L]"
    );
    // No rules at all: nothing maps.
    let empty = rules("");
    assert!(empty.is_empty());
    assert!(matches!(
        empty.apply("CN=a"),
        Err(MappingError::NoMatchingRule { .. })
    ));
}

#[test]
fn default_rules_are_kafkas_default() {
    let default = PrincipalMappingRules::default();
    assert_eq!(default.to_string(), "[DEFAULT]");
    assert_eq!(
        rules(PRINCIPAL_MAPPING_RULES_DEFAULT).to_string(),
        default.to_string()
    );
    assert_eq!(
        default.principal("CN=alice,O=corp").unwrap(),
        KafkaPrincipal::user("CN=alice,O=corp")
    );
}

#[test]
fn lower_and_upper_case_the_whole_result() {
    let lower = rules("RULE:^CN=(.*),O=(.*)$/$1-X-$2/L");
    assert_eq!(lower.apply("CN=AbC,O=DeF").unwrap(), "abc-x-def");
    let upper = rules("RULE:^CN=(.*),O=(.*)$/$1-x-$2/U");
    assert_eq!(upper.apply("CN=AbC,O=DeF").unwrap(), "ABC-X-DEF");
    let keep = rules("RULE:^CN=(.*),O=(.*)$/$1-x-$2/");
    assert_eq!(keep.apply("CN=AbC,O=DeF").unwrap(), "AbC-x-DeF");
    // Unicode case mapping, as Java's toUpperCase(Locale.ENGLISH).
    assert_eq!(
        rules("RULE:(.*)/$1/U").apply("CN=straße").unwrap(),
        "CN=STRASSE"
    );
}

#[test]
fn replacement_references_follow_java_and_kafka() {
    // $0 is the whole match.
    assert_eq!(
        rules("RULE:^CN=(.*)$/[$0]/").apply("CN=a").unwrap(),
        "[CN=a]"
    );
    // A reference past the last group is literal text (Kafka's rewriting).
    assert_eq!(
        rules("RULE:^CN=(.*),O=(.*)$/$1@$3/")
            .apply("CN=a,O=b")
            .unwrap(),
        "a@$3"
    );
    // $12 with one group is group 1 then '2' (Java reads digits while the group exists).
    assert_eq!(rules("RULE:^CN=(.*)$/$12/").apply("CN=a").unwrap(), "a2");
    // ... and group 12 when there are twelve groups.
    let twelve = "RULE:^(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)$/$12$1/";
    assert_eq!(rules(twelve).apply("abcdefghijkl").unwrap(), "la");
    // $01 is group 1: Java reads `0`, then `1` since group 01 exists.
    assert_eq!(rules("RULE:^CN=(.*)$/$01/").apply("CN=a").unwrap(), "a");
    // A group that did not take part adds nothing.
    assert_eq!(
        rules("RULE:^CN=(x)?(.*)$/[$1][$2]/").apply("CN=a").unwrap(),
        "[][a]"
    );
    // `\` escapes the next character; `\$1` is the text `$1`.
    assert_eq!(
        rules(r"RULE:^CN=(.*)$/\\\$1=$1/").apply("CN=a").unwrap(),
        r"\$1=a"
    );
    // Named groups.
    assert_eq!(
        rules("RULE:^CN=(?<user>[^,]*),O=(?<org>.*)$/${org}.${user}/")
            .apply("CN=a,O=b")
            .unwrap(),
        "b.a"
    );
    // Without groups Kafka rewrites nothing: `$1` is then Java's "No group 1".
    let error = PrincipalMappingRules::parse("RULE:.*/$1/").unwrap_err();
    assert_eq!(
        error,
        RulesParseError::InvalidReplacement {
            rule: "RULE:.*/$1/".to_owned(),
            reason: "No group 1".to_owned(),
        }
    );
}

#[test]
fn kafkas_rewriting_of_several_missing_references_is_kept() {
    // Kafka inserts each `\` at the reference's index in the original replacement: the
    // second lands one character early, giving `\$\5$6`, which Java then fails on ($6).
    let error = PrincipalMappingRules::parse("RULE:^(a)$/$5$6/").unwrap_err();
    assert_eq!(
        error,
        RulesParseError::InvalidReplacement {
            rule: "RULE:^(a)$/$5$6/".to_owned(),
            reason: "No group 6".to_owned(),
        }
    );
    // With text between them the second escape lands on that text (`\$5x\-$6`), and `$6`
    // stays a reference: Java's "No group 6" again (Kafka 4.1.1 throws the same).
    assert!(matches!(
        PrincipalMappingRules::parse("RULE:^(a)$/$5x-$6/"),
        Err(RulesParseError::InvalidReplacement { reason, .. }) if reason == "No group 6"
    ));
    // One missing reference is rewritten correctly.
    assert_eq!(rules("RULE:^(a)$/$5-$1/").apply("a").unwrap(), "$5-a");
    // Numbers beyond Integer.parseInt fail as in Kafka.
    assert!(matches!(
        PrincipalMappingRules::parse("RULE:^(a)$/$99999999999/"),
        Err(RulesParseError::InvalidReplacement { .. })
    ));
}

#[test]
fn replacements_java_cannot_expand_are_refused_when_parsed() {
    for (text, reason) in [
        (
            "RULE:^(a)$/x$/",
            "Illegal group reference: group index is missing",
        ),
        ("RULE:^(a)$/$x/", "Illegal group reference"),
        ("RULE:^(a)$/${}/", "named capturing group has 0 length name"),
        (
            "RULE:^(a)$/${ab/",
            "named capturing group is missing trailing '}'",
        ),
        (
            "RULE:^(a)$/${1a}/",
            "capturing group name {1a} starts with digit character",
        ),
        ("RULE:^(a)$/${nope}/", "No group with name {nope}"),
    ] {
        match PrincipalMappingRules::parse(text) {
            Err(RulesParseError::InvalidReplacement { rule, reason: got }) => {
                assert_eq!(got, reason, "{text}");
                assert_eq!(rule, text);
            }
            other => panic!("`{text}`: expected an invalid replacement, got {other:?}"),
        }
    }
}

#[test]
fn replace_all_replaces_every_find_as_java_does() {
    // Java: "abc".replaceAll("[a-z]*", "X") is "XX" (the whole, then the empty match at
    // the end).
    assert_eq!(rules("RULE:[a-z]*/X/").apply("abc").unwrap(), "XX");
    // The pattern matches the whole name, but finds stop earlier: Java's "ab".replaceAll
    // ("a|ab", "X") is "Xb" since `b` alone does not match.
    assert_eq!(rules("RULE:a|ab/X/").apply("ab").unwrap(), "Xb");
    // Empty matches step by one character, multi-byte ones included.
    assert_eq!(rules("RULE:.*?/-/").apply("é").unwrap(), "-é-");
}

#[test]
fn escaped_slash_and_comma_in_rules() {
    // `\/` inside the pattern is a literal '/', and `\,` a literal ','.
    let mapper = rules(r"RULE:^CN=([^\/]*)\/(.*)$/$1\/$2/, RULE:^CN=(.*)\,x$/$1/");
    assert_eq!(mapper.len(), 2);
    assert_eq!(mapper.apply("CN=a/b").unwrap(), "a/b");
    assert_eq!(mapper.apply("CN=a,x").unwrap(), "a");
    assert_eq!(
        mapper.to_string(),
        r"[RULE:^CN=([^\/]*)\/(.*)$/$1\/$2, RULE:^CN=(.*)\,x$/$1]"
    );
}

#[test]
fn java_only_pattern_syntax_is_refused_with_the_rule_quoted() {
    for text in [
        r"RULE:^CN=(a)\1$/$1/",
        "RULE:^CN=(?=a)(.*)$/$1/",
        "RULE:^CN=(?!a)(.*)$/$1/",
        "RULE:^CN=(?<=a)(.*)$/$1/",
        "RULE:^CN=(a*+)$/$1/",
        r"RULE:^CN=\Qa.b\E$/x/",
        "RULE:^CN=(.*$/$1/",
    ] {
        match PrincipalMappingRules::parse(text) {
            Err(RulesParseError::InvalidPattern { rule, .. }) => assert_eq!(rule, text),
            other => panic!("`{text}`: expected an invalid pattern, got {other:?}"),
        }
    }
}

#[test]
fn anchoring_survives_extended_mode_comments() {
    // Wrapping the pattern text as `\A(?:...)\z` would put the anchors inside the comment.
    let mapper = rules("RULE:(?x) CN= ([a-z]+) # the user/$1/");
    assert_eq!(mapper.apply("CN=alice").unwrap(), "alice");
    assert!(mapper.apply("CN=alice,O=x").is_err());
}

#[test]
fn limits_are_enforced() {
    let limits = PrincipalMappingLimits {
        rules_length_max_bytes: 40,
        rule_count_max: 2,
        rule_pattern_size_max_bytes: 10_000,
        distinguished_name_length_max_bytes: 10,
    };
    let long = "DEFAULT,".repeat(5) + "DEFAULT";
    assert_eq!(
        PrincipalMappingRules::parse_with_limits(&long, limits).unwrap_err(),
        RulesParseError::TooLong {
            length_bytes: long.len(),
            limit_bytes: 40
        }
    );
    assert_eq!(
        PrincipalMappingRules::parse_with_limits("DEFAULT,DEFAULT,DEFAULT", limits).unwrap_err(),
        RulesParseError::TooManyRules { limit: 2 }
    );
    // Empty entries do not count.
    let two = PrincipalMappingRules::parse_with_limits(",,DEFAULT,,,DEFAULT,,", limits).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two.apply("CN=abcdefg").unwrap(), "CN=abcdefg");
    assert_eq!(
        two.apply("CN=abcdefgh").unwrap_err(),
        MappingError::DistinguishedNameTooLong {
            length_bytes: 11,
            limit_bytes: 10
        }
    );
    // A pattern whose compiled form is over the limit.
    assert!(matches!(
        PrincipalMappingRules::parse_with_limits(r"RULE:\w{50}/x/", limits),
        Err(RulesParseError::InvalidPattern { .. })
    ));
    let defaults = PrincipalMappingLimits::default();
    assert_eq!(
        defaults.rules_length_max_bytes,
        RULES_LENGTH_MAX_BYTES_DEFAULT
    );
    assert_eq!(defaults.rule_count_max, RULE_COUNT_MAX_DEFAULT);
    // A rules string of the maximum default length with many rules still parses.
    let many = vec!["RULE:^CN=([a-z]*),OU=x$/$1/L"; RULE_COUNT_MAX_DEFAULT].join(",");
    assert_eq!(rules(&many).len(), RULE_COUNT_MAX_DEFAULT);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_arbitrary_rules_never_panics(text in "\\PC{0,120}") {
        let _ = PrincipalMappingRules::parse(&text);
    }

    #[test]
    fn parsing_rule_shaped_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("RULE:".to_owned()),
                Just("DEFAULT".to_owned()),
                Just("/".to_owned()),
                Just(",".to_owned()),
                Just("\\".to_owned()),
                Just("$".to_owned()),
                Just("L".to_owned()),
                Just("U".to_owned()),
                "[0-9]{1,3}",
                "[(){}.*?|^$a-z ]{1,4}",
                "\\PC{1,3}",
            ],
            0..16,
        )
    ) {
        let text = parts.concat();
        if let Ok(mapper) = PrincipalMappingRules::parse(&text) {
            let _ = mapper.apply("CN=a,O=b");
            let _ = mapper.to_string();
        }
    }

    #[test]
    fn applying_rules_to_arbitrary_names_never_panics(name in "\\PC{0,200}") {
        let mapper = rules(
            &[
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
                "RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1@$5$2\\$/U",
                "RULE:.*?/-$0-/",
                "RULE:^(?<cn>[^,]*)(,.*)?$/${cn}/",
            ]
            .join(","),
        );
        let _ = mapper.apply(&name);
        let _ = rules("DEFAULT").apply(&name);
    }
}

// ---- Subject names ----

mod dn {
    use rcgen::string::{BmpString, TeletexString, UniversalString};
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    pub(super) fn certificate(entries: Vec<(DnType, DnValue)>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        for (kind, value) in entries {
            name.push(kind, value);
        }
        params.distinguished_name = name;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn utf8(text: &str) -> DnValue {
        DnValue::Utf8String(text.to_owned())
    }

    /// Each case: a label and a self-signed certificate with that subject (no empty
    /// subject: Java refuses a certificate whose issuer is empty).
    pub(super) fn cases() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "simple",
                certificate(vec![
                    (
                        DnType::CountryName,
                        DnValue::PrintableString("US".try_into().unwrap()),
                    ),
                    (DnType::OrganizationName, utf8("corp")),
                    (DnType::OrganizationalUnitName, utf8("eng")),
                    (DnType::CommonName, utf8("alice")),
                ]),
            ),
            (
                "special characters",
                certificate(vec![
                    (DnType::CommonName, utf8("Tkac, Adam")),
                    (DnType::OrganizationName, utf8(r#"a+b=c<d>e#f;g"h\i"#)),
                    (DnType::OrganizationalUnitName, utf8("  lead and trail  ")),
                    (DnType::LocalityName, utf8("#hash")),
                    (DnType::StateOrProvinceName, utf8(" ")),
                ]),
            ),
            (
                "attribute types Java does not name",
                certificate(vec![
                    (
                        DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                        DnValue::Ia5String("example".try_into().unwrap()),
                    ),
                    (DnType::CustomDnType(vec![2, 5, 4, 9]), utf8("1 Main St")),
                    (
                        DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
                        utf8("u42"),
                    ),
                    (
                        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                        DnValue::Ia5String("alice@example.com".try_into().unwrap()),
                    ),
                    (
                        DnType::CustomDnType(vec![2, 5, 4, 5]),
                        DnValue::PrintableString("1234".try_into().unwrap()),
                    ),
                    (DnType::CustomDnType(vec![2, 5, 4, 12]), utf8("Dr, X")),
                    (DnType::CommonName, utf8("alice")),
                ]),
            ),
            (
                "string types",
                certificate(vec![
                    (
                        DnType::CommonName,
                        DnValue::BmpString(BmpString::try_from("Zoë 日本").unwrap()),
                    ),
                    (
                        DnType::OrganizationName,
                        DnValue::TeletexString(TeletexString::try_from("tele").unwrap()),
                    ),
                    (
                        DnType::OrganizationalUnitName,
                        DnValue::UniversalString(UniversalString::try_from("uni").unwrap()),
                    ),
                    (DnType::LocalityName, utf8("Jürgen 𝄞 a\0b")),
                ]),
            ),
        ]
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128);
        let mut out = vec![tag, content.len() as u8];
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, oid), tlv(tag, value.as_bytes())].concat())
    }

    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    const OID_DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
    const OID_UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
    const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];

    /// A DER `Name` rcgen cannot write: repeated `DC`s and a multi-valued relative name
    /// (its attributes in the order given, which DER's SET OF sorting also gives here).
    /// A DER `Name` with values rcgen cannot write: carriage returns at both ends, a
    /// T61String byte above ASCII (ISO-8859-1 in Java), a non-string `CN` value, a
    /// GeneralString and an odd-length BMPString.
    pub(super) fn unusual_values_name() -> Vec<u8> {
        let raw = |oid: &[u8], tag: u8, value: &[u8]| {
            tlv(
                0x31,
                &tlv(0x30, &[tlv(0x06, oid), tlv(tag, value)].concat()),
            )
        };
        tlv(
            0x30,
            &[
                raw(OID_OU, 0x0c, b"\r a \r"),
                raw(OID_OU, 0x14, &[b'c', b'a', b'f', 0xe9]),
                raw(OID_CN, 0x02, &[0x01]),
                raw(OID_OU, 0x1b, b"gen"),
                raw(OID_OU, 0x1e, &[0x00, b'a', 0x00]),
            ]
            .concat(),
        )
    }

    pub(super) fn multi_valued_name() -> Vec<u8> {
        tlv(
            0x30,
            &[
                tlv(0x31, &attribute(OID_DC, 0x16, "com")),
                tlv(0x31, &attribute(OID_DC, 0x16, "example")),
                tlv(0x31, &attribute(OID_OU, 0x0c, "a,b")),
                tlv(
                    0x31,
                    &[
                        attribute(OID_CN, 0x0c, "alice"),
                        attribute(OID_UID, 0x0c, "42"),
                    ]
                    .concat(),
                ),
            ]
            .concat(),
        )
    }
}

/// Expected strings: printed by `X500Principal.getName()` for the same DER
/// (`testdata/Dn.java`, run on OpenJDK 17.0.15 and Temurin 25; both printed these).
#[test]
fn subject_names_are_what_java_prints() {
    let expected = [
        ("simple", "CN=alice,OU=eng,O=corp,C=US"),
        (
            "special characters",
            r#"ST=\ ,L=\#hash,OU=\ \ lead and trail\ \ ,O=a\+b\=c\<d\>e\#f\;g\"h\\i,CN=Tkac\, Adam"#,
        ),
        (
            "attribute types Java does not name",
            "CN=alice,2.5.4.12=#0c0544722c2058,2.5.4.5=#130431323334,\
             1.2.840.113549.1.9.1=#1611616c696365406578616d706c652e636f6d,UID=u42,\
             STREET=1 Main St,DC=example",
        ),
        // Java 25 prints this; Java 17 decodes BMPString values as UTF-8 (garbled:
        // `CN=\00Z\00o...`), fixed in later JDKs.
        (
            "string types",
            r"L=Jürgen 𝄞 a\00b,OU=#1c0c000000750000006e00000069,O=tele,CN=Zoë 日本",
        ),
    ];
    let cases = dn::cases();
    assert_eq!(cases.len(), expected.len());
    for ((name, der), (expected_name, expected_dn)) in cases.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        assert_eq!(subject_dn_rfc2253(der).unwrap(), expected_dn, "{name}");
    }
    assert_eq!(
        distinguished_name_rfc2253(&dn::multi_valued_name()).unwrap(),
        r"CN=alice+UID=42,OU=a\,b,DC=example,DC=com"
    );
    assert_eq!(distinguished_name_rfc2253(&[0x30, 0x00]).unwrap(), "");
}

#[test]
fn subject_name_feeds_the_rules_as_kafka_does() {
    let der = &dn::cases()[1].1;
    let mapper = rules(r"RULE:^.*,CN=((\\, *|\w)+)$/$1/L, DEFAULT");
    let name = subject_dn_rfc2253(der).unwrap();
    assert_eq!(
        mapper.principal(&name).unwrap(),
        KafkaPrincipal::user(r"tkac\, adam")
    );
}

#[test]
fn malformed_certificates_and_names_are_errors() {
    let der = &dn::cases()[0].1;
    assert!(matches!(
        subject_dn_rfc2253(&der[..der.len() - 1]),
        Err(SubjectDnError::Invalid {
            what: "certificate",
            ..
        })
    ));
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(
        subject_dn_rfc2253(&trailing),
        Err(SubjectDnError::TrailingBytes {
            what: "certificate",
            trailing_bytes: 1
        })
    );
    assert!(subject_dn_rfc2253(&[]).is_err());
    assert!(distinguished_name_rfc2253(&[0x30, 0x03, 0x31, 0x01]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_name_reader(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = subject_dn_rfc2253(&bytes);
        let _ = distinguished_name_rfc2253(&bytes);
    }

    #[test]
    fn corrupted_certificates_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut der = dn::cases()[2].1.clone();
        let at = index.index(der.len());
        der[at] = byte;
        let _ = subject_dn_rfc2253(&der);
    }
}
/// Expected: Temurin 25's `X500Principal.getName()` for the same DER (`testdata/Dn.java`).
/// OpenJDK 17 decodes T61String and BMPString bytes as UTF-8 instead and printed
/// `OU=\00a\00,OU=gen,CN=#020101,OU=caf\u{FFFD},...` for the first and fourth.
#[test]
fn unusual_subject_values_are_what_java_prints() {
    assert_eq!(
        distinguished_name_rfc2253(&dn::unusual_values_name()).unwrap(),
        "OU=a\u{FFFD},OU=gen,CN=#020101,OU=caf\u{e9},OU=\\\r\\ a\\ \\\r"
    );
}
