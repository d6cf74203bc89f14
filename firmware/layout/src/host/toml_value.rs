//! TOML values described for error messages: what a field held when it was not what the
//! layout expects ("found a boolean").

/// "an integer", "a string": a TOML value's type with its article, for messages.
pub(crate) fn a_type(value: &toml::Value) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_take_their_article() {
        assert_eq!(a_type(&toml::Value::Integer(1)), "an integer");
        assert_eq!(a_type(&toml::Value::Boolean(true)), "a boolean");
        assert_eq!(a_type(&toml::Value::Array(Vec::new())), "an array");
    }
}
