use super::*;

#[test]
fn luhn_known_numbers() {
    for valid in [
        "4111111111111111",
        "5500 0000 0000 0004",
        "378282246310005",
        "79927398713",
    ] {
        assert!(luhn_valid(valid.as_bytes()), "{valid}");
    }
    for invalid in ["4111111111111112", "79927398710"] {
        assert!(!luhn_valid(invalid.as_bytes()), "{invalid}");
    }
}

#[test]
fn email_spans() {
    fn span(text: &str) -> Option<&str> {
        let sign = text.find('@').unwrap();
        email_around(text.as_bytes(), sign).map(|(start, end)| &text[start..end])
    }
    assert_eq!(
        span("to: a.b-c_d%e+f@mail.example.com."),
        Some("a.b-c_d%e+f@mail.example.com")
    );
    assert_eq!(span("(.x@y.org)"), Some("x@y.org"));
    assert_eq!(span("x@y..org"), None);
    assert_eq!(span("x@y.c0m"), None);
    assert_eq!(span("@y.org"), None);
}

#[test]
fn json_keys_are_skipped() {
    assert_eq!(
        redact_json(r#"{"a@b.com" : "a@b.com"}"#),
        Ok(Some(r#"{"a@b.com" : "[redacted email]"}"#.to_owned()))
    );
    assert_eq!(redact_json(r#"{"a": 1}"#), Ok(None));
}
