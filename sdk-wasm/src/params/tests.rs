use super::*;
use crate::testing::encode_params;

fn bind_threshold(params: &[(&str, &str)]) -> Result<(f64, Option<u32>, String), String> {
    let block = encode_params(params);
    let mut params = Params::parse(&block).map_err(|e| e.to_string())?;
    let bound = (|| {
        Ok::<_, InitError>((
            params.required::<f64>("threshold")?,
            params.optional::<u32>("limit")?,
            params.optional::<String>("label")?.unwrap_or_default(),
        ))
    })()
    .map_err(|e| e.to_string())?;
    params
        .finish(&["threshold", "limit", "label"])
        .map_err(|e| e.to_string())?;
    Ok(bound)
}

// Parameters bind by name, in any order; optional ones may be absent.
#[test]
fn binds_by_name() {
    assert_eq!(
        bind_threshold(&[("limit", "5"), ("threshold", "1000.5")]),
        Ok((1000.5, Some(5), String::new()))
    );
    assert_eq!(
        bind_threshold(&[("threshold", "1"), ("label", "vip")]),
        Ok((1.0, None, "vip".to_owned()))
    );
}

// Each way a deployment can be wrong gets a message naming the parameter.
#[test]
fn binding_errors_name_the_parameter() {
    assert_eq!(
        bind_threshold(&[]),
        Err("missing parameter `threshold`".to_owned())
    );
    assert_eq!(
        bind_threshold(&[("threshold", "lots")]),
        Err("parameter `threshold`: invalid float literal".to_owned())
    );
    assert_eq!(
        bind_threshold(&[("threshold", "1"), ("limit", "-1")]),
        Err("parameter `limit`: invalid digit found in string".to_owned())
    );
    assert_eq!(
        bind_threshold(&[("threshold", "1"), ("treshold", "2")]),
        Err(
            "unknown parameter `treshold` (this module takes `threshold`, `limit`, `label`)"
                .to_owned()
        )
    );
    assert_eq!(
        bind_threshold(&[("threshold", "1"), ("threshold", "2")]),
        Err("duplicate parameter `threshold`".to_owned())
    );
    let block = encode_params(&[("anything", "1")]);
    let params = Params::parse(&block).unwrap();
    assert_eq!(
        params.finish(&[]).unwrap_err().message(),
        "unknown parameter `anything` (this module takes no parameters)"
    );
}

// A block that breaks the layout is refused whole, wherever it is cut.
#[test]
fn malformed_blocks_are_refused() {
    let block = encode_params(&[("threshold", "10"), ("limit", "3")]);
    assert!(Params::parse(&block).is_ok());
    for cut in 0..block.len() {
        let error = Params::parse(&block[..cut]).unwrap_err();
        assert!(
            error.message().starts_with("malformed parameter block: "),
            "cut at {cut}: {error}"
        );
    }
    let mut trailing = block.clone();
    trailing.push(0);
    assert_eq!(
        Params::parse(&trailing).unwrap_err().message(),
        "malformed parameter block: 1 bytes after the last parameter"
    );
    let mut huge_count = block.clone();
    huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Params::parse(&huge_count).unwrap_err().message(),
        "malformed parameter block: 4294967295 parameters cannot fit in 33 bytes"
    );
    let mut not_utf8 = encode_params(&[("k", "v")]);
    let last = not_utf8.len() - 1;
    not_utf8[last] = 0xff;
    assert_eq!(
        Params::parse(&not_utf8).unwrap_err().message(),
        "malformed parameter block: parameter 0's value is not UTF-8"
    );
}
