//! Random interleavings of pushes, dispatches, finishes and drains: per-lane order and
//! one-at-a-time hold, and nothing is lost.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::{Lane, Sequencer};

#[derive(Clone, Debug)]
enum Op {
    Push(Option<u8>),
    Dispatch,
    Finish(usize),
    Drain(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::weighted(0.8, 0u8..6).prop_map(Op::Push),
        3 => Just(Op::Dispatch),
        3 => any::<usize>().prop_map(Op::Finish),
        1 => (2u8..5).prop_map(Op::Drain),
    ]
}

fn lane_of(key: Option<u8>) -> Lane {
    match key {
        Some(k) => Lane::Ordered(Bytes::from(vec![k])),
        None => Lane::Free,
    }
}

#[derive(Default)]
struct Model {
    next_id: u32,
    pushed: HashMap<Lane, Vec<u32>>,
    running: Vec<(Lane, u32)>,
    dispatched: HashMap<Lane, Vec<u32>>,
    drained: HashSet<u32>,
    finished: usize,
}

impl Model {
    fn check_dispatch(&mut self, lane: Lane, id: u32) {
        if lane != Lane::Free {
            assert!(
                !self.running.iter().any(|(l, _)| *l == lane),
                "two items of {lane:?} running at once"
            );
        }
        self.dispatched.entry(lane.clone()).or_default().push(id);
        self.running.push((lane, id));
    }

    fn check_order(&self) {
        for (lane, ids) in &self.dispatched {
            if *lane == Lane::Free {
                continue;
            }
            let expected: Vec<u32> = self.pushed[lane]
                .iter()
                .copied()
                .filter(|id| !self.drained.contains(id))
                .take(ids.len())
                .collect();
            assert_eq!(ids, &expected, "lane {lane:?} dispatched out of order");
        }
    }
}

proptest! {
    #[test]
    fn lanes_keep_order_and_nothing_is_lost(ops in proptest::collection::vec(op(), 1..200)) {
        let mut seq = Sequencer::new();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Push(key) => {
                    let id = model.next_id;
                    model.next_id += 1;
                    let lane = lane_of(key);
                    model.pushed.entry(lane.clone()).or_default().push(id);
                    seq.push(lane, id);
                }
                Op::Dispatch => {
                    if let Some((lane, id)) = seq.pop_ready() {
                        model.check_dispatch(lane, id);
                    }
                }
                Op::Finish(pick) => {
                    if !model.running.is_empty() {
                        let (lane, _) = model.running.remove(pick % model.running.len());
                        seq.finish(&lane);
                        model.finished += 1;
                    }
                }
                Op::Drain(modulus) => {
                    let running: HashSet<u32> = model.running.iter().map(|(_, id)| *id).collect();
                    for id in seq.drain_waiting(|id| id % u32::from(modulus) == 0) {
                        prop_assert!(!running.contains(&id), "drained a running item");
                        model.drained.insert(id);
                    }
                }
            }
            model.check_order();
            let held = model.next_id as usize - model.finished - model.drained.len();
            prop_assert_eq!(seq.len(), held);
        }
        // Run everything left to the end: every item not drained is dispatched once.
        loop {
            while let Some((lane, id)) = seq.pop_ready() {
                model.check_dispatch(lane, id);
            }
            let Some((lane, _)) = model.running.pop() else { break };
            seq.finish(&lane);
            model.finished += 1;
        }
        model.check_order();
        let dispatched: usize = model.dispatched.values().map(Vec::len).sum();
        prop_assert_eq!(dispatched + model.drained.len(), model.next_id as usize);
        prop_assert!(seq.is_empty());
    }
}
