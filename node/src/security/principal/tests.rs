use super::*;

#[test]
fn placeholder_compiles() {
    assert!(PrincipalMappingRules::parse("DEFAULT").is_ok());
}
