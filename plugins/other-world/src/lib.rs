//! A **test-only** component that implements the wrong world.
//!
//! It exports `acme:greeter/greeter@1.0.0` (see `wit/world.wit`), not
//! `dualwrite:table-map/map-plugin`, so the tests can prove the host refuses a component
//! built for some other contract and says clearly why, rather than failing later with an
//! obscure linking or call error. It does not use the guest SDK: it is generated straight
//! with `wit-bindgen`. Never deploy it.

wit_bindgen::generate!({
    path: "wit",
    world: "acme:greeter/greeter@1.0.0",
});

/// The greeter.
pub struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("Hello, {name}!")
    }
}

export!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets() {
        assert_eq!(Greeter::greet("world".to_owned()), "Hello, world!");
    }
}
