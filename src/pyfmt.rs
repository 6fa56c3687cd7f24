//! Python's way of writing a float's exponent, shared by everything that prints numbers as
//! Python would (tensor printing, checkpoint file names, metrics.csv).

/// Rewrites the exponent of Rust's scientific text (`1.5e-7`, `2e16`) as Python writes it:
/// a sign and at least two digits (`1.5e-07`, `2e+16`). Text without an exponent is unchanged.
pub fn exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((mantissa, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}
