use super::*;

/// A module with the given types (`(params, results)`), function type indices and exports
/// (`name`, kind, index), and optionally one import. Bodies are left out: the check reads
/// only declarations.
fn module(
    types: &[(&[u8], &[u8])],
    functions: &[u8],
    exports: &[(&str, u8, u8)],
    import: bool,
) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    let mut section = |id: u8, body: Vec<u8>| {
        out.push(id);
        // LEB128: an aggregate's export section passes 127 bytes.
        let mut len = body.len();
        while len >= 0x80 {
            out.push(0x80 | (len & 0x7f) as u8);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(&body);
    };
    let mut body = vec![types.len() as u8];
    for (parameters, results) in types {
        body.push(0x60);
        body.push(parameters.len() as u8);
        body.extend_from_slice(parameters);
        body.push(results.len() as u8);
        body.extend_from_slice(results);
    }
    section(1, body);
    if import {
        section(2, vec![1, 3, b'e', b'n', b'v', 1, b'f', 0, 0]);
    }
    let mut body = vec![functions.len() as u8];
    body.extend_from_slice(functions);
    section(3, body);
    let mut body = vec![exports.len() as u8];
    for (name, kind, index) in exports {
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.push(*kind);
        body.push(*index);
    }
    section(7, body);
    out
}

const TYPES: &[(&[u8], &[u8])] = &[
    (&[], &[I32]),
    (&[I32], &[I32]),
    (&[I32, I32], &[I64]),
    (&[], &[I64]),
];

fn plugin(kind_exports: &[&'static str], import: bool) -> Vec<u8> {
    let mut exports = vec![
        ("memory", 2, 0),
        ("ledge_abi_version", 0, 0),
        ("ledge_alloc", 0, 1),
        ("ledge_init", 0, 2),
        ("ledge_panic_message", 0, 4),
        ("__heap_base", 3, 0),
    ];
    exports.extend(kind_exports.iter().map(|name| (*name, 0, 3)));
    module(TYPES, &[0, 1, 2, 2, 3], &exports, import)
}

#[test]
fn accepts_a_well_formed_plugin() {
    assert_eq!(
        check_module(&plugin(&["ledge_filter"], false)),
        Ok(PluginKind::Filter)
    );
    assert_eq!(
        check_module(&plugin(&["ledge_partitioner"], false)),
        Ok(PluginKind::Partitioner)
    );
}

#[test]
fn refuses_what_the_node_refuses() {
    assert_eq!(
        check_module(&plugin(&["ledge_filter"], true)),
        Err("imports `env.f`; a plug-in may import nothing".to_owned())
    );
    assert_eq!(
        check_module(&plugin(&[], false)),
        Err("exports no kind function (`ledge_filter`, `ledge_map`, ...)".to_owned())
    );
    assert_eq!(
        check_module(&plugin(&["ledge_map", "ledge_filter"], false)),
        Err("exports 2 kind functions; exactly one is allowed".to_owned())
    );
    let wrong_alloc = module(
        TYPES,
        &[0, 0, 2, 2],
        &[
            ("memory", 2, 0),
            ("ledge_abi_version", 0, 0),
            ("ledge_alloc", 0, 1),
        ],
        false,
    );
    assert_eq!(
        check_module(&wrong_alloc),
        Err("`ledge_alloc` has the wrong signature".to_owned())
    );
    let no_memory = module(TYPES, &[0], &[("ledge_abi_version", 0, 0)], false);
    assert_eq!(
        check_module(&no_memory),
        Err("exports memories []; exactly one, `memory`, is needed".to_owned())
    );
    assert_eq!(
        check_module(b"\0asm\x01\0\0"),
        Err("the module is truncated".to_owned())
    );
    assert_eq!(
        check_module(b"\0asm\x0d\0\x01\0"),
        Err("not a WebAssembly core module (version 1)".to_owned())
    );
}

/// An aggregate's exports: `ledge_state_schema` is `() -> i64` (function 4's type).
fn stateful(kind_exports: &[&'static str], schema: bool) -> Vec<u8> {
    let mut exports = vec![
        ("memory", 2, 0),
        ("ledge_abi_version", 0, 0),
        ("ledge_alloc", 0, 1),
        ("ledge_init", 0, 2),
    ];
    if schema {
        exports.push(("ledge_state_schema", 0, 4));
    }
    exports.extend(kind_exports.iter().map(|name| (*name, 0, 3)));
    module(TYPES, &[0, 1, 2, 2, 3], &exports, false)
}

#[test]
fn checks_the_stateful_kinds_exports() {
    let aggregate = ["ledge_aggregate", "ledge_state_check"];
    assert_eq!(
        check_module(&stateful(&aggregate, true)),
        Ok(PluginKind::Aggregate)
    );
    let grouped = [
        "ledge_aggregate",
        "ledge_state_check",
        "ledge_group",
        "ledge_merge",
    ];
    assert_eq!(
        check_module(&stateful(&grouped, true)),
        Ok(PluginKind::Aggregate)
    );
    assert_eq!(
        check_module(&stateful(&aggregate, false)),
        Err("`ledge_state_schema` is not exported".to_owned())
    );
    assert_eq!(
        check_module(&stateful(&["ledge_aggregate"], true)),
        Err("`ledge_state_check` is not exported".to_owned())
    );
    assert_eq!(
        check_module(&stateful(&["ledge_join"], false)),
        Ok(PluginKind::Join)
    );
    assert_eq!(
        check_module(&stateful(&["ledge_join", "ledge_group"], false)),
        Err("`ledge_group` is exported, but only an aggregate has it".to_owned())
    );
}
