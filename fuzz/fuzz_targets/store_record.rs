//! Corrupt store data must be an error, never a panic: arbitrary bytes through the
//! decoders of the store's idempotency and park trees. A record that decodes is written
//! again and must decode to the same thing (the store reads back what it wrote), and
//! the times it holds must go where the code sends them: a crash record's first start
//! into a dead letter's `seawall.first-failed-at`, a park record's time into
//! `seawall store parked`'s RFC 3339 output.

#![no_main]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use seawall::fuzzing::{
    decode_idempotency_record, decode_park_record, encode_idempotency_record, encode_park_record,
};
use seawall::{DeadLetterInfo, DeadLetterKind, Headers, Position};

fuzz_target!(|data: &[u8]| {
    let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Ok(state) = decode_idempotency_record(data, SystemTime::UNIX_EPOCH) {
        let again =
            decode_idempotency_record(&encode_idempotency_record(&state), SystemTime::UNIX_EPOCH)
                .expect("a record the store wrote decodes");
        assert_eq!(again, state);
        // The window cut-off only hides settled records; it never fails a decode.
        decode_idempotency_record(data, not_before).expect("decodes at any cut-off");
        let settled_at = state.settled.map(|s| s.at);
        for at in [settled_at, state.attempts.first_started_at]
            .into_iter()
            .flatten()
        {
            dead_letter_headers_at(at);
        }
    }
    if let Ok(park) = decode_park_record(data) {
        let again =
            decode_park_record(&encode_park_record(&park)).expect("a written park record decodes");
        assert_eq!(again, park);
        let mut shown = String::new();
        write!(shown, "{}", humantime::format_rfc3339_seconds(park.since))
            .expect("`seawall store parked` can print the time");
    }
});

/// What the pipeline does with a stored time: it becomes a dead letter's
/// `seawall.first-failed-at`, which must be written without a panic.
fn dead_letter_headers_at(at: SystemTime) {
    let info = DeadLetterInfo {
        kind: DeadLetterKind::CrashLoop,
        error: "crashed".into(),
        attempts: 1,
        source: "orders".into(),
        position: Position::Unknown,
        first_failed_at: at,
        failed_at: at,
        idempotency_key: None,
        ordering_key: None,
        blocked_by: None,
    };
    let mut headers = Headers::new();
    info.write_to(&mut headers);
    DeadLetterInfo::from_headers(&headers).expect("written headers read back");
}
