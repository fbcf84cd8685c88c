//! The engine's test world (see `kedai_engine::testkit`).

#![allow(unused_imports)]

pub use kedai_engine::testkit::*;
