//! The rule for the names a layout gives partitions and networks.

use crate::limits::MAX_NAME_LEN;

/// What is wrong with a partition's or network's name, if anything: names are 1 to
/// [`MAX_NAME_LEN`] bytes of `[a-z0-9-]`.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let fix = "use lowercase letters, digits and '-', like \"data-plane\"";
    if name.is_empty() {
        Some(format!("empty; {fix}"))
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("{} bytes long; at most {MAX_NAME_LEN}", name.len()))
    } else {
        name.chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
            .map(|bad| format!("{bad:?} is not allowed; {fix}"))
    }
}
