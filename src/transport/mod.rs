//! Transports that need no broker.

pub mod memory;
