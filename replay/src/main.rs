//! `kedai-replay`: the auditor's read-only tool (being built).

fn main() {}
