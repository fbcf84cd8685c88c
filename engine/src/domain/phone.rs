//! WhatsApp numbers in Indonesia and Malaysia, as buyers write them and as
//! kedai keeps them: digits only, country code first (`6281234567890`,
//! `60123456789`), the form Indoshopster's `phone_number` takes.
//!
//! Accepted forms, with any spaces and dashes between the digits:
//! - Indonesia: `+62 812-3456-7890`, `62 812 3456 7890`, `0812-3456-7890`;
//! - Malaysia: `+60 12-345 6789`, `60 12 345 6789`, `012-345 6789`.
//!
//! Anything else is refused with a sentence saying why: other characters,
//! other country codes, a local number not starting `08` (Indonesian
//! mobiles) or `01` (Malaysian mobiles), a `0` after the country code, or
//! a number too short or too long for its country (Indonesia: 8 to 12
//! digits after `62`; Malaysia: 8 to 10 after `60`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a number belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Country {
    Indonesia,
    Malaysia,
}

impl Country {
    /// The calling code: `62` or `60`.
    pub fn code(self) -> &'static str {
        match self {
            Country::Indonesia => "62",
            Country::Malaysia => "60",
        }
    }

    /// Digits after the country code.
    fn national_digits(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Country::Indonesia => 8..=12,
            Country::Malaysia => 8..=10,
        }
    }
}

/// A normalised number: the country code and the national number, digits
/// only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number in any accepted form (see the module docs).
    pub fn parse(raw: &str) -> Result<PhoneNumber, PhoneError> {
        normalize(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn country(&self) -> Country {
        if self.0.starts_with("62") {
            Country::Indonesia
        } else {
            Country::Malaysia
        }
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is not a number kedai can message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("may hold only digits, spaces, '-' and a leading '+', not {0:?}")]
    Character(char),
    #[error(
        "must start with +62, 62 or 08 (Indonesia), or +60, 60 or 01 (Malaysia); {0:?} does not"
    )]
    Prefix(String),
    #[error("has a 0 after the country code; write +{0} without that 0")]
    ZeroAfterCountryCode(&'static str),
    #[error("has {digits} digits after +{code}; a number there has {min} to {max}")]
    Length {
        code: &'static str,
        digits: usize,
        min: usize,
        max: usize,
    },
}

fn normalize(raw: &str) -> Result<PhoneNumber, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    let (plus, body) = match text.strip_prefix('+') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let mut digits = String::with_capacity(body.len());
    for ch in body.chars() {
        match ch {
            '0'..='9' => digits.push(ch),
            ' ' | '-' => {}
            other => return Err(PhoneError::Character(other)),
        }
    }
    let (country, national) = if let Some(rest) = digits.strip_prefix("62") {
        (Country::Indonesia, rest)
    } else if let Some(rest) = digits.strip_prefix("60") {
        (Country::Malaysia, rest)
    } else if !plus && digits.starts_with("08") {
        (Country::Indonesia, &digits[1..])
    } else if !plus && digits.starts_with("01") {
        (Country::Malaysia, &digits[1..])
    } else {
        return Err(PhoneError::Prefix(text.to_owned()));
    };
    if national.starts_with('0') {
        return Err(PhoneError::ZeroAfterCountryCode(country.code()));
    }
    let range = country.national_digits();
    if !range.contains(&national.len()) {
        return Err(PhoneError::Length {
            code: country.code(),
            digits: national.len(),
            min: *range.start(),
            max: *range.end(),
        });
    }
    Ok(PhoneNumber(format!("{}{national}", country.code())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        match PhoneNumber::parse(raw) {
            Ok(p) => p.0,
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    #[test]
    fn every_accepted_form_gives_the_same_number() {
        for raw in [
            "+62 812-3456-7890",
            "+6281234567890",
            "62 812 3456 7890",
            "6281234567890",
            "0812-3456-7890",
            "081234567890",
            "  0812 3456 7890  ",
            "+ 62 812 3456 7890",
        ] {
            assert_eq!(ok(raw), "6281234567890", "{raw}");
        }
        for raw in [
            "+60 12-345 6789",
            "60123456789",
            "012-345 6789",
            "0123456789",
        ] {
            assert_eq!(ok(raw), "60123456789", "{raw}");
        }
        // Indoshopster's example number.
        assert_eq!(ok("6266324732846"), "6266324732846");
        assert_eq!(
            PhoneNumber::parse("011-2345 6789").unwrap().country(),
            Country::Malaysia
        );
        assert_eq!(
            PhoneNumber::parse("0812 3456 789").unwrap().country(),
            Country::Indonesia
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        assert_eq!(PhoneNumber::parse("   "), Err(PhoneError::Empty));
        assert_eq!(
            PhoneNumber::parse("0812.3456.7890"),
            Err(PhoneError::Character('.'))
        );
        assert_eq!(
            PhoneNumber::parse("(0812) 3456 7890"),
            Err(PhoneError::Character('('))
        );
        assert_eq!(
            PhoneNumber::parse("0812abc"),
            Err(PhoneError::Character('a'))
        );
        assert_eq!(
            PhoneNumber::parse("+62 812+3456"),
            Err(PhoneError::Character('+'))
        );
        for raw in [
            "+1 415 555 0100",
            "65 9123 4567",
            "021-555-1234",
            "81234567890",
            "+0812 3456 7890",
            "44",
        ] {
            assert!(
                matches!(PhoneNumber::parse(raw), Err(PhoneError::Prefix(_))),
                "{raw}: {:?}",
                PhoneNumber::parse(raw)
            );
        }
        assert_eq!(
            PhoneNumber::parse("+62 0812 3456 7890"),
            Err(PhoneError::ZeroAfterCountryCode("62"))
        );
        assert!(matches!(
            PhoneNumber::parse("0812-345"),
            Err(PhoneError::Length { digits: 6, .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("62 812 3456 7890 123"),
            Err(PhoneError::Length { digits: 14, .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("012-345 6789 012"),
            Err(PhoneError::Length {
                code: "60",
                digits: 12,
                ..
            })
        ));
        let text = PhoneNumber::parse("+1 415").unwrap_err().to_string();
        assert!(text.contains("+62") && text.contains("01"), "{text}");
    }

    fn separated(digits: String, seps: Vec<u8>) -> String {
        let mut out = String::new();
        for (i, d) in digits.chars().enumerate() {
            out.push(d);
            match seps.get(i).copied().unwrap_or(0) % 4 {
                1 => out.push(' '),
                2 => out.push('-'),
                _ => {}
            }
        }
        out
    }

    proptest! {
        /// Every form of a valid number normalises to the same digits,
        /// and a normalised number is its own normal form.
        #[test]
        fn the_forms_of_a_number_agree(
            indonesia in any::<bool>(),
            first in 1u8..=9,
            rest in "[0-9]{7,11}",
            seps in prop::collection::vec(any::<u8>(), 16),
        ) {
            let (code, lead, max) = if indonesia { ("62", 8u8, 12) } else { ("60", 1u8, 10) };
            let national = format!("{first}{rest}");
            prop_assume!(national.len() <= max);
            let normal = format!("{code}{national}");
            prop_assert_eq!(ok(&normal), normal.clone());
            prop_assert_eq!(ok(&format!("+{}", separated(normal.clone(), seps.clone()))), normal.clone());
            prop_assert_eq!(ok(&separated(normal.clone(), seps.clone())), normal.clone());
            if first == lead {
                prop_assert_eq!(ok(&separated(format!("0{national}"), seps)), normal);
            }
        }

        /// Whatever is accepted is digits only, 62 or 60 first, with a
        /// length its country allows; parsing it again changes nothing.
        #[test]
        fn what_is_accepted_is_normal(raw in "[+]?[0-9 \\-]{0,20}") {
            if let Ok(p) = PhoneNumber::parse(&raw) {
                let s = p.as_str();
                prop_assert!(s.chars().all(|c| c.is_ascii_digit()));
                prop_assert!(s.starts_with("62") || s.starts_with("60"));
                prop_assert!((10..=14).contains(&s.len()));
                prop_assert_eq!(PhoneNumber::parse(s), Ok(p.clone()));
            }
        }
    }
}
