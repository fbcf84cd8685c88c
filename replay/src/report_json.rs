//! Writes a rebuild's report: exactly the bytes of [`Report::to_json`],
//! made faster for big ledgers.
//!
//! A shop's orders are nearly all of a big report (2.4 million orders make
//! 740 MB of JSON), and serde_json spent most of its time there escaping
//! keys it knows and formatting each order's time from scratch. So the
//! orders are written by hand, in chunks, the chunks on several threads
//! and written out in order; everything else (a few kilobytes a shop) goes
//! through serde_json, re-indented to its depth. Tests check the bytes
//! against [`Report::to_json`] and [`Report::to_sorted_json`].

use std::io::{self, Write};

use kedai_engine::Timestamp;
use kedai_projections::orders::OrderSummary;
use serde::Serialize;

use crate::report::{Labels, OrdersOf, Report, ShopReport, sorted_orders};

/// Orders per chunk a thread writes at a time.
const CHUNK: usize = 16_384;

impl Report<OrdersOf<'_>> {
    /// Writes [`Report::to_json`]'s bytes to `out`, the orders on up to
    /// `threads` threads, without holding the whole report in memory.
    pub fn write_json(&self, out: impl Write, threads: usize) -> io::Result<()> {
        self.write_json_in_chunks(out, threads, CHUNK)
    }

    /// [`Report::write_json`] with `chunk` orders to a chunk.
    fn write_json_in_chunks(
        &self,
        mut out: impl Write,
        threads: usize,
        chunk: usize,
    ) -> io::Result<()> {
        let mut orders = OrderWriter {
            threads: threads.max(1),
            chunk: chunk.max(1),
            buffers: vec![Vec::new(); threads.max(1)],
        };
        let mut report = Object::open(&mut out, 0)?;
        report.field("format", &self.format)?;
        report.field("position", &self.position)?;
        let mut shops = Object::open(report.key("shops")?, 1)?;
        for (id, shop) in &self.shops {
            write_shop(shops.key(id)?, shop, &mut orders)?;
        }
        shops.close()?;
        report.field("skipped_events", &self.skipped_events)?;
        report.close()?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// A shop's report at depth 2, its fields in [`ShopReport`]'s order.
fn write_shop(
    out: &mut impl Write,
    shop: &ShopReport<OrdersOf<'_>>,
    orders: &mut OrderWriter,
) -> io::Result<()> {
    let mut report = Object::open(out, 2)?;
    report.field("balances", &shop.balances)?;
    report.field("currency", &shop.currency)?;
    report.field("name", &shop.name)?;
    report.field("order_counts", &shop.order_counts)?;
    orders.write(report.key("orders")?, &shop.orders)?;
    report.field("sales_by_month", &shop.sales_by_month)?;
    report.field("sales_total", &shop.sales_total)?;
    report.field("stock", &shop.stock)?;
    report.field("withdrawals", &shop.withdrawals)?;
    report.close()
}

/// Two spaces per level, as serde_json's pretty printer indents.
fn indent(out: &mut impl Write, depth: usize) -> io::Result<()> {
    const SPACES: &[u8; 16] = b"                ";
    out.write_all(&SPACES[..2 * depth])
}

/// A JSON object being written as serde_json's pretty printer writes one
/// whose braces are at `depth`: `{}` when empty, else each field on a line
/// of its own, one level deeper, and the closing brace on a line of its own.
struct Object<'w, W: Write> {
    out: &'w mut W,
    depth: usize,
    empty: bool,
}

impl<'w, W: Write> Object<'w, W> {
    fn open(out: &'w mut W, depth: usize) -> io::Result<Self> {
        out.write_all(b"{")?;
        Ok(Object {
            out,
            depth,
            empty: true,
        })
    }

    /// Starts the next field, up to its value, which the caller writes.
    fn key(&mut self, name: &str) -> io::Result<&mut W> {
        self.out
            .write_all(if self.empty { b"\n" } else { b",\n" })?;
        self.empty = false;
        indent(self.out, self.depth + 1)?;
        serde_json::to_writer(&mut *self.out, name)?;
        self.out.write_all(b": ")?;
        Ok(self.out)
    }

    /// The next field, its value printed by serde_json and indented to
    /// its depth (a pretty-printed JSON text has no newline inside a
    /// string, so every newline starts a line to indent).
    fn field(&mut self, name: &str, value: &impl Serialize) -> io::Result<()> {
        let depth = self.depth + 1;
        let out = self.key(name)?;
        let text = serde_json::to_vec_pretty(value)?;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.write_all(b"\n")?;
                indent(out, depth)?;
            }
            out.write_all(line)?;
        }
        Ok(())
    }

    fn close(self) -> io::Result<()> {
        if !self.empty {
            self.out.write_all(b"\n")?;
            indent(self.out, self.depth)?;
        }
        self.out.write_all(b"}")
    }
}

/// Writes shops' orders: `chunk` orders to a chunk, up to `threads`
/// chunks at a time, each into a buffer of its own (kept from shop to
/// shop) on a thread of its own.
struct OrderWriter {
    threads: usize,
    chunk: usize,
    buffers: Vec<Vec<u8>>,
}

impl OrderWriter {
    /// A shop's orders by id, at depth 3.
    fn write(&mut self, out: &mut impl Write, orders: &OrdersOf<'_>) -> io::Result<()> {
        let sorted = sorted_orders(orders.0, self.threads);
        if sorted.is_empty() {
            return out.write_all(b"{}");
        }
        out.write_all(b"{\n")?;
        let chunks: Vec<&[&OrderSummary]> = sorted.chunks(self.chunk).collect();
        for (round, batch) in chunks.chunks(self.threads).enumerate() {
            let first = round == 0;
            std::thread::scope(|s| {
                let mut work = batch.iter().zip(self.buffers.iter_mut());
                let (mine, my_buffer) = work.next().expect("a round has a chunk");
                let others: Vec<_> = work
                    .map(|(chunk, buffer)| s.spawn(move || write_chunk(buffer, chunk, false)))
                    .collect();
                write_chunk(my_buffer, mine, first);
                for other in others {
                    other.join().expect("writing orders does not panic");
                }
            });
            for buffer in &self.buffers[..batch.len()] {
                out.write_all(buffer)?;
            }
        }
        out.write_all(b"\n")?;
        indent(out, 3)?;
        out.write_all(b"}")
    }
}

/// Writes `orders` into `buffer` (emptied first) as entries of the orders
/// map at depth 4, each after a separator unless it is the map's first.
fn write_chunk(buffer: &mut Vec<u8>, orders: &[&OrderSummary], starts_map: bool) {
    buffer.clear();
    let mut labels = Labels::quoted();
    let mut times = Times::default();
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut number = itoa::Buffer::new();
    for (i, o) in orders.iter().enumerate() {
        if i > 0 || !starts_map {
            buffer.extend_from_slice(b",\n");
        }
        buffer.extend_from_slice(b"        \"");
        buffer.extend_from_slice(o.order_id.0.hyphenated().encode_lower(&mut id).as_bytes());
        let (payment_status, status) = labels.of(o);
        buffer.extend_from_slice(b"\": {\n          \"awb\": ");
        match o.awb.as_deref() {
            Some(awb) => json_string(buffer, awb),
            None => buffer.extend_from_slice(b"null"),
        }
        buffer.extend_from_slice(b",\n          \"paid\": ");
        buffer.extend_from_slice(number.format(o.paid.0).as_bytes());
        buffer.extend_from_slice(b",\n          \"payment_status\": ");
        buffer.extend_from_slice(payment_status.as_bytes());
        buffer.extend_from_slice(b",\n          \"placed_at\": ");
        times.write(buffer, o.placed_at);
        buffer.extend_from_slice(b",\n          \"refunded\": ");
        buffer.extend_from_slice(number.format(o.refunded.0).as_bytes());
        buffer.extend_from_slice(b",\n          \"remaining\": ");
        buffer.extend_from_slice(number.format(o.remaining.0).as_bytes());
        buffer.extend_from_slice(b",\n          \"status\": ");
        buffer.extend_from_slice(status.as_bytes());
        buffer.extend_from_slice(b",\n          \"total\": ");
        buffer.extend_from_slice(number.format(o.totals.total.0).as_bytes());
        buffer.extend_from_slice(b"\n        }");
    }
}

/// `text` as a JSON string: as is between quotes when nothing in it needs
/// escaping (serde_json escapes only control characters, `"` and `\`),
/// through serde_json otherwise.
fn json_string(buffer: &mut Vec<u8>, text: &str) {
    // Every byte checked, without stopping early, so the loop vectorises.
    let plain = !text.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        buffer.push(b'"');
        buffer.extend_from_slice(text.as_bytes());
        buffer.push(b'"');
    } else {
        serde_json::to_writer(&mut *buffer, text).expect("writing to memory does not fail");
    }
}

/// Microseconds in a day.
const DAY: i64 = 86_400_000_000;

/// Writes times as [`Timestamp`]'s `Display` does
/// (`2025-10-01T00:02:00.000000Z`), working out each day's date once: the
/// orders of a chunk were mostly placed on a few days.
#[derive(Default)]
struct Times {
    /// The last day written (days since 1970) and its date with the `T`.
    day: Option<(i64, String)>,
}

impl Times {
    /// Times from 1970 to 9999 have a date of 10 characters; any other is
    /// written through `Display`.
    fn write(&mut self, buffer: &mut Vec<u8>, t: Timestamp) {
        const END: i64 = 253_402_300_800_000_000; // 10000-01-01
        if !(0..END).contains(&t.0) {
            json_string(buffer, &t.to_string());
            return;
        }
        let (day, of_day) = (t.0 / DAY, t.0 % DAY);
        let date = match &self.day {
            Some((d, date)) if *d == day => date,
            _ => {
                let text = Timestamp(day * DAY).to_string();
                let date = text[..text.find('T').expect("an RFC 3339 time") + 1].to_owned();
                &self.day.insert((day, date)).1
            }
        };
        let (seconds, micros) = (of_day / 1_000_000, of_day % 1_000_000);
        let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        buffer.push(b'"');
        buffer.extend_from_slice(date.as_bytes());
        two_digits(buffer, hours);
        buffer.push(b':');
        two_digits(buffer, minutes);
        buffer.push(b':');
        two_digits(buffer, seconds);
        buffer.push(b'.');
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        buffer.extend_from_slice(&digits);
        buffer.extend_from_slice(b"Z\"");
    }
}

fn two_digits(buffer: &mut Vec<u8>, n: i64) {
    buffer.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use kedai_engine::EventStore;
    use kedai_projections::Projections;
    use kedai_projections::runner::rebuild;

    use super::*;

    /// The report written in chunks on threads is what serde_json writes
    /// of the same report with its orders in a map ([`Report::to_json`],
    /// and [`Report::to_sorted_json`]), byte for byte: on 3 fixture shops
    /// with every order status, payments, refunds and AWBs, for the whole
    /// ledger and for one shop, whatever the chunks and threads.
    #[tokio::test]
    async fn the_report_is_written_as_serde_json_writes_it() {
        let config = kedai_fixtures::FixtureConfig {
            shops: 3,
            orders_per_shop: 150,
            days: 40,
            ..Default::default()
        };
        let store = kedai_fixtures::generate_in_memory(&config).await.unwrap();
        let p = rebuild(&*store, Projections::new(), None, |_| {})
            .await
            .unwrap();
        let whole = Report::from_projections(&p, None);
        let orders = whole.shops.values().flat_map(|s| s.orders.values());
        assert!(
            orders.clone().any(|o| o.awb.is_some()),
            "some orders shipped"
        );
        assert!(orders.clone().any(|o| o.refunded > 0), "some refunded");
        let one = p.shops.keys().nth(1).copied();
        for shop in [None, one] {
            let expected = Report::from_projections(&p, shop).to_json();
            assert_eq!(
                Report::from_projections(&p, shop).to_sorted_json(),
                expected
            );
            for (threads, chunk) in [(1, CHUNK), (1, 1), (2, 7), (3, 64), (4, 1000)] {
                let mut written = Vec::new();
                Report::streamed(&p, shop)
                    .write_json_in_chunks(&mut written, threads, chunk)
                    .unwrap();
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    expected,
                    "{threads} {chunk}"
                );
            }
        }
        // No shops at all; shops set up but with no order yet.
        let events = store.read_all(0, 100_000).await.unwrap();
        let first_order = events
            .iter()
            .find(|e| &*e.event_type == "OrderPlaced")
            .unwrap()
            .position;
        let before_orders = rebuild(&*store, Projections::new(), Some(first_order - 1), |_| {})
            .await
            .unwrap();
        assert!(!before_orders.shops.is_empty());
        assert!(before_orders.shops.values().all(|s| s.orders.is_empty()));
        for empty in [Projections::new(), before_orders] {
            let mut written = Vec::new();
            Report::streamed(&empty, None)
                .write_json(&mut written, 2)
                .unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                Report::from_projections(&empty, None).to_json()
            );
        }
    }

    fn time(t: Timestamp) -> String {
        let mut buffer = Vec::new();
        Times::default().write(&mut buffer, t);
        String::from_utf8(buffer).unwrap()
    }

    #[test]
    fn times_are_written_as_display_writes_them() {
        let mut times = Times::default();
        let mut buffer = Vec::new();
        let samples = [
            0,
            1,
            999_999,
            DAY - 1,
            DAY,
            1_759_276_920_000_000,
            1_759_276_920_123_456,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            -1,
            -DAY,
            i64::MIN,
            i64::MAX,
        ];
        for t in samples {
            let expected = serde_json::to_string(&Timestamp(t).to_string()).unwrap();
            assert_eq!(time(Timestamp(t)), expected, "{t}");
            // The same, through a writer that has seen other days.
            buffer.clear();
            times.write(&mut buffer, Timestamp(t));
            assert_eq!(String::from_utf8(buffer.clone()).unwrap(), expected, "{t}");
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "JNE001",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "\u{1}",
            "ü€😀",
            "\u{7f}",
        ] {
            let mut buffer = Vec::new();
            json_string(&mut buffer, text);
            assert_eq!(
                String::from_utf8(buffer).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }
}
