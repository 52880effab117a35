//! [`replay_order`]: the order a replay sends dead letters in, so each key's messages go
//! back in their original order.

use std::collections::HashMap;

use super::record::DlqRecord;

/// The indices of `records` in the order a replay must send them.
///
/// Records sharing an order key ([`DlqRecord::order_key`]: Seawall's ordering key, else
/// the message key) and an original source and partition are put in original-offset
/// order; records without a known partition and offset, or without a key, keep their
/// input position; and the input's pattern of keys is kept, so different keys interleave
/// as they did in the input. Offsets of different partitions are not comparable, so
/// records of one key spread over several partitions (after a repartitioning, say) keep
/// the input's (dead-letter) order between partitions.
///
/// The result is a permutation of `0..records.len()`.
pub fn replay_order(records: &[DlqRecord]) -> Vec<usize> {
    type Class<'a> = (&'a [u8], &'a str, i32);
    let mut classes: HashMap<Class<'_>, Vec<usize>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        let failure = &record.failure;
        let (Some(key), Some(partition), Some(_)) = (
            record.order_key(),
            failure.original_partition,
            failure.original_offset,
        ) else {
            continue;
        };
        let source = failure.original_source.as_deref().unwrap_or("");
        classes
            .entry((&key[..], source, partition))
            .or_default()
            .push(index);
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    for slots in classes.into_values() {
        // The class keeps the slots it holds in the input; its members fill them in
        // offset order (a stable sort, so a repeated offset keeps input order).
        let mut members = slots.clone();
        members.sort_by_key(|&index| records[index].failure.original_offset);
        for (slot, member) in slots.into_iter().zip(members) {
            order[slot] = member;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::message::Headers;

    fn record(key: Option<&str>, partition: Option<i32>, offset: Option<i64>) -> DlqRecord {
        let key = key.map(|k| Bytes::from(k.to_owned()));
        let mut record = DlqRecord::parse("id", key, "", Headers::new());
        record.failure.original_source = Some("orders".into());
        record.failure.original_partition = partition;
        record.failure.original_offset = offset;
        record
    }

    #[test]
    fn one_key_is_sorted_by_offset_around_other_keys() {
        let records = [
            record(Some("a"), Some(0), Some(30)),
            record(Some("b"), Some(1), Some(5)),
            record(Some("a"), Some(0), Some(10)),
            record(None, Some(0), Some(1)),
            record(Some("a"), Some(0), Some(20)),
        ];
        assert_eq!(replay_order(&records), [2, 1, 4, 3, 0]);
    }

    #[test]
    fn unknown_positions_and_other_partitions_keep_their_place() {
        let records = [
            record(Some("a"), Some(0), Some(9)),
            record(Some("a"), None, None),
            record(Some("a"), Some(1), Some(1)),
            record(Some("a"), Some(0), Some(3)),
        ];
        assert_eq!(replay_order(&records), [3, 1, 2, 0]);
    }

    #[test]
    fn the_ordering_key_outranks_the_message_key() {
        let mut first = record(Some("x"), Some(0), Some(8));
        first.failure.ordering_key = Some(Bytes::from_static(b"k"));
        let mut second = record(Some("y"), Some(0), Some(2));
        second.failure.ordering_key = Some(Bytes::from_static(b"k"));
        assert_eq!(replay_order(&[first, second]), [1, 0]);
    }

    /// (key, offset) pairs with distinct offsets; each key lives on one partition, as
    /// keyed Kafka records do.
    fn inputs() -> impl Strategy<Value = Vec<(u8, i64)>> {
        (1usize..60).prop_flat_map(|len| {
            (
                proptest::collection::vec(0u8..6, len),
                Just((0..len as i64).collect::<Vec<_>>()).prop_shuffle(),
            )
                .prop_map(|(keys, offsets)| keys.into_iter().zip(offsets).collect())
        })
    }

    proptest! {
        #[test]
        fn each_key_goes_in_offset_order_and_keys_interleave_as_input(input in inputs()) {
            let records: Vec<DlqRecord> = input
                .iter()
                .map(|&(key, offset)| {
                    record(Some(&key.to_string()), Some(i32::from(key % 3)), Some(offset))
                })
                .collect();
            let order = replay_order(&records);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..records.len()).collect::<Vec<_>>());
            let out_keys: Vec<u8> = order.iter().map(|&i| input[i].0).collect();
            let in_keys: Vec<u8> = input.iter().map(|&(key, _)| key).collect();
            prop_assert_eq!(out_keys, in_keys);
            for key in 0u8..6 {
                let sent: Vec<i64> = order
                    .iter()
                    .map(|&i| input[i])
                    .filter(|&(k, _)| k == key)
                    .map(|(_, offset)| offset)
                    .collect();
                let mut expected: Vec<i64> = input
                    .iter()
                    .filter(|&&(k, _)| k == key)
                    .map(|&(_, offset)| offset)
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(sent, expected, "key {}", key);
            }
        }
    }
}
