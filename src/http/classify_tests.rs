//! Every status code from 100 to 599, and every `Retry-After` form.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::*;

const TARGET: &str = "POST http://127.0.0.1/in";
const MAX: Duration = Duration::from_secs(300);

fn response(
    status: u16,
    retry_after: Option<&'static str>,
    body: &'static [u8],
) -> Response<'static> {
    Response {
        status: StatusCode::from_u16(status).unwrap(),
        retry_after: retry_after.map(str::as_bytes),
        location: None,
        body,
    }
}

fn outcome(status: u16) -> Result<(), HandlerError> {
    classify(TARGET, &response(status, None, b""), SystemTime::now(), MAX)
}

#[test]
fn every_status_lands_in_exactly_the_documented_class() {
    for status in 100..=599u16 {
        let result = outcome(status);
        let expected_transient = matches!(status, 408 | 425 | 429 | 500..=599);
        match status {
            200..=299 => assert!(result.is_ok(), "{status} is success"),
            _ => {
                let err = result.expect_err("not a success");
                assert_eq!(err.is_transient(), expected_transient, "{status}");
                assert!(!err.is_contract_violation(), "{status}");
                assert!(
                    err.retry_after().is_none(),
                    "{status}: no Retry-After given"
                );
                let text = err.to_string();
                assert!(text.starts_with(TARGET), "{status}: {text}");
                assert!(text.contains(&format!("HTTP {status}")), "{status}: {text}");
            }
        }
    }
}

#[test]
fn permanent_errors_quote_the_start_of_the_body() {
    let body: &'static [u8] = b"{\"error\":\"field 'sku' is required\"}";
    let err = classify(TARGET, &response(400, None, body), SystemTime::now(), MAX).unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "POST http://127.0.0.1/in: HTTP 400 Bad Request: {\"error\":\"field 'sku' is required\"}"
    );
}

#[test]
fn long_and_binary_bodies_are_cut_and_made_readable() {
    let long: &'static [u8] = Box::leak(vec![b'x'; 1000].into_boxed_slice());
    let text = classify(TARGET, &response(422, None, long), SystemTime::now(), MAX)
        .unwrap_err()
        .to_string();
    assert!(text.contains(&"x".repeat(EXCERPT_BYTES)), "{text}");
    assert!(!text.contains(&"x".repeat(EXCERPT_BYTES + 1)), "{text}");
    assert!(text.ends_with('…'), "{text}");
    let binary = classify(
        TARGET,
        &response(400, None, b"\xff\xfeok"),
        SystemTime::now(),
        MAX,
    )
    .unwrap_err()
    .to_string();
    assert!(binary.ends_with("\u{fffd}\u{fffd}ok"), "{binary}");
}

#[test]
fn redirects_name_the_location_without_user_info() {
    let mut redirect = response(302, None, b"");
    redirect.location = Some(b"https://user:pw@elsewhere.test/new");
    let err = classify(TARGET, &redirect, SystemTime::now(), MAX).unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient());
    assert!(
        text.contains("HTTP 302 Found: redirect to https://elsewhere.test/new not followed"),
        "{text}"
    );
    assert!(!text.contains("pw"), "{text}");
    redirect.location = Some(b"/moved?x=1");
    let text = classify(TARGET, &redirect, SystemTime::now(), MAX)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("redirect to /moved?x=1 not followed"),
        "{text}"
    );
    redirect.location = Some(b"//u:pw@other.test/");
    let text = classify(TARGET, &redirect, SystemTime::now(), MAX)
        .unwrap_err()
        .to_string();
    assert!(!text.contains("pw"), "{text}");
}

#[test]
fn retry_after_counts_on_429_and_503_only() {
    let now = SystemTime::now();
    for status in [429, 503] {
        let err = classify(TARGET, &response(status, Some("2"), b""), now, MAX).unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)), "{status}");
    }
    for status in [408, 425, 500, 502, 504, 400] {
        let err = classify(TARGET, &response(status, Some("2"), b""), now, MAX).unwrap_err();
        assert_eq!(err.retry_after(), None, "{status}");
    }
}

#[test]
fn retry_after_parses_seconds_and_dates_and_clamps() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at = |secs: u64| httpdate::fmt_http_date(now + Duration::from_secs(secs));
    assert_eq!(retry_after(b"0", now, MAX), Some(Duration::ZERO));
    assert_eq!(
        retry_after(b" 120 ", now, MAX),
        Some(Duration::from_secs(120))
    );
    assert_eq!(retry_after(b"3600", now, MAX), Some(MAX), "clamped");
    assert_eq!(retry_after(b"99999999999999999999999", now, MAX), Some(MAX));
    assert_eq!(
        retry_after(at(90).as_bytes(), now, MAX),
        Some(Duration::from_secs(90))
    );
    assert_eq!(retry_after(at(86_400).as_bytes(), now, MAX), Some(MAX));
    let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
    assert_eq!(retry_after(past.as_bytes(), now, MAX), Some(Duration::ZERO));
    for junk in [&b""[..], b"-5", b"1.5", b"soon", b"\xff"] {
        assert_eq!(retry_after(junk, now, MAX), None, "{junk:?}");
    }
}

#[test]
fn an_unparseable_retry_after_still_retries() {
    let err = classify(
        TARGET,
        &response(429, Some("soon"), b""),
        SystemTime::now(),
        MAX,
    )
    .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), None);
}
