//! A set of the 256 interrupt vectors, laid out as the APIC's IRR, ISR and TMR are: eight
//! 32-bit registers, vector `v` in bit `v % 32` of register `v / 32` (Intel SDM vol. 3A
//! §11.8.4).
//!
//! Every pass of a vCPU's loop asks for the highest vector of its IRR and ISR (several times:
//! the pending interrupt, the processor priority), and the sets are nearly always empty or
//! hold one vector. A byte saying which registers are non-zero answers that in a few
//! instructions instead of a scan of eight words from the top.

/// 256 bits, one per vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VectorSet {
    words: [u32; 8],
    /// Bit `i` set exactly when `words[i]` is non-zero.
    occupied: u8,
}

impl VectorSet {
    pub(super) fn set(&mut self, vector: u8) {
        let index = usize::from(vector >> 5);
        self.words[index] |= 1 << (vector & 31);
        self.occupied |= 1 << index;
    }

    pub(super) fn clear(&mut self, vector: u8) {
        let index = usize::from(vector >> 5);
        self.words[index] &= !(1 << (vector & 31));
        if self.words[index] == 0 {
            self.occupied &= !(1 << index);
        }
    }

    pub(super) fn contains(&self, vector: u8) -> bool {
        self.words[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
    }

    /// The highest vector in the set: the one of highest priority.
    pub(super) fn highest(&self) -> Option<u8> {
        if self.occupied == 0 {
            return None;
        }
        // `index < 8` and the word is non-zero, so the vector fits in a u8.
        let index = 7 - self.occupied.leading_zeros() as usize;
        let word = self.words[index];
        Some((index as u32 * 32 + 31 - word.leading_zeros()) as u8)
    }

    /// Register `index` (0..8) as the guest reads it; 0 past the end.
    pub(super) fn word(&self, index: usize) -> u32 {
        self.words.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_finds_the_top_bit_across_words() {
        let mut set = VectorSet::default();
        assert_eq!(set.highest(), None);
        set.set(0x31);
        set.set(0xE0);
        set.set(0x20);
        assert_eq!(set.highest(), Some(0xE0));
        assert_eq!(set.word(7), 1);
        set.clear(0xE0);
        assert_eq!(set.highest(), Some(0x31));
        set.set(255);
        assert_eq!(set.highest(), Some(255));
        assert!(set.contains(0x20) && !set.contains(0x21));
        assert_eq!(set.word(8), 0);
    }

    proptest::proptest! {
        /// The summary never disagrees with the words: `highest` is the top set bit found by
        /// scanning, after any mix of sets and clears.
        #[test]
        fn highest_agrees_with_a_scan(ops in proptest::collection::vec((proptest::bool::ANY, 0u8..=255), 0..200)) {
            let mut set = VectorSet::default();
            let mut plain = [false; 256];
            for (add, vector) in ops {
                if add {
                    set.set(vector);
                } else {
                    set.clear(vector);
                }
                plain[usize::from(vector)] = add;
                let scanned = (0..=255u8).rev().find(|&v| plain[usize::from(v)]);
                proptest::prop_assert_eq!(set.highest(), scanned);
                proptest::prop_assert_eq!(set.contains(vector), add);
            }
        }
    }
}
