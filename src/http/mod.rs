//! The built-in HTTP delivery handler: each message becomes one HTTP request.
//!
//! ```no_run
//! use seawall::http::{HttpConfig, HttpHandler};
//!
//! # fn demo() -> Result<(), seawall::http::HttpError> {
//! let mut config = HttpConfig::new("https://orders.internal/ingest");
//! config.header_prefix = Some("x-msg-".to_owned());
//! config.headers.insert("authorization".to_owned(), "Bearer …".to_owned());
//! let handler = HttpHandler::new(config)?;
//! # let _ = handler;
//! # Ok(()) }
//! ```
//!
//! The response decides the outcome: 2xx completes the message; 408, 425, 429, 5xx,
//! timeouts and connection failures are retried, honouring `Retry-After`; any other
//! response dead-letters it with the status and the start of the body. See
//! `docs/http.md` for the settings, the headers sent and TLS.

pub(crate) mod classify;
mod config;
mod error;
mod handler;
mod request;

pub use config::{HttpConfig, TlsConfig};
pub use error::HttpError;
pub use handler::HttpHandler;
