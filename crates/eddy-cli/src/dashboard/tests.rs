//! In-process tests of the dashboard API on both engines.
