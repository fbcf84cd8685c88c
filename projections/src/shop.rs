//! What a shop's projections share: its name, currency, time zone and
//! settings, and the names of its warehouses and products (so that lists
//! and histories read like the seller's own words).
//!
//! Reports are in the shop's time zone: a fixed offset from UTC
//! (Indonesia and Malaysia keep no daylight saving time), Asia/Jakarta
//! (UTC+7) until the shop says otherwise.

use std::cell::Cell;
use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike};
use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::events::ShopSettings;
use kedai_engine::domain::ids::{ProductId, Sku, WarehouseId};
use kedai_engine::domain::money::Currency;
use serde::{Deserialize, Serialize};

use crate::At;

/// Asia/Jakarta, the default.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 7 * 60;

/// A SKU's names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMeta {
    pub product_id: Option<ProductId>,
    pub product_name: String,
    pub category: Option<String>,
    pub variation: String,
}

/// The shop's own facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopMeta {
    pub name: String,
    pub currency: Option<Currency>,
    pub time_zone: String,
    pub utc_offset_minutes: i32,
    pub settings: Option<ShopSettings>,
    pub warehouses: BTreeMap<WarehouseId, String>,
    pub default_warehouse: Option<WarehouseId>,
    pub skus: BTreeMap<Sku, SkuMeta>,
}

impl Default for ShopMeta {
    fn default() -> Self {
        ShopMeta {
            name: String::new(),
            currency: None,
            time_zone: "Asia/Jakarta".into(),
            utc_offset_minutes: DEFAULT_UTC_OFFSET_MINUTES,
            settings: None,
            warehouses: BTreeMap::new(),
            default_warehouse: None,
            skus: BTreeMap::new(),
        }
    }
}

impl ShopMeta {
    pub fn apply(&mut self, _at: At<'_>, event: &DomainEvent) {
        match event {
            DomainEvent::ShopCreated(e) => {
                self.name = e.name.clone();
                self.currency = Some(e.currency);
                self.time_zone = e.time_zone.clone();
                self.utc_offset_minutes = e.utc_offset_minutes;
                self.settings = Some(e.settings.clone());
            }
            DomainEvent::ShopSettingsChanged(e) => self.settings = Some(e.settings.clone()),
            DomainEvent::WarehouseAdded(e) => {
                self.warehouses.insert(e.warehouse_id, e.name.clone());
            }
            DomainEvent::DefaultWarehouseSet(e) => self.default_warehouse = Some(e.warehouse_id),
            DomainEvent::ProductCreated(e) => {
                for v in &e.variations {
                    self.skus.insert(
                        v.sku.clone(),
                        SkuMeta {
                            product_id: Some(e.product_id),
                            product_name: e.name.clone(),
                            category: e.category.clone(),
                            variation: v.label(),
                        },
                    );
                }
            }
            DomainEvent::VariationAdded(e) => {
                let product = self
                    .skus
                    .values()
                    .find(|m| m.product_id == Some(e.product_id))
                    .cloned()
                    .unwrap_or_default();
                self.skus.insert(
                    e.variation.sku.clone(),
                    SkuMeta {
                        variation: e.variation.label(),
                        ..product
                    },
                );
            }
            _ => {}
        }
    }

    pub fn warehouse_name(&self, id: WarehouseId) -> String {
        self.warehouses
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Stock at or below this is low.
    pub fn low_stock_threshold(&self) -> i64 {
        self.settings.as_ref().map_or(5, |s| s.low_stock_threshold)
    }

    /// The local date and time of a moment, in the shop's time zone.
    pub fn local(&self, t: Timestamp) -> chrono::NaiveDateTime {
        local(t, self.utc_offset_minutes)
    }

    pub fn local_date(&self, t: Timestamp) -> NaiveDate {
        local_date_hour(t, self.utc_offset_minutes).0
    }

    pub fn local_hour(&self, t: Timestamp) -> u32 {
        local_date_hour(t, self.utc_offset_minutes).1
    }
}

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// The local date and hour of a moment, as [`local`] gives them, by
/// arithmetic on the microseconds (analytics asks for them for most
/// events, and building a date and time first cost more than the rest of
/// their work); through [`local`] for moments out of chrono's range.
pub fn local_date_hour(t: Timestamp, utc_offset_minutes: i32) -> (NaiveDate, u32) {
    /// Days from 0001-01-01 (day 1 of the era) to 1970-01-01.
    const EPOCH_DAYS_FROM_CE: i64 = 719_163;
    thread_local! {
        /// The last day asked for on this thread and its date: a fold asks
        /// for the same day record after record, and finding a day's date
        /// (its year, month and day) was most of this function's work.
        static LAST_DAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
    }
    let date =
        t.0.checked_add(i64::from(utc_offset_minutes) * 60_000_000)
            .and_then(|micros| {
                let days = micros.div_euclid(DAY_MICROS) + EPOCH_DAYS_FROM_CE;
                let hour = (micros.rem_euclid(DAY_MICROS) / 3_600_000_000) as u32;
                let (last, date) = LAST_DAY.get();
                if last == days {
                    return Some((date, hour));
                }
                let date = NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).ok()?)?;
                LAST_DAY.set((days, date));
                Some((date, hour))
            });
    date.unwrap_or_else(|| {
        let at = local(t, utc_offset_minutes);
        (at.date(), at.hour())
    })
}

/// A moment as local date and time at a fixed offset from UTC. A moment
/// whose local time is out of chrono's range is held at its end (a log
/// may hold any moment: the fold must not stop on one).
pub fn local(t: Timestamp, utc_offset_minutes: i32) -> chrono::NaiveDateTime {
    let offset = chrono::Duration::minutes(i64::from(utc_offset_minutes));
    let edge = match utc_offset_minutes < 0 {
        true => chrono::DateTime::<chrono::Utc>::MIN_UTC,
        false => chrono::DateTime::<chrono::Utc>::MAX_UTC,
    };
    t.to_datetime()
        .checked_add_signed(offset)
        .unwrap_or(edge)
        .naive_utc()
}

/// The first day of a date's month.
pub fn month_of(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("every month has a first day")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn by_chrono(t: i64, offset: i32) -> (NaiveDate, u32) {
        let at = local(Timestamp(t), offset);
        (at.date(), at.hour())
    }

    #[test]
    fn dates_and_hours_by_arithmetic_are_chronos_at_the_edges() {
        for t in [
            0,
            1,
            -1,
            DAY_MICROS,
            DAY_MICROS - 1,
            -DAY_MICROS,
            1_759_276_920_123_456,
        ] {
            for offset in [0, 420, -420, 345, 840, -720] {
                for t in [t - 1, t, t + 1] {
                    assert_eq!(
                        local_date_hour(Timestamp(t), offset),
                        by_chrono(t, offset),
                        "{t} {offset}"
                    );
                }
            }
        }
        // Out of chrono's range, or at its ends: the answer is chrono's
        // (its earliest moment, at the offset), held at the end of its
        // range where the offset would pass it; never a panic.
        let (min, max) = (
            chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_micros(),
            chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_micros(),
        );
        for t in [
            i64::MIN,
            i64::MAX,
            min,
            min + 1,
            max,
            max - 25_200_000_000 + 1,
        ] {
            for offset in [0, 420, -300, -1, 1, 840, -720] {
                assert_eq!(
                    local_date_hour(Timestamp(t), offset),
                    by_chrono(t, offset),
                    "{t} {offset}"
                );
            }
        }
        assert_eq!(
            local(Timestamp(min), -300),
            chrono::DateTime::<chrono::Utc>::MIN_UTC.naive_utc()
        );
        assert_eq!(
            local(Timestamp(max), 420),
            chrono::DateTime::<chrono::Utc>::MAX_UTC.naive_utc()
        );
    }

    proptest! {
        /// Any moment chrono can hold, at any offset of up to a day.
        #[test]
        fn dates_and_hours_by_arithmetic_are_chronos(
            t in -8_000_000_000_000_000_000i64..8_000_000_000_000_000_000,
            offset in -1_440i32..=1_440,
        ) {
            prop_assert_eq!(local_date_hour(Timestamp(t), offset), by_chrono(t, offset));
        }
    }
}
