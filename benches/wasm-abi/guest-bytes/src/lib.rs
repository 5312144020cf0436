//! The filter as a component with an opaque `filter: func(batch: list<u8>) -> list<u8>`
//! carrying the same bytes as the core-module ABI.

use logic::Check;
use std::cell::Cell;

wit_bindgen::generate!({ path: "../wit", world: "bytes-filter" });

thread_local! { static CHECK: Cell<Check> = const { Cell::new(Check::Even) }; }

struct Filter;

impl Guest for Filter {
    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        let v = params
            .iter()
            .find(|(k, _)| k == "check")
            .ok_or("missing parameter: check")?;
        CHECK.set(Check::from_param(&v.1).ok_or("check: want even or vip")?);
        Ok(())
    }

    fn filter(batch: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = logic::filter_batch(CHECK.get(), &batch, &mut out) {
            panic!("{e}");
        }
        out
    }
}

export!(Filter);
