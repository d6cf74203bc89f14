//! Distances between vNUMA nodes, and how they follow from the host's SLIT
//! (ACPI 6.5 §5.2.17, System Locality Information Table).
//!
//! A guest placed on two host sockets must see the real cost of crossing them, so a
//! guest's distances are not made up: [`DistanceMatrix::guest_from_host`] reads them off
//! the host SLIT between the host proximity domains that back each vNUMA node.

use alloc::vec::Vec;

use crate::AcpiError;

/// A checked, square matrix of SLIT distances: 10 on the diagonal, above 10 elsewhere
/// (255 = unreachable). Not necessarily symmetric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistanceMatrix {
    order: usize,
    entries: Vec<u8>,
}

impl DistanceMatrix {
    /// Distance from a locality to itself.
    pub const LOCAL: u8 = 10;
    /// Distance meaning "cannot be reached".
    pub const UNREACHABLE: u8 = 255;
    /// Guest distance between two vNUMA nodes backed by the same host domain. Their true
    /// cost is local (10), but a SLIT cannot say 10 off the diagonal (Linux would discard
    /// the whole table), so they get the smallest remote distance there is.
    pub const SAME_HOST_DOMAIN: u8 = 11;

    /// Checks `rows` (row `i` = distances from locality `i`) into a matrix.
    pub fn from_rows<R: AsRef<[u8]>>(rows: &[R]) -> Result<Self, AcpiError> {
        let order = rows.len();
        if order == 0 {
            return Err(AcpiError::EmptyDistanceMatrix);
        }
        let mut entries = Vec::with_capacity(order.saturating_mul(order));
        for (from, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != order {
                return Err(AcpiError::DistanceRowLength {
                    row: from,
                    expected: order,
                    found: row.len(),
                });
            }
            for (to, &value) in row.iter().enumerate() {
                if from == to && value != Self::LOCAL {
                    return Err(AcpiError::DistanceDiagonal { node: from, value });
                }
                if from != to && value <= Self::LOCAL {
                    return Err(AcpiError::DistanceTooSmall { from, to, value });
                }
            }
            entries.extend_from_slice(row);
        }
        Ok(DistanceMatrix { order, entries })
    }

    /// The guest's distances for vNUMA nodes backed by host proximity domains
    /// `backing[node]`: guest distance (a, b) = host distance (`backing[a]`, `backing[b]`),
    /// except that two distinct nodes on one host domain get [`Self::SAME_HOST_DOMAIN`].
    pub fn guest_from_host(host: &DistanceMatrix, backing: &[u32]) -> Result<Self, AcpiError> {
        if backing.is_empty() {
            return Err(AcpiError::EmptyDistanceMatrix);
        }
        let mut host_index = Vec::with_capacity(backing.len());
        for (node, &domain) in backing.iter().enumerate() {
            match usize::try_from(domain) {
                Ok(index) if index < host.order => host_index.push(index),
                _ => {
                    return Err(AcpiError::MissingHostDomain {
                        node,
                        host_domain: domain,
                        host_domains: host.order,
                    })
                }
            }
        }
        let order = backing.len();
        let mut entries = Vec::with_capacity(order.saturating_mul(order));
        for (a, &host_a) in host_index.iter().enumerate() {
            for (b, &host_b) in host_index.iter().enumerate() {
                let value = if a == b {
                    Self::LOCAL
                } else if host_a == host_b {
                    Self::SAME_HOST_DOMAIN
                } else {
                    host.entries[host_a * host.order + host_b]
                };
                entries.push(value);
            }
        }
        Ok(DistanceMatrix { order, entries })
    }

    /// Number of localities (rows, columns).
    pub fn order(&self) -> usize {
        self.order
    }

    /// Distance from locality `from` to locality `to`, if both exist.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from >= self.order || to >= self.order {
            return None;
        }
        self.entries.get(from * self.order + to).copied()
    }

    /// The entries row by row, as the SLIT stores them.
    pub fn entries(&self) -> &[u8] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two host sockets, 21 apart, and a third domain further away and asymmetric.
    fn host() -> DistanceMatrix {
        DistanceMatrix::from_rows(&[[10u8, 21, 31], [21, 10, 28], [32, 29, 10]]).unwrap()
    }

    #[test]
    fn guest_on_two_sockets_sees_the_socket_distance() {
        let guest = DistanceMatrix::guest_from_host(&host(), &[0, 1]).unwrap();
        assert_eq!(guest.entries(), &[10, 21, 21, 10]);
    }

    #[test]
    fn guest_nodes_follow_their_backing_order_and_keep_asymmetry() {
        let guest = DistanceMatrix::guest_from_host(&host(), &[2, 0]).unwrap();
        assert_eq!(guest.entries(), &[10, 32, 31, 10]);
    }

    #[test]
    fn two_nodes_on_one_host_domain_get_the_smallest_remote_distance() {
        let guest = DistanceMatrix::guest_from_host(&host(), &[1, 1, 0]).unwrap();
        assert_eq!(guest.entries(), &[10, 11, 21, 11, 10, 21, 21, 21, 10]);
    }

    #[test]
    fn missing_host_domain_is_refused() {
        assert_eq!(
            DistanceMatrix::guest_from_host(&host(), &[0, 3]),
            Err(AcpiError::MissingHostDomain {
                node: 1,
                host_domain: 3,
                host_domains: 3
            })
        );
    }

    #[test]
    fn bad_matrices_are_refused() {
        let empty: [[u8; 0]; 0] = [];
        assert_eq!(
            DistanceMatrix::from_rows(&empty),
            Err(AcpiError::EmptyDistanceMatrix)
        );
        assert_eq!(
            DistanceMatrix::from_rows(&[&[10u8, 20][..], &[20]]),
            Err(AcpiError::DistanceRowLength {
                row: 1,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            DistanceMatrix::from_rows(&[[10u8, 20], [20, 11]]),
            Err(AcpiError::DistanceDiagonal { node: 1, value: 11 })
        );
        assert_eq!(
            DistanceMatrix::from_rows(&[[10u8, 10], [20, 10]]),
            Err(AcpiError::DistanceTooSmall {
                from: 0,
                to: 1,
                value: 10
            })
        );
    }

    #[test]
    fn distance_lookup_is_bounds_checked() {
        let m = host();
        assert_eq!(m.distance(2, 0), Some(32));
        assert_eq!(m.distance(3, 0), None);
    }
}
