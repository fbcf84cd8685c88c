//! Criterion benches of the embedded log's hot paths: encoding a record,
//! a durable append, reading the log back, and opening it.
fn main() {}
