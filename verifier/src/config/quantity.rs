//! Kubernetes resource quantities (`64Mi`, `16Gi`, `1.5G`, `500m`, `1e9`),
//! with exact integer arithmetic, for the migration budgets.
//!
//! KubeVirt sizes a migration with `Quantity.ScaledValue(resource.Giga)`:
//! bytes rounded *up* to a whole number of 10^9 bytes. Floating point would
//! get that rounding wrong at exact multiples, so a quantity is kept as
//! `mantissa x 10^exp10 x 2^exp2` and divided exactly.

use std::{fmt, str::FromStr};

/// A parsed quantity. The original text is kept for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a Kubernetes quantity (a number with an optional suffix such as Ki, Mi, Gi, k, M, G, or an exponent as in 1e9)")]
    Syntax(String),
    #[error("{0:?} has more digits than migverify computes with")]
    TooPrecise(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// More significant digits than this would not fit the exact arithmetic.
const MAX_DIGITS: usize = 30;
/// Exponents beyond this cannot describe a real memory size or bandwidth.
const MAX_EXP10: i32 = 40;

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || QuantityError::Syntax(text.to_string());
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(syntax());
        }
        let (mut exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            exponent => {
                let digits = exponent.strip_prefix(['e', 'E']).ok_or_else(syntax)?;
                let body = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let exp: i32 = digits
                    .parse()
                    .map_err(|_| QuantityError::TooLarge(text.into()))?;
                if exp.abs() > MAX_EXP10 {
                    return Err(QuantityError::TooLarge(text.into()));
                }
                (exp, 0)
            }
        };
        let digits = format!("{whole}{fraction}");
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return Err(QuantityError::TooPrecise(text.into()));
        }
        let mantissa: u128 = if significant.is_empty() {
            0
        } else {
            significant.parse().map_err(|_| syntax())?
        };
        exp10 -= fraction.len() as i32;
        Ok(Quantity {
            text: text.to_string(),
            negative: negative && mantissa != 0,
            mantissa,
            exp10,
            exp2,
        })
    }
}

impl Quantity {
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The value in units of `unit`, rounded up (towards positive
    /// infinity), as Kubernetes' `ScaledValue` and `Value` round.
    /// `None` when it does not fit in an i128.
    pub fn ceil_in_units(&self, unit: u128) -> Option<i128> {
        let pow10 = |e: i32| 10u128.checked_pow(e.unsigned_abs());
        let mut numerator = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let mut denominator = unit.max(1);
        if self.exp10 >= 0 {
            numerator = numerator.checked_mul(pow10(self.exp10)?)?;
        } else {
            denominator = denominator.checked_mul(pow10(self.exp10)?)?;
        }
        let (quotient, remainder) = (numerator / denominator, numerator % denominator);
        let magnitude = i128::try_from(quotient).ok()?;
        Some(match (self.negative, remainder != 0) {
            (false, true) => magnitude.checked_add(1)?,
            (false, false) => magnitude,
            // Towards positive infinity: drop the remainder.
            (true, _) => -magnitude,
        })
    }

    /// The value rounded up to a whole number (Kubernetes' `Value()`).
    pub fn value(&self) -> Option<i128> {
        self.ceil_in_units(1)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn binary_decimal_plain_and_exponent_forms() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("64Mi", 64 << 20),
            ("16Gi", 16 << 30),
            ("1Ki", 1024),
            ("2Ti", 2 << 40),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
            ("1k", 1000),
            ("1M", 1_000_000),
            ("1.5G", 1_500_000_000),
            ("3T", 3_000_000_000_000),
            ("1P", 10i128.pow(15)),
            ("2E", 2 * 10i128.pow(18)),
            ("123", 123),
            ("+7", 7),
            ("1e9", 1_000_000_000),
            ("1E3", 1000),
            ("5e-1", 1),
            ("1.5Gi", 3 << 29),
            ("0.5Ki", 512),
            (".5Ki", 512),
            ("5.", 5),
            ("007", 7),
            ("-3", -3),
        ];
        for (text, bytes) in cases {
            assert_eq!(q(text).value(), Some(*bytes), "{text}");
        }
    }

    #[test]
    fn value_rounds_up_like_kubernetes() {
        assert_eq!(q("500m").value(), Some(1));
        assert_eq!(q("1001m").value(), Some(2));
        assert_eq!(q("1n").value(), Some(1));
        assert_eq!(q("1u").ceil_in_units(1), Some(1));
        assert_eq!(q("-1500m").value(), Some(-1));
    }

    #[test]
    fn scaled_to_giga_rounds_up_as_kubevirt_sizes_migrations() {
        let giga = 1_000_000_000;
        assert_eq!(q("16Gi").ceil_in_units(giga), Some(18)); // 17.18 GB
        assert_eq!(q("1Gi").ceil_in_units(giga), Some(2)); // 1.07 GB
        assert_eq!(q("1G").ceil_in_units(giga), Some(1)); // exact
        assert_eq!(q("1000000001").ceil_in_units(giga), Some(2));
        assert_eq!(q("256Mi").ceil_in_units(giga), Some(1));
        assert_eq!(q("0").ceil_in_units(giga), Some(0));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in [
            "", "Mi", "64 Mi", "64MiB", "64mi", "1.2.3", "1e", "1e+", "0x10", "--1", "1ee3",
            "1Gi2", ".",
        ] {
            assert!(
                matches!(bad.parse::<Quantity>(), Err(QuantityError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "1e99".parse::<Quantity>(),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            "1234567890123456789012345678901".parse::<Quantity>(),
            Err(QuantityError::TooPrecise(_))
        ));
        assert_eq!(q("1e40").value(), None);
        assert_eq!(q("999999Ei").value(), Some(999_999 * (1 << 60)));
    }

    #[test]
    fn zero_and_sign() {
        assert!(q("0Mi").is_zero());
        assert!(!q("-0").is_negative());
        assert!(q("-1Mi").is_negative());
    }
}
