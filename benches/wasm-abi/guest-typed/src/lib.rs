//! The filter as a component with the typed WIT interface: the host lowers each record.

use logic::Check;
use std::cell::Cell;

wit_bindgen::generate!({ path: "../wit", world: "typed-filter" });

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

    fn filter(batch: Vec<Rec>) -> Vec<u8> {
        let check = CHECK.get();
        batch
            .iter()
            .map(|r| {
                if check.keep(r.value.as_deref()) {
                    logic::KEEP
                } else {
                    logic::DROP
                }
            })
            .collect()
    }
}

export!(Filter);
