//! Nothing to import: the check is `tests/untagged_and_flatten.rs`, which
//! reads JSON the way an application that depends on eddy does.
