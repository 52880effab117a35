//! What a response or a failed request means for the message: done, retry, dead-letter.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::config::redact_url;
use super::error::DeliveryError;
use crate::handler::HandlerError;

/// How many bytes of a response body an error message quotes.
pub(crate) const EXCERPT_BYTES: usize = 200;

/// The parts of a response that decide its outcome.
pub(crate) struct Response<'a> {
    pub(crate) status: StatusCode,
    /// The raw `Retry-After` header, if any.
    pub(crate) retry_after: Option<&'a [u8]>,
    /// The raw `Location` header, if any (named in the error for a redirect).
    pub(crate) location: Option<&'a [u8]>,
    /// The start of the body; only the first [`EXCERPT_BYTES`] are quoted.
    pub(crate) body: &'a [u8],
}

/// Decides a response's outcome: 2xx is success; 408, 425, 429 and 5xx are transient
/// (429 and 503 with their `Retry-After`, clamped to `max_retry_after`); other 4xx,
/// 1xx and 3xx (redirects are not followed) are permanent. `target` is the method and
/// redacted URL; `now` is the clock for an HTTP-date `Retry-After`.
pub(crate) fn classify(
    target: &str,
    response: &Response<'_>,
    now: SystemTime,
    max_retry_after: Duration,
) -> Result<(), HandlerError> {
    let status = response.status;
    let line = status_line(status);
    match status.as_u16() {
        200..=299 => Ok(()),
        408 | 425 | 429 | 500..=599 => {
            let detail = format!("{line}{}", excerpt(response.body));
            let err = HandlerError::transient(DeliveryError::new(target, detail));
            let delay = match status.as_u16() {
                429 | 503 => response
                    .retry_after
                    .and_then(|value| retry_after(value, now, max_retry_after)),
                _ => None,
            };
            Err(match delay {
                Some(delay) => err.with_retry_after(delay),
                None => err,
            })
        }
        300..=399 => {
            let to = response
                .location
                .map(|l| format!(" to {}", shown_location(l)))
                .unwrap_or_default();
            let detail =
                format!("{line}: redirect{to} not followed; point the URL at the final location");
            Err(HandlerError::permanent(DeliveryError::new(target, detail)))
        }
        100..=199 => {
            let detail = format!("{line}: unexpected informational response");
            Err(HandlerError::permanent(DeliveryError::new(target, detail)))
        }
        _ => {
            let detail = format!("{line}{}", excerpt(response.body));
            Err(HandlerError::permanent(DeliveryError::new(target, detail)))
        }
    }
}

/// Decides the outcome of a request that got no response. Timeouts, connection and body
/// errors may clear up, so they are transient; a request the client could not even build
/// would fail the same way every time.
pub(crate) fn classify_failure(target: &str, err: reqwest::Error) -> HandlerError {
    let detail = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_body() {
        "sending the body failed"
    } else if err.is_builder() {
        return HandlerError::permanent(DeliveryError::from_client(
            target,
            "cannot build the request",
            err,
        ));
    } else {
        "request failed"
    };
    HandlerError::transient(DeliveryError::from_client(target, detail, err))
}

/// A `Location` for an error message: an absolute URL without user info, a relative
/// one as is, cut to [`EXCERPT_BYTES`].
fn shown_location(location: &[u8]) -> String {
    let text = String::from_utf8_lossy(&location[..location.len().min(EXCERPT_BYTES)]);
    if reqwest::Url::parse(&text).is_ok() {
        redact_url(&text)
    } else if text.contains('@') {
        // A network-path reference (`//user:pw@host/`) may carry user info.
        "<relative location with user info>".to_owned()
    } else {
        text.into_owned()
    }
}

/// `HTTP 404 Not Found`.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// `: <first 200 bytes, lossy UTF-8>…`, or nothing for an empty body.
fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(EXCERPT_BYTES)];
    let text = String::from_utf8_lossy(cut);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let more = if body.len() > EXCERPT_BYTES {
        "…"
    } else {
        ""
    };
    format!(": {text}{more}")
}

/// A `Retry-After` value (delta-seconds or HTTP-date) as a delay from `now`, at most
/// `max`. A date in the past means "now"; anything unparseable is ignored.
pub(crate) fn retry_after(value: &[u8], now: SystemTime, max: Duration) -> Option<Duration> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a very long time".
        value.parse().map(Duration::from_secs).unwrap_or(max)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(max))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
