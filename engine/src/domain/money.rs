//! Money, rates and quantities: integers only, checked arithmetic.
//!
//! Money is a count of the shop currency's minor unit (`i64`): whole rupiah
//! for IDR, sen for MYR. Rates (a COD fee of 2.8%, a cashback of 25%, an
//! order discount of 2%) are integer basis points. The one rounding rule:
//! when a rate is applied to an amount, the result is rounded half away
//! from zero to the minor unit, once, where the formula produces it
//! ([`BasisPoints::apply`]).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg, Sub};

use serde::{Deserialize, Serialize};

/// An amount of money in the shop currency's minor unit.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn minor(self) -> i64 {
        self.0
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self + other`, held at the ends of `i64` instead of overflowing.
    /// For the projections' sums over many events (a day's sales, a
    /// shop's cashback): a fold must get through whatever the log holds,
    /// where a command's own arithmetic is checked (or panics, below).
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// `self - other`, held at the ends of `i64` (see
    /// [`Money::saturating_add`]).
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// Amounts in kedai stay far below `i64::MAX` minor units (9.2e18): in a
/// command, a sum overflows only through a bug, which should crash loudly
/// (nothing is recorded). Projections sum over many events, and use the
/// saturating forms instead.
impl Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        self.checked_add(other).expect("money overflow")
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        self.checked_sub(other).expect("money overflow")
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.checked_neg().expect("money overflow"))
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rate in basis points: 10,000 is 100%, 280 is 2.8%.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BasisPoints(pub u32);

impl BasisPoints {
    pub const HUNDRED_PERCENT: BasisPoints = BasisPoints(10_000);

    /// A whole percentage (Ngorder's `percentage: 2` is 200 basis points).
    pub fn from_percent(percent: u32) -> BasisPoints {
        BasisPoints(percent.saturating_mul(100))
    }

    /// `amount * rate`, rounded half away from zero to the minor unit.
    pub fn apply(self, amount: Money) -> Money {
        let product = i128::from(amount.0) * i128::from(self.0);
        let (q, r) = (product / 10_000, product % 10_000);
        let rounded = if r.abs() * 2 >= 10_000 {
            q + product.signum()
        } else {
            q
        };
        Money(i64::try_from(rounded).expect("money overflow"))
    }
}

impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.0 / 100, self.0 % 100)
    }
}

/// The currencies kedai's shops trade in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// Indonesian rupiah; the minor unit used is the whole rupiah.
    Idr,
    /// Malaysian ringgit; the minor unit is the sen.
    Myr,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Idr => "IDR",
            Currency::Myr => "MYR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn komship_cod_fee_and_cashback() {
        // DOMAIN.md: 2.8% of 114,000 is 3,192; 25% of 14,000 is 3,500.
        assert_eq!(BasisPoints(280).apply(Money(114_000)), Money(3_192));
        assert_eq!(BasisPoints(2_500).apply(Money(14_000)), Money(3_500));
        // SiCepat: 2.8% of 138,000 is 3,864; 30% of 38,000 is 11,400.
        assert_eq!(BasisPoints(280).apply(Money(138_000)), Money(3_864));
        assert_eq!(BasisPoints(3_000).apply(Money(38_000)), Money(11_400));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(BasisPoints(5_000).apply(Money(1)), Money(1)); // 0.5 -> 1
        assert_eq!(BasisPoints(5_000).apply(Money(-1)), Money(-1)); // -0.5 -> -1
        assert_eq!(BasisPoints(4_999).apply(Money(1)), Money(0)); // 0.4999 -> 0
        assert_eq!(BasisPoints(280).apply(Money(125)), Money(4)); // 3.5 -> 4
        assert_eq!(BasisPoints(200).apply(Money(1_525)), Money(31)); // 30.5 -> 31
    }

    proptest! {
        #[test]
        fn apply_is_within_half_a_unit_of_the_exact_value(amount in -10_000_000_000i64..10_000_000_000, bp in 0u32..=20_000) {
            let got = BasisPoints(bp).apply(Money(amount)).0 as f64;
            let exact = amount as f64 * f64::from(bp) / 10_000.0;
            prop_assert!((got - exact).abs() <= 0.5 + 1e-6);
        }
    }
}
