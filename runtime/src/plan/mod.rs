//! Memory planning: assigns every activation an offset in one arena by tensor lifetimes.
//!
//! Each tensor lives from the step that writes it to the last step that reads it (model
//! inputs from step 0, model outputs to the end). Tensors are placed largest first, each at
//! the lowest offset that does not overlap a placed tensor whose lifetime intersects its
//! own: the greedy-by-size heuristic that TFLite's arena planner uses, which lands within a
//! few percent of the peak of live bytes on CNNs.

use crate::error::{Error, Result};

/// Alignment of every tensor in the arena, in floats (64 bytes).
pub const ALIGN_FLOATS: usize = 16;

/// One buffer to place: its size and the inclusive range of steps during which it is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Size in floats.
    pub len: usize,
    /// First step at which it is written.
    pub first: usize,
    /// Last step at which it is read.
    pub last: usize,
}

/// The result of planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Offset of each buffer in floats, in the order the intervals were given.
    pub offsets: Vec<usize>,
    /// Arena size in floats.
    pub arena_len: usize,
    /// Largest sum of the sizes of the buffers live at one step, in floats (a lower bound on
    /// any arena).
    pub peak_live: usize,
}

impl Interval {
    fn overlaps_in_time(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
    fn aligned_len(&self) -> usize {
        self.len.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS
    }
}

/// Places every interval; buffers live at the same step never share memory.
pub fn plan(intervals: &[Interval]) -> Plan {
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    // Largest first; ties by earlier start for a stable, reproducible plan.
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(intervals[i].aligned_len()),
            intervals[i].first,
            i,
        )
    });
    let mut offsets = vec![0usize; intervals.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(intervals.len());
    let mut arena_len = 0;
    let mut busy: Vec<(usize, usize)> = Vec::new();
    for &i in &order {
        let me = intervals[i];
        busy.clear();
        busy.extend(
            placed
                .iter()
                .filter(|&&j| intervals[j].overlaps_in_time(&me))
                .map(|&j| (offsets[j], offsets[j] + intervals[j].aligned_len())),
        );
        busy.sort_unstable();
        // Best fit: the smallest gap that holds the buffer, else the end of the busy ranges.
        let need = me.aligned_len();
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0;
        for &(start, end) in &busy {
            if start > cursor {
                let gap = start - cursor;
                if gap >= need && best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, o)| o);
        offsets[i] = offset;
        arena_len = arena_len.max(offset + need);
        placed.push(i);
    }
    let steps = intervals.iter().map(|iv| iv.last + 1).max().unwrap_or(0);
    let mut live = vec![0usize; steps + 1];
    for iv in intervals {
        for s in &mut live[iv.first..=iv.last] {
            *s += iv.aligned_len();
        }
    }
    Plan {
        offsets,
        arena_len,
        peak_live: live.into_iter().max().unwrap_or(0),
    }
}

/// Checks that no two buffers live at the same step overlap in memory, and that all lie
/// inside the arena. The session relies on this to hand out disjoint slices of the arena.
pub fn verify(intervals: &[Interval], plan: &Plan) -> Result<()> {
    for (i, a) in intervals.iter().enumerate() {
        let (a0, a1) = (plan.offsets[i], plan.offsets[i] + a.len);
        if a1 > plan.arena_len {
            return Err(Error::InvalidOption(format!(
                "plan puts buffer {i} past the arena"
            )));
        }
        for (j, b) in intervals.iter().enumerate().skip(i + 1) {
            let (b0, b1) = (plan.offsets[j], plan.offsets[j] + b.len);
            if a.overlaps_in_time(b) && a0 < b1 && b0 < a1 && a.len > 0 && b.len > 0 {
                return Err(Error::InvalidOption(format!(
                    "plan overlaps buffers {i} and {j} that are live together"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chain_reuses_memory() {
        // a -> b -> c -> d: only two buffers are ever live at once.
        let iv = |len, first, last| Interval { len, first, last };
        let ivs = [iv(64, 0, 1), iv(64, 1, 2), iv(64, 2, 3), iv(64, 3, 4)];
        let p = plan(&ivs);
        verify(&ivs, &p).unwrap();
        assert_eq!(p.arena_len, 128);
        assert_eq!(p.peak_live, 128);
    }

    proptest! {
        #[test]
        fn plans_are_valid_and_tight(spec in proptest::collection::vec((1usize..5000, 0usize..30, 0usize..6), 1..40)) {
            let ivs: Vec<Interval> = spec.iter().map(|&(len, first, dur)| Interval { len, first, last: first + dur }).collect();
            let p = plan(&ivs);
            verify(&ivs, &p).unwrap();
            prop_assert!(p.arena_len >= p.peak_live);
        }
    }
}
