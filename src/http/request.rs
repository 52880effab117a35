//! The request headers for one message.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use crate::message::Message;

/// The `Idempotency-Key` request header.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// W3C trace context headers, copied unprefixed.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Headers a message may never set, even unprefixed: they belong to the connection or
/// to the client, and a wrong one breaks framing.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// What every request carries, fixed when the handler is built.
/// No `Debug`: static header values may be secrets.
#[derive(Clone)]
pub(crate) struct HeaderPlan {
    /// Static headers from the config; they win over everything the message brings.
    pub(crate) fixed: HeaderMap,
    /// Prefix for message headers; `None` sends none.
    pub(crate) prefix: Option<String>,
    /// The configured content type; `None` takes the message's.
    pub(crate) content_type: Option<HeaderValue>,
}

impl HeaderPlan {
    /// The headers for `message`. Lowest precedence first: mapped message headers, then
    /// trace context, `Idempotency-Key` and `content-type`, then the static headers.
    pub(crate) fn headers_for(&self, message: &Message) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(prefix) = &self.prefix {
            map_message_headers(prefix, message, &mut headers);
        }
        if let Some(parent) = header_ci(message, "traceparent").filter(|v| is_traceparent(v)) {
            if let Ok(value) = HeaderValue::from_maybe_shared(parent.clone()) {
                headers.insert(TRACEPARENT, value);
            }
            // tracestate means nothing without a valid traceparent.
            let state = header_ci(message, "tracestate")
                .and_then(|v| HeaderValue::from_maybe_shared(v.clone()).ok());
            match state {
                Some(state) => headers.insert(TRACESTATE, state),
                None => headers.remove(TRACESTATE),
            };
        }
        if let Some(key) = message.idempotency_key() {
            headers.insert(IDEMPOTENCY_KEY, idempotency_value(key));
        }
        headers.insert(CONTENT_TYPE, self.content_type_for(message));
        for (name, value) in &self.fixed {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    fn content_type_for(&self, message: &Message) -> HeaderValue {
        if let Some(configured) = &self.content_type {
            return configured.clone();
        }
        header_ci(message, "content-type")
            .and_then(|v| HeaderValue::from_maybe_shared(v.clone()).ok())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"))
    }
}

/// Sends every message header as `<prefix><name>`, skipping what HTTP cannot carry.
fn map_message_headers(prefix: &str, message: &Message, headers: &mut HeaderMap) {
    for (name, value) in message.headers().iter() {
        let full = format!("{prefix}{name}");
        let Ok(header_name) = HeaderName::from_bytes(full.as_bytes()) else {
            tracing::debug!(header = %full, "message header skipped: not a valid HTTP header name");
            continue;
        };
        if RESERVED.contains(&header_name.as_str()) {
            tracing::debug!(header = %full, "message header skipped: reserved for the connection");
            continue;
        }
        match HeaderValue::from_maybe_shared(value.clone()) {
            Ok(header_value) => {
                headers.append(header_name, header_value);
            }
            Err(_) => {
                tracing::debug!(header = %full, "message header skipped: value not valid in HTTP");
            }
        }
    }
}

/// The first value of a message header, matching the name case-insensitively.
fn header_ci<'a>(message: &'a Message, name: &str) -> Option<&'a Bytes> {
    message
        .headers()
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The key as is when it is printable ASCII, else its bytes in lowercase hex, so no key
/// is ever altered or merged with another.
pub(crate) fn idempotency_value(key: &[u8]) -> HeaderValue {
    let printable = !key.is_empty() && key.iter().all(|b| (0x21..=0x7e).contains(b));
    if printable {
        if let Ok(value) = HeaderValue::from_bytes(key) {
            return value;
        }
    }
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).unwrap_or(HeaderValue::from_static(""))
}

/// W3C trace context level 1, version 00: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
/// with neither id all zeros.
pub(crate) fn is_traceparent(value: &[u8]) -> bool {
    let parts: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
    let hex = |part: &[u8], len: usize| {
        part.len() == len && part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |part: &[u8]| part.iter().any(|&b| b != b'0');
    match parts.as_slice() {
        [version, trace, parent, flags] => {
            *version == b"00"
                && hex(trace, 32)
                && nonzero(trace)
                && hex(parent, 16)
                && nonzero(parent)
                && hex(flags, 2)
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
