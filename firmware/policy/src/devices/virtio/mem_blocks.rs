//! Which memory blocks of a virtio-mem region are plugged (VIRTIO 1.2 §5.15): one bit a
//! block, with a running count so that `plugged_size` never needs a scan.
//!
//! Ranges are block indices the device has already checked against the region; a range
//! reaching past the end is cut at the end rather than trusted, so a mistake here cannot
//! index out of bounds.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// One bit per block, bit `i % 64` of word `i / 64` for block `i`; set = plugged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockBitmap {
    words: Vec<u64>,
    len: usize,
    /// How many bits are set, kept in step with every change.
    ones: usize,
}

impl BlockBitmap {
    /// `len` blocks, all unplugged.
    pub fn new(len: usize) -> BlockBitmap {
        BlockBitmap {
            words: vec![0; len.div_ceil(64)],
            len,
            ones: 0,
        }
    }

    /// How many blocks there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many blocks are plugged.
    pub fn ones(&self) -> usize {
        self.ones
    }

    /// Whether block `index` is plugged (a block past the end is not).
    pub fn get(&self, index: usize) -> bool {
        index < self.len
            && self
                .words
                .get(index / 64)
                .is_some_and(|word| word >> (index % 64) & 1 == 1)
    }

    /// How many blocks of `range` are plugged.
    pub fn count(&self, range: Range<usize>) -> usize {
        let mut total = 0;
        for (word, mask) in self.pieces(range) {
            total += (self.words[word] & mask).count_ones() as usize;
        }
        total
    }

    /// Plugs (`plugged`) or unplugs every block of `range`.
    pub fn set(&mut self, range: Range<usize>, plugged: bool) {
        for (word, mask) in self.pieces(range) {
            let before = (self.words[word] & mask).count_ones() as usize;
            if plugged {
                self.words[word] |= mask;
                self.ones += mask.count_ones() as usize - before;
            } else {
                self.words[word] &= !mask;
                self.ones -= before;
            }
        }
    }

    /// Unplugs every block.
    pub fn clear(&mut self) {
        self.words.fill(0);
        self.ones = 0;
    }

    /// The runs of plugged blocks, in order, each as long as it goes.
    pub fn runs(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut cursor = 0;
        core::iter::from_fn(move || {
            let start = self.next(cursor, true);
            if start >= self.len {
                return None;
            }
            let end = self.next(start, false);
            cursor = end;
            Some(start..end)
        })
    }

    /// The first block at or after `from` whose state is `plugged`, or `len` if none.
    fn next(&self, from: usize, plugged: bool) -> usize {
        let mut index = from;
        while index < self.len {
            let word = self.words[index / 64];
            let word = if plugged { word } else { !word };
            let rest = word >> (index % 64);
            if rest != 0 {
                return (index + rest.trailing_zeros() as usize).min(self.len);
            }
            index = (index / 64 + 1) * 64;
        }
        self.len
    }

    /// `range` (cut at the end) as (word index, mask of its bits in that word) pieces.
    fn pieces(&self, range: Range<usize>) -> impl Iterator<Item = (usize, u64)> {
        let end = range.end.min(self.len);
        let mut index = range.start.min(end);
        core::iter::from_fn(move || {
            if index >= end {
                return None;
            }
            let bit = index % 64;
            let span = (64 - bit).min(end - index);
            let mask = if span == 64 {
                u64::MAX
            } else {
                ((1u64 << span) - 1) << bit
            };
            let piece = (index / 64, mask);
            index += span;
            Some(piece)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Word-wise counting, setting and run-finding agree with one bool a block.
        #[test]
        fn agrees_with_one_bool_a_block(
            len in 0usize..300,
            changes in proptest::collection::vec((0usize..320, 0usize..320, any::<bool>()), 0..40),
        ) {
            let mut bitmap = BlockBitmap::new(len);
            let mut model = alloc::vec![false; len];
            for (a, b, plugged) in changes {
                let range = a.min(b)..a.max(b);
                let cut = range.start.min(len)..range.end.min(len);
                prop_assert_eq!(
                    bitmap.count(range.clone()),
                    model[cut.clone()].iter().filter(|&&p| p).count()
                );
                bitmap.set(range, plugged);
                model[cut].fill(plugged);
                prop_assert_eq!(bitmap.ones(), model.iter().filter(|&&p| p).count());
            }
            for (index, &plugged) in model.iter().enumerate() {
                prop_assert_eq!(bitmap.get(index), plugged);
            }
            prop_assert!(!bitmap.get(len));
            let mut rebuilt = alloc::vec![false; len];
            let mut last_end = None;
            for run in bitmap.runs() {
                prop_assert!(run.start < run.end);
                // Runs are merged: never two touching.
                prop_assert!(last_end.is_none_or(|end| end < run.start));
                last_end = Some(run.end);
                rebuilt[run].fill(true);
            }
            prop_assert_eq!(rebuilt, model);
        }
    }

    #[test]
    fn clear_unplugs_everything() {
        let mut bitmap = BlockBitmap::new(130);
        bitmap.set(3..129, true);
        assert_eq!(bitmap.ones(), 126);
        assert_eq!(
            bitmap.runs().map(|r| (r.start, r.end)).collect::<Vec<_>>(),
            [(3, 129)]
        );
        bitmap.clear();
        assert_eq!(bitmap.ones(), 0);
        assert_eq!(bitmap.runs().count(), 0);
    }
}
