//! A set of the 256 interrupt vectors, laid out as the APIC's IRR, ISR and TMR are: eight
//! 32-bit registers, vector `v` in bit `v % 32` of register `v / 32` (Intel SDM vol. 3A
//! §11.8.4).

/// 256 bits, one per vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VectorSet([u32; 8]);

impl VectorSet {
    pub(super) fn set(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] |= 1 << (vector & 31);
    }

    pub(super) fn clear(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] &= !(1 << (vector & 31));
    }

    pub(super) fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
    }

    /// The highest vector in the set: the one of highest priority.
    pub(super) fn highest(&self) -> Option<u8> {
        self.0
            .iter()
            .enumerate()
            .rev()
            .find(|(_, word)| **word != 0)
            // `index < 8` and `leading_zeros < 32`, so the vector fits in a u8.
            .map(|(index, word)| ((index as u32) * 32 + 31 - word.leading_zeros()) as u8)
    }

    /// Register `index` (0..8) as the guest reads it; 0 past the end.
    pub(super) fn word(&self, index: usize) -> u32 {
        self.0.get(index).copied().unwrap_or(0)
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
}
