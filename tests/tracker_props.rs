//! The completion tracker under random arrival gaps and completion orders: the commit
//! point never passes an incomplete offset, never moves back, and reaches the end.

use std::collections::BTreeSet;

use proptest::prelude::*;
use seawall::{CompletionTracker, PartitionId};

proptest! {
    #[test]
    fn commit_point_never_passes_an_incomplete_offset(
        gaps in proptest::collection::vec(1i64..4, 1..120),
        order in proptest::collection::vec(any::<usize>(), 0..120),
        revoke_at in proptest::option::of(0usize..120),
    ) {
        let partition = PartitionId::new("t", 0);
        let mut tracker = CompletionTracker::new();
        let mut offsets = Vec::new();
        let mut next = 100i64;
        for gap in gaps {
            next += gap;
            tracker.track(&partition, next).unwrap();
            offsets.push(next);
        }
        let mut incomplete: BTreeSet<i64> = offsets.iter().copied().collect();
        let mut last_point = tracker.commit_point(&partition).unwrap();
        let mut pending: Vec<i64> = offsets.clone();
        for (step, pick) in order.into_iter().enumerate() {
            if revoke_at == Some(step) {
                tracker.revoke(&partition);
                prop_assert!(!tracker.complete(&partition, offsets[0]));
                prop_assert_eq!(tracker.commit_point(&partition), None);
                return Ok(());
            }
            if pending.is_empty() {
                break;
            }
            let offset = pending.swap_remove(pick % pending.len());
            prop_assert!(tracker.complete(&partition, offset));
            incomplete.remove(&offset);
            let point = tracker.commit_point(&partition).unwrap();
            if let Some(&lowest) = incomplete.iter().next() {
                prop_assert!(point <= lowest, "commit point {} passes incomplete {}", point, lowest);
            }
            prop_assert!(point >= last_point, "commit point moved back");
            last_point = point;
        }
        for offset in pending {
            tracker.complete(&partition, offset);
        }
        prop_assert_eq!(tracker.commit_point(&partition), Some(next + 1));
        prop_assert_eq!(tracker.pending(&partition), 0);
    }
}
