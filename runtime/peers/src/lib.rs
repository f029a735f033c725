//! See benches/predicates.rs.
