//! The Steward scenario of `byzscale sim steward`.

pub mod deploy;
